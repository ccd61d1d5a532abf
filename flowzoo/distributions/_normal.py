"""Gaussian base distributions: standard normal and diagonal normal with learnable moments."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Context, Float, Key, LogProb, Params
from ..bijectors import sum_except_batch
from ._base import Distribution, check_context, check_count, check_event

FloatLike = float | Float[Array, ""]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _shape(event_shape) -> tuple[int, ...]:
    return (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(int(s) for s in event_shape)


def isotropic_normal_log_prob(z: Batch, scale: FloatLike = 1.0) -> LogProb:
    """``log N(z; 0, scale^2 I)`` per row of ``(batch, *event)``, in nats.

    The one Gaussian log-density of flowzoo: flow bases, CNF and flow-matching bases, SDE
    priors and the probability-flow likelihood all call it (or :func:`standard_normal_log_prob`).
    """
    flat = z.reshape(z.shape[0], -1)
    d = flat.shape[1]
    u = flat / scale
    return -0.5 * jnp.sum(u**2, axis=-1) - d * (jnp.log(scale) + _HALF_LOG_2PI)


def standard_normal_log_prob(z: Batch) -> LogProb:
    """``log N(z; 0, I)`` per row of ``(batch, *event)``, in nats."""
    return isotropic_normal_log_prob(z, 1.0)


def standard_normal(event_shape: int | Sequence[int]) -> Distribution:
    """``N(0, I)`` over ``event_shape``; params are ``()``. It is :func:`isotropic_normal`
    with scale 1: the log-density adds the Gaussian constant once per row."""
    return isotropic_normal(event_shape, 1.0)


def isotropic_normal(event_shape: int | Sequence[int], scale: float = 1.0) -> Distribution:
    """``N(0, scale^2 I)`` over ``event_shape`` with a fixed ``scale > 0``; params are ``()``.

    The t=0 marginal of a flow-matching path whose noise scale is not 1 (the VE path:
    ``scale = sigma_max``) and the prior of the VE SDE. ``temperature`` multiplies ``scale``.
    """
    shape = _shape(event_shape)
    scale = float(scale)
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"isotropic_normal: scale must be a finite number > 0, got {scale!r}")

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        del key, x, context
        return ()

    def log_prob(params: Params, x: Batch, context: Context = None) -> LogProb:
        check_event(x, shape, "isotropic_normal.log_prob")
        return isotropic_normal_log_prob(x, scale)

    def sample(params: Params, key: Key, n: int, context: Context = None, temperature=1.0):
        check_count(n, "isotropic_normal.sample")
        check_context(n, context, "isotropic_normal.sample")
        return (temperature * scale) * jax.random.normal(key, (n, *shape), jnp.float32)

    def sample_and_log_prob(params, key, n, context=None, temperature=1.0):
        x = sample(params, key, n, context, temperature)
        return x, log_prob(params, x, context)

    return Distribution(init, log_prob, sample, sample_and_log_prob, shape)


def diagonal_normal(event_shape: int | Sequence[int], learnable: bool = True) -> Distribution:
    """``N(loc, diag(exp(log_scale))^2)`` with params ``{"loc", "log_scale"}`` of the event shape.

    ``init`` starts at the standard normal (it does not fit the data batch).
    With ``learnable=False`` this is :func:`standard_normal` (params ``()``).
    """
    if not learnable:
        return standard_normal(event_shape)
    shape = _shape(event_shape)

    def _moments(params, dtype):
        return params["loc"].astype(dtype), params["log_scale"].astype(dtype)

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        del key, context
        return {"loc": jnp.zeros(shape, x.dtype), "log_scale": jnp.zeros(shape, x.dtype)}

    def log_prob(params: Params, x: Batch, context: Context = None):
        check_event(x, shape, "normal.log_prob")
        loc, log_scale = _moments(params, x.dtype)
        u = (x - loc[None]) * jnp.exp(-log_scale)[None]
        return sum_except_batch(-0.5 * u**2 - log_scale[None] - _HALF_LOG_2PI)

    def sample(params: Params, key: Key, n: int, context: Context = None, temperature=1.0):
        check_count(n, "normal.sample")
        check_context(n, context, "normal.sample")
        loc, log_scale = _moments(params, jnp.float32)
        eps = jax.random.normal(key, (n, *shape), jnp.float32)
        return loc[None] + temperature * jnp.exp(log_scale)[None] * eps

    def sample_and_log_prob(params, key, n, context=None, temperature=1.0):
        x = sample(params, key, n, context, temperature)
        return x, log_prob(params, x, context)

    return Distribution(init, log_prob, sample, sample_and_log_prob, shape)
