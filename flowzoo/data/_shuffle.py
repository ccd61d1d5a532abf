"""A keyed pseudo-random permutation of ``range(n)`` evaluated one index at a time.

``jax.random.permutation`` sorts all ``n`` indices, which costs as much as a small training
step when it is recomputed every step (as a pure ``batch_fn(key, step)`` must). A balanced
Feistel network is a bijection on ``[0, 2^(2h))`` for any round function (Luby & Rackoff,
SIAM J. Comput. 1988: four rounds of a pseudo-random function give a pseudo-random
permutation); cycle-walking (Black & Rogaway, CT-RSA 2002) restricts it to ``[0, n)``. So the
``B`` indices of one batch cost ``O(B)``, independent of ``n``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._types import Array, Key

_ROUNDS = 4


def _mix(x: Array) -> Array:
    """A 32-bit integer hash (the "lowbias32" finaliser of C. Wellons' hash-prospector)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _half_bits(n: int) -> int:
    return max(1, ((max(n - 1, 1)).bit_length() + 1) // 2)


def keyed_permutation(key: Key, idx: Array, n: int) -> Array:
    """``perm[idx]`` for a permutation ``perm`` of ``range(n)`` determined by ``key``.

    Args:
      key: PRNG key; different keys give (pseudo-)independent permutations.
      idx: integer array of positions in ``[0, n)``, any shape.
      n: static Python int, ``1 <= n < 2**32``.

    Returns:
      uint32 array like ``idx``; over ``idx = arange(n)`` the values are a permutation.
    """
    if not 1 <= n < 2**32:
        raise ValueError(f"keyed_permutation needs 1 <= n < 2**32, got {n}")
    half = _half_bits(n)
    mask = jnp.uint32((1 << half) - 1)
    round_keys = jax.random.bits(key, (_ROUNDS,), jnp.uint32)

    def encrypt(x):
        left, right = x >> half, x & mask
        for i in range(_ROUNDS):
            left, right = right, left ^ (_mix(right ^ round_keys[i]) & mask)
        return (left << half) | right

    x = encrypt(jnp.asarray(idx).astype(jnp.uint32))
    # cycle-walk values that fall outside [0, n); the domain is < 4n, so walks are short.
    # n as uint32: a Python int of 2^31 or more does not fit the default int32
    end = jnp.uint32(n)
    return jax.lax.while_loop(
        lambda x: jnp.any(x >= end), lambda x: jnp.where(x >= end, encrypt(x), x), x
    )
