"""Squeeze (space-to-depth) and unsqueeze for NHWC images (Dinh et al. 2017, section 3.6)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Float

from .._types import Array, Batch, Context, Key, LogDet, Params
from ._base import Bijector, invert


def space_to_depth(x: Float[Array, "batch h w c"], factor: int = 2) -> Array:
    """``(batch, H, W, C) -> (batch, H/f, W/f, f*f*C)``.

    ``y[b, i, j, (di * f + dj) * C + c] = x[b, f*i + di, f*j + dj, c]``: each ``f x f`` block of
    pixels becomes one pixel, its channels ordered by row, column, then input channel.
    """
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(
            f"squeeze needs H and W divisible by {factor}, got an image of shape {(h, w, c)}; "
            "pad or crop the images (or use fewer levels/scales)"
        )
    y = x.reshape(b, h // factor, factor, w // factor, factor, c)
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // factor, w // factor, factor * factor * c)


def depth_to_space(y: Float[Array, "batch h w c"], factor: int = 2) -> Array:
    """The inverse of :func:`space_to_depth`: ``(batch, H, W, f*f*C) -> (batch, f*H, f*W, C)``."""
    b, h, w, cc = y.shape
    if cc % (factor * factor):
        raise ValueError(f"unsqueeze needs channels divisible by {factor * factor}, got {cc}")
    c = cc // (factor * factor)
    x = y.reshape(b, h, w, factor, factor, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * factor, w * factor, c)


def squeeze(factor: int = 2) -> Bijector:
    """Space-to-depth as a bijector; a permutation of the entries, so log-det 0.

    * forward: ``(batch, H, W, C) -> (batch, H/f, W/f, f*f*C)`` (:func:`space_to_depth`);
    * inverse: ``(batch, H/f, W/f, f*f*C) -> (batch, H, W, C)``.

    This bijector changes the event shape: ``init(key, x)`` takes a batch on the data side
    (the squeezed shape). Params are ``()``. :func:`unsqueeze` is its inverse.
    """
    if factor < 1:
        raise ValueError(f"squeeze factor must be >= 1, got {factor}")

    def _check(x: Array) -> None:
        if x.ndim != 4:
            raise ValueError(f"squeeze expects NHWC arrays (batch, H, W, C), got {x.shape}")

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        _check(x)
        return ()

    def forward(
        params: Params, z: Float[Array, "batch h w c"], context: Context = None
    ) -> tuple[Array, LogDet]:
        _check(z)
        return space_to_depth(z, factor), jnp.zeros(z.shape[0], z.dtype)

    def inverse(
        params: Params, x: Float[Array, "batch h w c"], context: Context = None
    ) -> tuple[Array, LogDet]:
        _check(x)
        return depth_to_space(x, factor), jnp.zeros(x.shape[0], x.dtype)

    return Bijector(init, forward, inverse)


def unsqueeze(factor: int = 2) -> Bijector:
    """Depth-to-space: forward ``(batch, H, W, f*f*C) -> (batch, f*H, f*W, C)``; log-det 0."""
    return invert(squeeze(factor))
