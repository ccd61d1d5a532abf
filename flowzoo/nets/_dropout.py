"""Dropout whose mask is one fused Threefry hash of the element indices.

``jax.random.bernoulli`` draws its bits with Threefry-2x32, which JAX lowers on CPU as a
``fori_loop`` of five iterations over the whole array (a rolled loop keeps the program
small). XLA:CPU runs that loop as separate full-array passes, so the draw costs several times
the arithmetic it needs, a noticeable share of a UNet's train step. Here the same hash (Threefry-2x32 with 20 rounds, Salmon et
al. 2011, "Parallel random numbers: as easy as 1, 2, 3") is written out round by round on
a counter per element, so XLA fuses it with the compare and the select into one
elementwise loop. ``benchmarks/dropout.py`` measures both draws.

The mask's words are those of ``jax.random.bits(key, shape)`` (:func:`random_bits`), so
a mask depends on the key and each element's index only, and is the same on every backend.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Key

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(v: Array, r: int) -> Array:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(key: tuple[Array, Array], counter: tuple[Array, Array]) -> tuple[Array, Array]:
    """Threefry-2x32 with 20 rounds, unrolled: the same words as
    ``jax.extend.random.threefry_2x32``, as elementwise ``uint32`` operations XLA fuses.

    ``key``: two ``uint32`` words (scalars or arrays that broadcast); ``counter``: two
    ``uint32`` arrays of one shape. Returns the two output words, each of the counter's
    shape.
    """
    k0, k1 = (jnp.asarray(k, jnp.uint32) for k in key)
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(_PARITY))
    x0 = jnp.asarray(counter[0], jnp.uint32) + ks[0]
    x1 = jnp.asarray(counter[1], jnp.uint32) + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotl(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _is_threefry(key: Key) -> bool:
    """Whether ``key`` draws with JAX's Threefry-2x32 (a typed key of that implementation,
    or raw ``uint32[2]`` key data under JAX's default implementation)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)) == "threefry2x32"
    impl = str(jax.config.jax_default_prng_impl)
    return impl == "threefry2x32" and key.dtype == jnp.uint32 and key.shape == (2,)


def random_bits(key: Key, shape: tuple[int, ...]) -> Array:
    """``jax.random.bits(key, shape, jnp.uint32)``, fused for Threefry keys.

    For a Threefry-2x32 key (JAX's default) and fewer than ``2**32`` elements this hashes
    the row-major index of each element, as JAX's partitionable Threefry (its default,
    ``jax_threefry_partitionable``) does, with :func:`threefry2x32`, and returns the same
    words; other keys and larger shapes call ``jax.random.bits``.
    """
    shape = tuple(int(s) for s in shape)
    size = math.prod(shape)
    if (
        not _is_threefry(key)
        or size >= 2**32
        or not jax.config.jax_threefry_partitionable
        or not shape
    ):
        return jax.random.bits(key, shape, jnp.uint32)
    words = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in range(len(shape) - 1, -1, -1):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    hi, lo = threefry2x32((words[0], words[1]), (jnp.zeros(shape, jnp.uint32), index))
    return hi ^ lo


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
