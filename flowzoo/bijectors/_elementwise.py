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
        return z * jnp.exp(params["log_scale"])[None] + params["shift"][None], _logdet(params, z)

    def inverse(params: Params, x: Batch, context: Context = None):
        return (x - params["shift"][None]) * jnp.exp(-params["log_scale"])[None], -_logdet(
            params, x
        )

    return Bijector(init, forward, inverse)


def fixed_affine(shift: Array, scale: Array) -> Bijector:
    """Non-trainable ``x = z * scale + shift`` (e.g. data standardisation); params are ``()``.

    ``shift`` and ``scale`` broadcast against the event shape; ``scale`` must be positive.
    """
    # kept as float64 numpy constants and cast to the data's dtype where used, so the
    # log-det is exact to that dtype (float32 by default, float64 under jax_enable_x64)
    shift = np.asarray(shift, np.float64)
    scale = np.asarray(scale, np.float64)
    if np.any(scale <= 0):
        raise ValueError("fixed_affine: scale must be positive")
    log_scale = np.log(scale)

    def ld(x):
        full = jnp.broadcast_to(jnp.asarray(log_scale, x.dtype), x.shape[1:])
        return jnp.full((x.shape[0],), jnp.sum(full), x.dtype)

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        return ()

    def _b(a, x):  # broadcast a constant against (batch, *event) without rank promotion
        return jnp.broadcast_to(jnp.asarray(a, x.dtype), x.shape[1:])[None]

    def forward(params: Params, z: Batch, context: Context = None):
        return z * _b(scale, z) + _b(shift, z), ld(z)

    def inverse(params: Params, x: Batch, context: Context = None):
        return (x - _b(shift, x)) / _b(scale, x), -ld(x)

    return Bijector(init, forward, inverse)
