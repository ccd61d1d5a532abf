"""Probability-flow ODE sampling and exact log-likelihood (Song et al. 2021, Sec. 4.3).

SDE time: t=0 data, t=T noise. Sampling integrates the probability-flow vector field
(:func:`flowzoo.score.probability_flow`) from ``T`` down to ``eps``; the log-likelihood
integrates the augmented state ``(x, int div v)`` from ``eps`` up to ``T`` and adds the
prior: ``log p_eps(x) = log p_T(x_T) + int_eps^T div v(t, x_t) dt``. Both go through
:func:`flowzoo.integrate.solve_ode`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key, LogProb
from ..integrate._ode import solve_ode
from ..score._pf_ode import probability_flow
from ..score._sdes import SDE


class ODELogProb(NamedTuple):
    """``log_prob`` ``(batch,)`` in nats, ``prior_point`` ``(batch, *event)`` at T, ``nfe``."""

    log_prob: LogProb
    prior_point: Batch
    nfe: Array


def pf_ode_sample(
    sde: SDE,
    score_fn: Callable[[Array, Batch], Batch],
    key: Key,
    shape: tuple[int, ...],
    *,
    eps: float = 1e-3,
    solver: str = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Batch:
    """Deterministic samples ``(n, *event)``: prior at ``T`` integrated back to ``eps``."""
    x_T = sde.prior_sample(key, shape)
    vf = probability_flow(sde, score_fn)
    return solve_ode(
        vf, x_T, sde.T, eps, solver=solver, num_steps=num_steps, rtol=rtol, atol=atol
    ).y1


def _exact_divergence(vf, t, x):
    def one(xi):
        f = lambda y: vf(t, y[None])[0].reshape(-1)
        return jnp.trace(jax.jacfwd(f)(xi).reshape(xi.size, xi.size))

    return jax.vmap(one)(x)


def pf_ode_log_prob(
    sde: SDE,
    score_fn: Callable[[Array, Batch], Batch],
    x: Batch,
    *,
    eps: float = 1e-5,
    solver: str = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    hutchinson_key: Key | None = None,
) -> ODELogProb:
    """Log-density (nats) of ``x`` ``(batch, *event)`` under the probability-flow model at ``eps``.

    The divergence is exact (``D`` forward-mode products, for low dimension) unless
    ``hutchinson_key`` is given, then one Rademacher Hutchinson probe (unbiased, fixed
    along the solve). ``score_fn(t, x)``, ``t`` scalar.
    """
    vf = probability_flow(sde, score_fn)
    if hutchinson_key is None:
        div = lambda t, y: _exact_divergence(vf, t, y)
    else:
        probe = jax.random.rademacher(hutchinson_key, x.shape, x.dtype)

        def div(t, y):
            _, jv = jax.jvp(lambda z: vf(t, z), (y,), (probe,))
            return jnp.sum((jv * probe).reshape(y.shape[0], -1), 1)

    def augmented(t, state):
        y, _ = state
        return vf(t, y), div(t, y)

    y0 = (x, jnp.zeros((x.shape[0],), x.dtype))
    sol = solve_ode(
        augmented, y0, eps, sde.T, solver=solver, num_steps=num_steps, rtol=rtol, atol=atol
    )
    x_T, delta = sol.y1
    return ODELogProb(sde.prior_log_prob(x_T) + delta, x_T, sol.nfe)


def bits_per_dim(
    log_prob: LogProb, event_shape: Sequence[int], num_levels: int | None = None
) -> Array:
    """``-log p / (D ln 2)`` (+ ``log2(num_levels)`` for data scaled from ``num_levels``
    discrete values to unit-width bins in [0, 1], e.g. 256 for 8-bit images)."""
    d = int(np.prod(event_shape))
    bpd = -log_prob / (d * np.log(2.0))
    return bpd + (np.log2(num_levels) if num_levels else 0.0)
