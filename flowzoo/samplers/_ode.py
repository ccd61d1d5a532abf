"""ODE samplers: the flow-matching ODE (t=0 noise -> t=1 data) and the probability-flow ODE
of an SDE (t=T noise -> t=t_min data), both one :func:`flowzoo.integrate.solve_ode` call.

Fixed-step solvers (``euler``, ``midpoint``, ``heun``, ``rk4``) step on a uniform grid;
adaptive ones (``tsit5``, ``dopri5``) use ``rtol``/``atol``. The NFE is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, ArrayLike, Batch, Float, Key
from ..integrate import SolverConfig, solve_ode
from ..paths import SDE, Path, base_scale, probability_flow


class ODESample(NamedTuple):
    """Samples, the trajectory at ``save_ts`` (``(len(save_ts), n, *event)`` or ``None``) and
    the number of vector-field evaluations of the whole batch (``nfe``, int32)."""

    samples: Batch
    trajectory: Array | None
    nfe: Array


def flow_ode_sample(
    velocity_fn: Callable[[Array, Batch], Batch],
    key: Key,
    shape: tuple[int, ...],
    *,
    path: Path | None = None,
    solver: SolverConfig = SolverConfig(),
    save_ts: Float[ArrayLike, " k"] | None = None,
    temperature: float = 1.0,
    t0: float = 0.0,
    t1: float = 1.0,
) -> ODESample:
    """Solve ``dx/dt = v(t, x)`` from t0 (noise) to t1 (data); flow-matching time.

    ``x(t0) = temperature * sigma_0 * z``, ``z ~ N(0, I)`` of ``shape = (n, *event)``, where
    ``sigma_0 = base_scale(path, t0)`` (1 without a path; ``sigma_max`` for the VE path).
    ``velocity_fn(t, x)``: scalar ``t``, ``x`` ``(n, *event)``. ``save_ts``: times at which
    to keep the trajectory (for plots). ``t1 < 1`` for paths singular at t=1 (VP).
    """
    scale = temperature * (1.0 if path is None else base_scale(path, t0))
    x0 = scale * jax.random.normal(key, tuple(shape), jnp.float32)
    sol = solve_ode(
        velocity_fn,
        x0,
        t0,
        t1,
        save_ts=None if save_ts is None else jnp.asarray(save_ts),
        **solver.check()._asdict(),
    )
    return ODESample(sol.y1, sol.ys if save_ts is not None else None, sol.nfe)


def pf_ode_sample(
    sde: SDE,
    score_fn: Callable[[Array, Batch], Batch],
    key: Key,
    shape: tuple[int, ...],
    *,
    t_min: float = 1e-3,
    solver: SolverConfig = SolverConfig(),
    temperature: float = 1.0,
) -> ODESample:
    """Deterministic samples: a prior draw at ``T`` integrated back to ``t_min`` (SDE time,
    t=0 data, t=T noise) along the probability-flow field of ``score_fn(t, x)``."""
    # the prior draw of every SDE sampler comes from split(key)[0]
    x_T = temperature * sde.prior_sample(jax.random.split(key)[0], tuple(shape))
    sol = solve_ode(probability_flow(sde, score_fn), x_T, sde.T, t_min, **solver.check()._asdict())
    return ODESample(sol.y1, None, sol.nfe)
