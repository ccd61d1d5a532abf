"""Dropout whose mask is ``jax.random.bits`` computed as one fused loop.

The mask is ``jax.random.bits(key, shape) < keep * 2**32``, word for word, with the bits
drawn by :func:`flowzoo.prng.random_bits`: for a Threefry key (JAX's default) that is JAX's
hash written out round by round, which XLA fuses with the compare and the select, where
``jax.random`` runs a rolled loop of full-array passes on CPU. The mask of an element
depends on the key and the element's row-major index only, and is the same on every
backend. ``benchmarks/dropout.py`` measures the masks against flax's and torch's.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from .._types import Array, Key
from ..prng import random_bits


def dropout_mask(key: Key, keep: float, shape: tuple[int, ...]) -> Array:
    """A boolean array of ``shape``, each element ``True`` with probability ``keep`` (to
    within ``2**-32``), independently: ``random_bits(key, shape) < keep * 2**32``.

    Element ``(i, ...)`` of the mask depends on the key and its row-major index only, so an
    example's mask does not depend on the batch size.
    """
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"dropout_mask: keep must be in [0, 1], got {keep!r}")
    shape = tuple(int(s) for s in shape)
    if keep >= 1.0:
        return jnp.ones(shape, bool)
    return random_bits(key, shape) < np.uint32(min(round(keep * 2**32), 2**32 - 1))


def dropout(key: Key, rate: float, x: Array) -> Array:
    """Inverted dropout: each element of ``x`` zeroed with probability ``rate``, the rest
    divided by ``1 - rate`` (as ``flax.linen.Dropout``), with :func:`dropout_mask`.

    ``x``: any shape. ``rate`` in ``[0, 1]``; 0 returns ``x``, 1 returns zeros.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1], got {rate!r}")
    x = jnp.asarray(x)
    if rate == 0.0:
        return x
    if rate == 1.0:
        return jnp.zeros_like(x)
    keep = 1.0 - rate
    mask = dropout_mask(key, keep, x.shape)
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
    """``flax.linen.Dropout`` (no ``broadcast_dims``) with :func:`dropout`'s fused mask.

    Draws its key with ``make_rng(rng_collection)``; ``deterministic`` (attribute or call
    argument) returns the input unchanged.
    """

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x: Array, deterministic: bool | None = None) -> Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or self.rate == 0.0:
            return x
        return dropout(self.make_rng(self.rng_collection), self.rate, x)
