"""Full-precision products for the computations whose answers are references.

GPUs and TPUs round float32 matmul and convolution operands by default (TF32 on NVIDIA Ampere
and later, bfloat16 passes on TPU): about 1e-3 relative. flowzoo leaves that default to the
user for networks, but the sample metrics, the exact marginal field, the benchmark targets'
closed forms and Glow's 1x1 convolution must give the CPU's answer on every device: squared
distances by ``|x|^2 + |y|^2 - 2 x.y`` cancel, and the marginal field divides its logits by
``sigma_t^2`` (10% off at t = 0.9 on an H200 at the default precision). They use these.
``tests/test_precision.py`` checks every product they trace.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._types import Array

HIGHEST = jax.lax.Precision.HIGHEST
"""Pass as ``precision=`` to ``jnp.einsum`` / ``lax`` products that must be exact float32."""


def exact_matmul(a: Array, b: Array) -> Array:
    """``a @ b`` in full float32 on every device."""
    return jnp.matmul(a, b, precision=HIGHEST)
