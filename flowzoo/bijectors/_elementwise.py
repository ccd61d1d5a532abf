"""Elementwise affine maps: learnable (``affine``) and fixed (``fixed_affine``)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Context, Key, Params
from ._base import Bijector


def _shape(event_shape) -> tuple[int, ...]:
    return (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(int(s) for s in event_shape)


def affine(event_shape: int | Sequence[int]) -> Bijector:
    """Learnable elementwise ``x = z * exp(log_scale) + shift``; params start at the identity.

    Params: ``{"shift": (*event,), "log_scale": (*event,)}``.
    """
    shape = _shape(event_shape)

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        del key, context
        return {"shift": jnp.zeros(shape, x.dtype), "log_scale": jnp.zeros(shape, x.dtype)}

    def _logdet(params, x):
        return jnp.broadcast_to(jnp.sum(params["log_scale"]), (x.shape[0],)).astype(x.dtype)

    def forward(params: Params, z: Batch, context: Context = None):
        return z * jnp.exp(params["log_scale"]) + params["shift"], _logdet(params, z)

    def inverse(params: Params, x: Batch, context: Context = None):
        return (x - params["shift"]) * jnp.exp(-params["log_scale"]), -_logdet(params, x)

    return Bijector(init, forward, inverse)


def fixed_affine(shift: Array, scale: Array) -> Bijector:
    """Non-trainable ``x = z * scale + shift`` (e.g. data standardisation); params are ``()``.

    ``shift`` and ``scale`` broadcast against the event shape; ``scale`` must be positive.
    """
    shift = jnp.asarray(shift)
    scale = jnp.asarray(scale)
    if np.any(np.asarray(scale) <= 0):
        raise ValueError("fixed_affine: scale must be positive")
    log_scale = jnp.log(scale)

    def ld(x):
        full = jnp.broadcast_to(log_scale, x.shape[1:]).astype(x.dtype)
        return jnp.full((x.shape[0],), jnp.sum(full), x.dtype)

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        return ()

    def forward(params: Params, z: Batch, context: Context = None):
        return z * scale + shift, ld(z)

    def inverse(params: Params, x: Batch, context: Context = None):
        return (x - shift) / scale, -ld(x)

    return Bijector(init, forward, inverse)


