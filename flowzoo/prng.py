"""JAX's Threefry random numbers, the same words, computed as one fused loop on CPU.

``jax.random`` draws with Threefry-2x32 (Salmon et al. 2011, "Parallel random numbers: as
easy as 1, 2, 3"; 20 rounds). On CPU JAX lowers the hash as a ``fori_loop`` of five
iterations over the whole array (a rolled loop keeps programs small), and XLA:CPU runs that
loop as separate full-array passes, or, inside a ``lax.scan`` of sampler steps, as a nested
loop per step. The draw then costs several times its arithmetic: a noticeable share of a
UNet's train step (its dropout masks), most of a Langevin step on a cheap target.

:func:`threefry2x32` writes the 20 rounds out as elementwise ``uint32`` operations, which XLA
fuses with whatever consumes them. :data:`FUSED_THREEFRY` is a JAX PRNG implementation
(``jax.extend.random.define_prng_impl``) built on it whose ``split``, ``fold_in`` and
``random_bits`` return word for word what JAX's partitionable Threefry (its default,
``jax_threefry_partitionable``) returns, so every ``jax.random`` function draws the same
numbers from a key wrapped by :func:`fused_key` as from the key itself: only the program
differs. Whether it is faster depends on the consumer: XLA may copy the fused hash into every
fusion that reads the numbers, so code whose draws feed several consumers can run slower.
:mod:`flowzoo.nets`' dropout draws this way; elsewhere it is the caller's choice.
``benchmarks/dropout.py`` and ``benchmarks/langevin.py`` measure both.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

from ._types import Array, Key

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA
THREEFRY = "threefry2x32"


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


def _index(shape: tuple[int, ...]) -> tuple[Array, Array]:
    """The row-major index of every element of ``shape`` as (high, low) ``uint32`` words
    (JAX's ``iota_2x32_shape``); ``shape`` holds fewer than ``2**32`` elements."""
    if not shape:
        return jnp.uint32(0), jnp.uint32(0)
    low = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in range(len(shape) - 1, -1, -1):
        low = low + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    return jnp.zeros(shape, jnp.uint32), low


def _fits(shape) -> bool:
    return math.prod(shape) < 2**32 and bool(jax.config.jax_threefry_partitionable)


def _standard(data: Array) -> Key:
    return jax.random.wrap_key_data(data, impl=THREEFRY)


def _random_bits(data: Array, bit_width: int, shape) -> Array:
    shape = tuple(int(s) for s in shape)
    if not _fits(shape):  # JAX's own (a split into blocks, or the original counter scheme)
        return jax.random.bits(_standard(data), shape, jnp.dtype(f"uint{bit_width}"))
    hi, lo = threefry2x32((data[0], data[1]), _index(shape))
    if bit_width == 64:
        return (hi.astype(jnp.uint64) << np.uint64(32)) | lo.astype(jnp.uint64)
    word = hi ^ lo
    return word if bit_width == 32 else word.astype(jnp.dtype(f"uint{bit_width}"))


def _split(data: Array, shape) -> Array:
    shape = tuple(int(s) for s in shape)
    if not _fits(shape):
        return jax.random.key_data(jax.random.split(_standard(data), shape))
    hi, lo = threefry2x32((data[0], data[1]), _index(shape))
    return jnp.stack([hi, lo], axis=-1)


def _fold_in(data: Array, value) -> Array:
    # JAX: threefry_2x32(key, threefry_seed(value)), the seed of a uint32 being (0, value)
    hi, lo = threefry2x32((data[0], data[1]), (jnp.uint32(0), jnp.asarray(value, jnp.uint32)))
    return jnp.stack([hi, lo])


def _seed(seed: Array) -> Array:
    return jax.random.key_data(jax.random.key(seed, impl=THREEFRY))


FUSED_THREEFRY = define_prng_impl(
    key_shape=(2,),
    seed=_seed,
    split=_split,
    random_bits=_random_bits,
    fold_in=_fold_in,
    name="threefry2x32_fused",
    tag="fzt",
)
"""JAX's Threefry-2x32 with the hash unrolled (see the module docstring)."""


def _impl_name(key: Key) -> str | None:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key))
    if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):  # raw key data: JAX's default
        return str(jax.config.jax_default_prng_impl)
    return None


def fused_key(key: Key) -> Key:
    """``key`` as a :data:`FUSED_THREEFRY` key when it is a Threefry key (typed, or raw
    ``uint32[..., 2]`` data under JAX's default implementation), else ``key`` unchanged.

    Every ``jax.random`` function draws the same numbers from the result as from ``key``.
    """
    name = _impl_name(key)
    if name == THREEFRY:
        data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        return jax.random.wrap_key_data(data, impl=FUSED_THREEFRY)
    return key


def random_bits(key: Key, shape: tuple[int, ...]) -> Array:
    """``jax.random.bits(key, shape, jnp.uint32)``, one fused loop for Threefry keys."""
    return jax.random.bits(fused_key(key), tuple(int(s) for s in shape), jnp.uint32)
