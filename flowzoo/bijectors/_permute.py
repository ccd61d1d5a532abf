"""Fixed permutations of the last event axis (volume preserving, log-det 0)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Batch, Context, Key, Params
from ._base import Bijector


def permute(permutation) -> Bijector:
    """Permute the last event axis: ``x[..., i] = z[..., permutation[i]]``.

    The permutation is a constant of the bijector (not a parameter); params are ``()``.
    """
    perm = np.asarray(permutation)
    if perm.ndim != 1 or not np.array_equal(np.sort(perm), np.arange(perm.size)):
        raise ValueError(f"permute: {permutation!r} is not a permutation of 0..n-1")
    inv = np.argsort(perm)

    def _check(x):
        if x.shape[-1] != perm.size:
            raise ValueError(f"permute: last axis has size {x.shape[-1]}, expected {perm.size}")

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        _check(x)
        return ()

    def forward(params: Params, z: Batch, context: Context = None):
        _check(z)
        return jnp.take(z, perm, axis=-1), jnp.zeros(z.shape[0], z.dtype)

    def inverse(params: Params, x: Batch, context: Context = None):
        _check(x)
        return jnp.take(x, inv, axis=-1), jnp.zeros(x.shape[0], x.dtype)

    return Bijector(init, forward, inverse)


def reverse(size: int) -> Bijector:
    """Reverse the order of the last event axis (of length ``size``)."""
    return permute(np.arange(size)[::-1])


def random_permutation(key: Key, size: int) -> Bijector:
    """A fixed permutation of the last axis drawn once from ``key`` at construction."""
    return permute(np.asarray(jax.random.permutation(key, size)))
