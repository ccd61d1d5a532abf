"""Bits per dimension: the one conversion from a log-density in nats."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .._types import Array, ArrayLike, Float


def bits_per_dim(
    log_prob: Float[ArrayLike, "*batch"],
    num_dims: int | Sequence[int],
    levels: int | None = None,
) -> Float[Array, "*batch"]:
    """Bits per dimension ``(-log_prob + D ln L) / (D ln 2)`` of a log-density in nats.

    Args:
      log_prob: ``log p`` in nats, per example (any shape). For discrete data dequantized to
        ``y = (x + u) / L`` in ``[0, 1)^D`` this is the density of ``y`` (with variational
        dequantization, ``log p(y) - log q(u | x)``); then ``-log2 P(x)`` is at most the
        result in expectation over ``u``, and a uniform density gives exactly ``log2(L)``.
      num_dims: ``D``, the number of dimensions per example (``H * W * C``), or the event
        shape itself.
      levels: ``L``, discrete values per dimension (256 for 8-bit images, 17 for the digits),
        or ``None`` for a continuous density (no discretisation term).
    """
    d = float(num_dims if np.ndim(num_dims) == 0 else np.prod(tuple(num_dims)))
    if d < 1:
        raise ValueError(f"bits_per_dim: num_dims must be >= 1, got {num_dims!r}")
    if levels is not None and int(levels) < 2:
        raise ValueError(f"bits_per_dim: levels must be None or >= 2, got {levels!r}")
    shift = 0.0 if levels is None else d * math.log(int(levels))
    return (-jnp.asarray(log_prob) + shift) / (d * math.log(2.0))
