"""Metropolis-adjusted Langevin (Roberts & Tweedie 1996), batched over chains.

Proposal ``y = x + h grad log p(x) + sqrt(2h) z`` (a diffrax Euler–Maruyama step), accepted
with probability ``min(1, p(y) q(x|y) / (p(x) q(y|x)))``, ``q(y|x) = N(y; x + h s(x), 2h I)``.
Unbiased for any ``h``: the stationary law is exactly ``p``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key
from ..integrate import em_step
from ._base import Sampler


class MALAState(NamedTuple):
    position: Batch  # (chains, *event)
    log_prob: Array  # (chains,)
    score: Batch  # (chains, *event)


class MALAInfo(NamedTuple):
    acceptance_rate: Array  # (chains,) min(1, exp(log ratio))
    is_accepted: Array  # (chains,) bool


def _value_and_score(log_prob_fn):
    def fn(x):
        lp, vjp = jax.vjp(log_prob_fn, x)
        return lp, vjp(jnp.ones_like(lp))[0]

    return fn


def _log_q(x_to: Batch, x_from: Batch, score_from: Batch, h: float) -> Array:
    d = (x_to - x_from - h * score_from).reshape(x_to.shape[0], -1)
    return -jnp.sum(d**2, 1) / (4.0 * h)


def mala(log_prob_fn: Callable[[Batch], Array], step_size: float) -> Sampler:
    """MALA with batched ``log_prob_fn(x) -> (chains,)`` (unnormalised) and step ``h``."""
    value_and_score = _value_and_score(log_prob_fn)
    noise = float(np.sqrt(2.0))

    def init(positions: Batch) -> MALAState:
        lp, s = value_and_score(jnp.asarray(positions))
        return MALAState(jnp.asarray(positions), lp, s)

    def step(key: Key, state: MALAState) -> tuple[MALAState, MALAInfo]:
        k_prop, k_acc = jax.random.split(key)
        x, lp, s = state
        y = em_step(lambda t, _: s, lambda t, _: noise, k_prop, 0.0, x, step_size)
        lp_y, s_y = value_and_score(y)
        log_ratio = lp_y - lp + _log_q(x, y, s_y, step_size) - _log_q(y, x, s, step_size)
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accept = jnp.log(jax.random.uniform(k_acc, lp.shape)) < log_ratio
        pick = lambda a, b: jnp.where(accept.reshape(accept.shape + (1,) * (a.ndim - 1)), a, b)
        new = MALAState(pick(y, x), jnp.where(accept, lp_y, lp), pick(s_y, s))
        return new, MALAInfo(jnp.exp(jnp.minimum(log_ratio, 0.0)), accept)

    return Sampler(init, step)
