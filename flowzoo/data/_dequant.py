"""Dequantization, preprocessing bijectors and bits/dim for quantised image data.

Discrete images ``x in {0, ..., L-1}^D`` (``L`` grey levels) are modelled with a continuous
density ``p`` of ``v = x + u``, ``u in [0, 1)^D`` (Theis et al., ICLR 2016; Ho et al., ICML
2019). For any dequantization density ``q(u | x)`` on the unit cube (uniform: ``q = 1``),

    log P(x) = log int_[0,1)^D p(x + u) du  >=  E_q[log p(x + u) - log q(u | x)]

by Jensen's inequality, so the negative of the right-hand side, in bits per dimension
``/ (D ln 2)``, is an upper bound on the discrete model's code length. A density ``p_y`` on
``y = v / L in [0, 1)^D`` has ``p_v(v) = p_y(v / L) L^{-D}``, which is where the
``+ D ln L`` of :func:`flowzoo.metrics.bits_per_dim` comes from.

The preprocessing maps between ``[0, 1)^D`` and the flow's space are :class:`Bijector` s in
the generative direction (``forward``: flow space -> data space), so their log-dets go
through the same change-of-variables code as every other layer:

* :func:`logit_transform`: inverse ``y -> logit(alpha + (1 - 2 alpha) y)`` (RealNVP; the
  official code maps ``[0, 1]`` to ``[0.05, 0.95]``, i.e. ``alpha = 0.05``:
  ``data_constraint = 0.9`` in tensorflow/models ``research/real_nvp/real_nvp_multiscale_dataset.py``).
* :func:`shift_transform`: inverse ``y -> y - 0.5`` (Glow uses ``[-0.5, 0.5)`` and no logit;
  Kingma & Dhariwal 2018, openai/glow ``model.py``).
* :func:`scale_transform`: inverse ``v -> v / levels`` (``[0, L)`` to ``[0, 1)``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._types import Array, ArrayLike, Batch, Context, Float, Key, Params, Shaped
from ..bijectors import Bijector, fixed_affine, sum_except_batch

Levels = Shaped[ArrayLike, "batch *event"]
"""Quantised data: integer grey levels ``0 .. levels - 1`` (any integer or float dtype)."""


def uniform_dequantize(key: Key, x: Levels, levels: int) -> Batch:
    """Uniform dequantization scaled to the unit cube: ``y = (x + u) / levels``, ``u ~ U[0, 1)``.

    Args:
      key: PRNG key.
      x: integer-valued images ``(batch, *event)`` with values ``0 .. levels - 1`` (any
        integer or float dtype; the values are not checked here, see
        :func:`flowzoo.data.check_images`).
      levels: number of grey levels ``L``.

    Returns:
      float32 ``y`` of the shape of ``x`` with ``x = floor(y * levels)``; ``y in [0, 1)`` (up
      to float32 rounding of ``x + u`` just below ``levels``). ``log q(u | x) = 0``.
    """
    x = jnp.asarray(x).astype(jnp.float32)
    u = jax.random.uniform(key, x.shape, jnp.float32)
    return (x + u) / float(levels)


def quantize(y: Float[ArrayLike, "*shape"], levels: int) -> Float[Array, "*shape"]:
    """``clip(floor(y * levels), 0, levels - 1)`` as float32: back from ``[0, 1)`` to levels."""
    y = jnp.asarray(y, jnp.float32)
    return jnp.clip(jnp.floor(y * float(levels)), 0.0, float(levels - 1))


def logit_transform(alpha: float = 0.05) -> Bijector:
    """The RealNVP logit preprocessing as a :class:`Bijector` (params ``()``).

    * ``inverse`` (data -> flow space): ``z = logit(alpha + (1 - 2 alpha) y)`` for
      ``y in [0, 1]``, with ``log|dz/dy| = sum[log(1 - 2 alpha) - log p - log(1 - p)]``,
      ``p = alpha + (1 - 2 alpha) y``.
    * ``forward`` (flow space -> data): ``y = (sigmoid(z) - alpha) / (1 - 2 alpha)``, log-det
      ``sum[log sigmoid(z) + log sigmoid(-z)] - D log(1 - 2 alpha)``, computed from ``z``
      (no cancellation for large ``|z|``).

    ``alpha = 0`` is the plain sigmoid/logit pair (used on ``u in (0, 1)`` by variational
    dequantization); with ``alpha > 0`` the transform stays finite on the closed cube.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha < 0.5:
        raise ValueError(f"logit_transform: alpha must be in [0, 0.5), got {alpha}")
    log_range = math.log1p(-2.0 * alpha)

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        return ()

    def forward(params: Params, z: Batch, context: Context = None):
        y = (jax.nn.sigmoid(z) - alpha) / (1.0 - 2.0 * alpha)
        ld = jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z) - log_range
        return y, sum_except_batch(ld)

    def inverse(params: Params, y: Batch, context: Context = None):
        p = alpha + (1.0 - 2.0 * alpha) * y
        z = jnp.log(p) - jnp.log1p(-p)
        return z, sum_except_batch(log_range - jnp.log(p) - jnp.log1p(-p))

    return Bijector(init, forward, inverse)


def shift_transform(shift: float = 0.5) -> Bijector:
    """Glow's preprocessing: ``inverse`` ``z = y - shift`` (``[0, 1) -> [-0.5, 0.5)``); log-det 0."""
    return fixed_affine(jnp.asarray(float(shift)), jnp.asarray(1.0))


def scale_transform(levels: int) -> Bijector:
    """``forward`` ``v = levels * y`` (``[0, 1) -> [0, L)``); ``inverse`` log-det ``-D ln L``."""
    return fixed_affine(jnp.asarray(0.0), jnp.asarray(float(levels)))
