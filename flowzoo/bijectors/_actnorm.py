"""Activation normalisation (ActNorm, Kingma & Dhariwal 2018, section 3.1)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Context, Key, LogDet, Params
from ._base import Bijector


def _channel(p: Array, x: Array) -> Array:
    """Reshape a ``(C,)`` parameter to broadcast against ``(batch, ..., C)`` without promotion."""
    return p.astype(x.dtype).reshape((1,) * (x.ndim - 1) + (p.shape[0],))


def actnorm(eps: float = 1e-6) -> Bijector:
    """Per-channel affine map with data-dependent initialisation.

    Acts on ``(batch, *spatial, C)`` arrays (NHWC images, or ``(batch, dim)`` vectors with
    one "channel" per coordinate); the same scale and shift apply at every spatial position.

    * forward (generative): ``x = z * exp(log_scale) + loc``, ``logdet = P * sum(log_scale)``
      with ``P = prod(spatial)`` pixels;
    * inverse (normalizing): ``z = (x - loc) * exp(-log_scale)``.

    ``init(key, x)`` sets ``loc`` to the per-channel mean of the data-side batch ``x`` and
    ``log_scale`` to ``log(std + eps)`` (Glow's choice), so the normalizing direction maps
    the init batch to zero mean and unit variance per channel. Inside :func:`chain` and
    :func:`stack`, ``init`` receives the batch the layer sees in the normalizing direction.

    Params: ``{"loc": (C,), "log_scale": (C,)}``.
    """

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        del key, context
        if x.ndim < 2:
            raise ValueError(f"actnorm expects (batch, ..., C) arrays, got shape {x.shape}")
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        std = jnp.std(x, axis=axes)
        return {"loc": mean, "log_scale": jnp.log(std + eps)}

    def _logdet(params: Params, x: Array) -> LogDet:
        pixels = int(np.prod(x.shape[1:-1]))
        ld = pixels * jnp.sum(params["log_scale"]).astype(x.dtype)
        return jnp.full((x.shape[0],), ld, x.dtype)

    def forward(params: Params, z: Batch, context: Context = None) -> tuple[Batch, LogDet]:
        x = z * jnp.exp(_channel(params["log_scale"], z)) + _channel(params["loc"], z)
        return x, _logdet(params, z)

    def inverse(params: Params, x: Batch, context: Context = None) -> tuple[Batch, LogDet]:
        z = (x - _channel(params["loc"], x)) * jnp.exp(-_channel(params["log_scale"], x))
        return z, -_logdet(params, x)

    return Bijector(init, forward, inverse)
