"""A flow on quantised images: dequantization + preprocessing + any continuous flow.

``dequantized(flow, levels)`` turns a density ``p_z`` of NHWC float images (a Glow, a
RealNVP, any :class:`~flowzoo.distributions.Distribution`) into a model of discrete images
``x in {0, ..., L-1}^D``. The continuous density of ``v = x + u in [0, L)^D`` is

    p_v = transformed(p_z, chain(preprocess, scale_transform(L)))

(``preprocess``: :func:`~flowzoo.data.logit_transform` or :func:`~flowzoo.data.shift_transform`),
so every log-det, including ``-D ln L`` for the scaling, goes through one change-of-variables
code path. The bound ``log P(x) >= E_q[log p_v(x + u) - log q(u | x)]`` is estimated with
one draw of ``u`` per image (uniform ``q = 1``, or a variational ``q`` from
:func:`flowzoo.flows.variational_dequantizer`); it equals
``-bits_per_dim(log p_y - log q, D, L) * D ln 2`` for the density ``p_y`` on ``[0, 1)^D``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import bijectors as bj
from .._types import Array, Batch, Key, Params
from ..data import logit_transform, scale_transform, shift_transform
from ..distributions import Distribution, check_event
from ._transformed import transformed

EVAL_SEED = 20261122
"""Seed of the fixed key with which ``log_prob`` of a dequantized model draws its noise."""


def _preprocess(preprocess: str | bj.Bijector, alpha: float) -> bj.Bijector:
    if not isinstance(preprocess, str):
        return preprocess
    if preprocess == "logit":
        return logit_transform(alpha)
    if preprocess == "shift":
        return shift_transform(0.5)
    raise ValueError(f"unknown preprocess {preprocess!r}; use 'logit', 'shift' or a Bijector")


def dequantized(
    flow: Distribution,
    levels: int,
    *,
    preprocess: str | bj.Bijector = "logit",
    alpha: float = 0.05,
    dequantizer: Distribution | None = None,
) -> Distribution:
    """A discrete-image model from a continuous flow, with exact dequantization bookkeeping.

    Args:
      flow: density of preprocessed images ``(batch, H, W, C)`` (its ``event_shape`` must be
        set), e.g. :func:`flowzoo.flows.glow` or :func:`flowzoo.flows.realnvp_image`.
      levels: grey levels ``L`` of the data (17 for digits, 256 for MNIST).
      preprocess: ``"logit"`` (RealNVP; ``y -> logit(alpha + (1 - 2 alpha) y)``),
        ``"shift"`` (Glow; ``y -> y - 0.5``) or any :class:`~flowzoo.bijectors.Bijector`
        whose ``inverse`` maps ``[0, 1)^D`` to the flow's space.
      alpha: the logit transform's margin (RealNVP's official code: 0.05).
      dequantizer: ``None`` for uniform dequantization, or a conditional density ``q(u|x)``
        on ``(0, 1)^D`` such as :func:`flowzoo.flows.variational_dequantizer` (context: the
        image scaled to ``x / L - 0.5``).

    Returns:
      A :class:`~flowzoo.distributions.Distribution` over grey-level images ``(batch, H, W,
      C)`` (floats ``0 .. L-1``), params ``{"density": ..., "dequantizer": ...}``:

      * ``log_prob_estimate(params, key, x)``: one-draw estimate of the lower bound
        ``log p_v(x + u) - log q(u | x)`` on ``log P(x)``, nats per image (a fresh ``u``
        from ``key``; what training minimises).
      * ``log_prob(params, x)``: the same bound with ``u`` drawn from the fixed key
        ``jax.random.key(EVAL_SEED)``, so it is a deterministic function of ``x``;
        ``metrics.bits_per_dim(log_prob, D)`` is the discrete-data bits/dim.
      * ``sample``: ``floor`` of a sample of ``v``, clipped to ``0 .. L-1``.
      * ``init(key, x)``: data-dependent layers (ActNorm) see a uniformly dequantized batch.
    """
    shape = tuple(flow.event_shape)
    if not shape:
        raise ValueError("dequantized: the flow must declare its event_shape (H, W, C)")
    levels = int(levels)
    if levels < 2:
        raise ValueError(f"dequantized: levels must be >= 2, got {levels}")
    density = transformed(flow, bj.chain(_preprocess(preprocess, alpha), scale_transform(levels)))
    eval_key = jax.random.key(EVAL_SEED)

    def _float(x: Batch) -> Array:
        check_event(x, shape, "dequantized")
        return jnp.asarray(x).astype(jnp.float32)

    def _context(x: Array) -> Array:
        return x / levels - 0.5

    def _draw_u(params: Params, key: Key, x: Array) -> tuple[Array, Array]:
        if dequantizer is None:
            return jax.random.uniform(key, x.shape, jnp.float32), jnp.zeros(x.shape[0])
        return dequantizer.sample_and_log_prob(params, key, x.shape[0], _context(x))

    def init(key: Key, x: Batch, context=None) -> Params:
        _no_context(context)
        x = _float(x)
        k_u, k_d, k_q = jax.random.split(key, 3)
        u = jax.random.uniform(k_u, x.shape, jnp.float32, 1e-3, 1.0 - 1e-3)
        params = {"density": density.init(k_d, x + u), "dequantizer": ()}
        if dequantizer is not None:
            params["dequantizer"] = dequantizer.init(k_q, u, _context(x))
        return params

    def log_prob_estimate(params: Params, key: Key, x: Batch, context=None) -> Array:
        _no_context(context)
        x = _float(x)
        u, log_q = _draw_u(params["dequantizer"], key, x)
        return density.log_prob(params["density"], x + u) - log_q

    def log_prob(params: Params, x: Batch, context=None) -> Array:
        return log_prob_estimate(params, eval_key, x, context)

    def sample(params: Params, key: Key, n: int, context=None, temperature: float = 1.0):
        _no_context(context)
        v = density.sample(params["density"], key, n, temperature=temperature)
        return jnp.clip(jnp.floor(v), 0.0, float(levels - 1))

    def sample_and_log_prob(params, key, n, context=None, temperature=1.0):
        x = sample(params, key, n, context, temperature)
        return x, log_prob(params, x)

    return Distribution(init, log_prob, sample, sample_and_log_prob, shape, log_prob_estimate)


def _no_context(context) -> None:
    if context is not None:
        raise ValueError("dequantized image models are unconditional: pass context=None")
