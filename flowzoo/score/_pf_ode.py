"""The probability-flow ODE of a score model as a :class:`~flowzoo.distributions.Distribution`.

SDE time: t=0 data, t=T noise (Song et al. 2021, Sec. 4.3). The model is the CNF
(:func:`flowzoo.cnf.cnf`) of the probability-flow field
``v(t, x) = f(t, x) - g(t)^2 / 2 * score(t, x)`` (:func:`flowzoo.paths.probability_flow`)
with the SDE's prior at ``T`` as its base and the data at ``t = t_min``:
``log p(x) = log p_T(x_T) + int_{t_min}^T div v(t, x_t) dt``. Any ``t_min > 0`` gives a
proper density, that of the PF-ODE model at ``t_min``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Context, Key, Params
from ..cnf import cnf
from ..distributions import Distribution, check_count, check_event
from ..integrate import DivergenceConfig, SolverConfig
from ..paths import SDE, probability_flow

TIME_CHANGES = ("linear", "log")


def log_time(field: Callable[[Array, Batch], Batch], t_min: float, T: float):
    """``field(t, x)`` in the time ``s = log(t / t_min) / log(T / t_min)`` (s=0: t=t_min, s=1: t=T).

    Returns ``(s, x) -> field(t(s), x) * dt/ds`` with ``t(s) = t_min (T / t_min)^s`` and
    ``dt/ds = t log(T / t_min)``. The flow map and the log-det integral ``int div field dt`` are
    unchanged (a change of variables), but fixed steps in ``s`` are geometric in ``t``: for
    the VP SDE near the data (``std(t)^2 ~ beta_min t``) the field's Jacobian grows like
    ``1/t``, and ``dt/ds`` cancels it. SDE time convention: t=0 data, t=T noise.
    """
    log_ratio = float(np.log(T / t_min))

    def reparametrised(s, x):
        t = t_min * jnp.exp(log_ratio * s)
        return field(t, x) * (t * log_ratio).astype(x.dtype)

    return reparametrised


def sde_prior(sde: SDE, event_shape: Sequence[int]) -> Distribution:
    """The SDE's prior at ``T`` as a parameter-free Distribution (``temperature`` scales it)."""
    shape = tuple(int(s) for s in event_shape)

    def log_prob(params, x, context=None):
        check_event(x, shape, "sde_prior.log_prob")
        return sde.prior_log_prob(x)

    def sample(params, key, n, context=None, temperature=1.0):
        check_count(n, "sde_prior.sample")
        return temperature * sde.prior_sample(key, (n, *shape))

    def sample_and_log_prob(params, key, n, context=None, temperature=1.0):
        x = sample(params, key, n, context, temperature)
        return x, sde.prior_log_prob(x)

    return Distribution(lambda *a, **k: (), log_prob, sample, sample_and_log_prob, shape)


def _call(fn: Callable, params: Params, t, x, context: Context):
    return fn(params, t, x) if context is None else fn(params, t, x, context)


def pf_ode_distribution(
    sde: SDE,
    score_network: Any,
    event_shape: Sequence[int],
    *,
    t_min: float = 1e-5,
    time_change: str = "linear",
    sample_solver: SolverConfig = SolverConfig(),
    log_prob_solver: SolverConfig = SolverConfig(),
    divergence: DivergenceConfig = DivergenceConfig(),
) -> Distribution:
    """The probability-flow ODE model of a score network, as a Distribution.

    Args:
      sde: the forward SDE (t=0 data, t=T noise) the score was trained for.
      score_network: a :class:`flowzoo.nets.Network` with ``init(key, t, x)`` and
        ``apply(params, t, x[, context]) -> score`` (e.g.
        :func:`flowzoo.score.sde_score_network`), or a bare ``apply`` (then ``init`` raises).
      event_shape: shape of one example.
      t_min: the data end of the ODE (SDE time, a time cutoff, not a step size); the
        density is that of the model at ``t_min``.
      time_change: ``"linear"`` (solve in t) or ``"log"`` (solve in ``s`` of
        :func:`log_time`: fixed steps geometric in t, for the VP field's ``1/t`` growth).
      sample_solver: and ``log_prob_solver``, ``divergence`` (a
        :class:`flowzoo.integrate.DivergenceConfig`): as in :func:`flowzoo.cnf.cnf`.
    """
    if time_change not in TIME_CHANGES:
        raise ValueError(f"time_change must be one of {list(TIME_CHANGES)}, got {time_change!r}")
    if not 0.0 < float(t_min) < sde.T:
        raise ValueError(f"t_min must be in (0, T={sde.T}), got {t_min!r}")
    net_init = getattr(score_network, "init", None)
    score_apply = getattr(score_network, "apply", score_network)

    def field_apply(params, t, x, context=None):
        def raw(tt, y):
            return probability_flow(sde, lambda u, z: _call(score_apply, params, u, z, context))(
                tt, y
            )

        if time_change == "log":
            return log_time(raw, float(t_min), sde.T)(t, x)
        return raw(t, x)

    def field_init(key: Key, t, x, context=None):
        if net_init is None:
            raise TypeError("pf_ode_distribution got a bare apply function: pass a Network")
        t_mid = jnp.full((x.shape[0],), 0.5 * sde.T, jnp.float32)
        return net_init(key, t_mid, x) if context is None else net_init(key, t_mid, x, context)

    t_data, t_base = (0.0, 1.0) if time_change == "log" else (float(t_min), sde.T)
    return cnf(
        field_apply,
        event_shape,
        base=sde_prior(sde, event_shape),
        t_base=t_base,
        t_data=t_data,
        sample_solver=sample_solver,
        log_prob_solver=log_prob_solver,
        divergence=divergence,
        vector_field_init=field_init,
    )
