"""Sampling a flow-matching model: integrate the learned ODE from noise (t=0) to data (t=1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, ArrayLike, Batch, Float, Key, Params
from ._paths import Path

ApplyFn = Callable[..., Batch]


class SampleResult(NamedTuple):
    """Samples at t=1, the trajectory at ``save_ts`` (``(len(save_ts), n, *event)`` or
    ``None``) and the number of vector-field evaluations (NFE) of the solve."""

    samples: Batch
    trajectory: Array | None
    nfe: Array


def sample(
    apply_fn: ApplyFn,
    params: Params,
    key: Key,
    n: int,
    event_shape: Sequence[int],
    *,
    solver: str = "tsit5",
    num_steps: int | None = None,
    save_ts: Float[ArrayLike, " k"] | None = None,
    context: Array | None = None,
    path: Path | None = None,
    temperature: float = 1.0,
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
) -> SampleResult:
    """Draw ``n`` samples by solving ``dx/dt = v_theta(t, x)`` from t=0 (noise) to t=1 (data).

    ``x(0) = temperature * sigma_0 * z``, ``z ~ N(0, I)`` of shape ``(n, *event_shape)``, where
    ``sigma_0`` is the path's noise scale at t=0 (1 unless ``path`` is given, e.g.
    ``sigma_max`` for the VE path). The whole batch is one ODE state, solved by
    :func:`flowzoo.integrate._ode.solve_ode` with ``solver`` (``"euler"``, ``"midpoint"``,
    ``"heun"``, ``"rk4"`` with ``num_steps`` fixed steps; ``"tsit5"``, ``"dopri5"`` adaptive
    with ``rtol``/``atol``).

    Args:
      apply_fn: ``apply_fn(params, t, x, context=None)``; ``t`` is passed as a scalar.
      context: optional conditioning (e.g. a one-hot label ``(n, classes)``); for guidance pass
        a closure of :func:`guided_velocity` as ``apply_fn`` instead.
      save_ts: times at which to store the trajectory (for plots).
      t0, t1: integration interval (e.g. ``t1 = 1 - 1e-3`` for the VP path).
    """
    from ..integrate._ode import solve_ode  # the one diffrax wrapper (flowzoo.integrate)

    x0 = jax.random.normal(key, (n, *tuple(event_shape)))
    scale = temperature
    if path is not None:
        scale = scale * path.schedule(jnp.asarray(t0, x0.dtype))[1]
    x0 = scale * x0

    def vector_field(t, y):
        return apply_fn(params, t, y, context)

    sol = solve_ode(
        vector_field,
        x0,
        t0,
        t1,
        solver=solver,
        num_steps=num_steps,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        save_ts=None if save_ts is None else jnp.asarray(save_ts),
    )
    return SampleResult(sol.y1, sol.ys if save_ts is not None else None, sol.nfe)
