"""Reflow (Liu, Gong & Liu 2023, "Flow Straight and Fast", sec. 2.3): straighten a trained flow.

A flow-matching model defines a deterministic coupling of noise and data: ``x1 = phi(x0)``,
the end of its ODE from ``x0``. Training a new field with :func:`cfm_loss` on those fixed
pairs (``source="paired"``, straight-line path) gives the "2-rectified flow", whose paths
cross less and are straighter, so few Euler steps suffice; the marginal law at t=1 stays the
model's own. Time convention: t=0 noise, t=1 data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .._compile import jit
from .._types import Array, Batch, Float, Key, count_arg
from ..integrate import SolverConfig, solve_ode


def reflow_pairs(
    velocity_fn: Callable[[Array, Batch], Batch],
    key: Key,
    n: int,
    event_shape: Sequence[int],
    *,
    solver: SolverConfig = SolverConfig("rk4", 32),
    noise_scale: float = 1.0,
    chunk_size: int = 4096,
) -> Float[Array, "n 2 *event"]:
    """Noise and the model's own samples from it, stacked: ``out[:, 0] = x0``, ``out[:, 1] =
    x1 = ODE(x0)`` (solved from t=0 to t=1 with ``solver``).

    ``velocity_fn(t, x)``: scalar ``t``, ``x`` of shape ``(m, *event)``. ``x0 ~ N(0,
    noise_scale^2 I)`` (the path's t=0 scale). The solve runs ``chunk_size`` rows at a time.
    Feed the result to ``cfm_loss(..., source="paired")`` with the straight path
    (:func:`flowzoo.paths.cond_ot_path`) and train, usually starting from the old params.
    """
    n = count_arg(n, "n", "reflow_pairs")
    chunk = count_arg(chunk_size, "chunk_size", "reflow_pairs")
    shape = tuple(int(s) for s in event_shape)
    x0 = noise_scale * jax.random.normal(key, (n, *shape), jnp.float32)
    solve = jit(lambda y: solve_ode(velocity_fn, y, 0.0, 1.0, **solver.check()._asdict()).y1)
    x1 = jnp.concatenate([solve(x0[i : i + chunk]) for i in range(0, n, chunk)], axis=0)
    return jnp.stack([x0, x1], axis=1)


def reflow(
    apply_fn: Callable[..., Batch],
    params: Any,
    key: Key,
    n: int,
    event_shape: Sequence[int],
    *,
    solver: SolverConfig = SolverConfig("rk4", 32),
    time_sampling: str = "uniform",
) -> tuple[Float[Array, "n 2 *event"], Callable]:
    """One reflow round: the trained field's own pairs and the loss that straightens it.

    ``apply_fn(params, t, x, context=None)`` is the trained velocity (straight-path CFM,
    t=0 noise, t=1 data). Returns ``(pairs, loss)``: ``n`` pairs from :func:`reflow_pairs`
    and ``cfm_loss(apply_fn, cond_ot_path(), source="paired")``. Retrain with
    ``train.fit(loss, optimizer, params, data.array_batches(pairs, batch_size), ...)``,
    starting from ``params`` (Liu et al. 2023 initialise the 2-rectified flow from the
    1-rectified one); repeat on the result for a 3-rectified flow.
    """
    from ..paths import cond_ot_path
    from ._loss import cfm_loss

    pairs = reflow_pairs(lambda t, x: apply_fn(params, t, x), key, n, event_shape, solver=solver)
    loss = cfm_loss(apply_fn, cond_ot_path(), source="paired", time_sampling=time_sampling)
    return pairs, loss


def straightness(
    velocity_fn: Callable[[Array, Batch], Batch], x0: Batch, *, num_steps: int = 32
) -> Float[Array, ""]:
    """``E int_0^1 |v(t, x_t) - (x_1 - x_0)|^2 dt`` along the model's ODE paths (Liu et al.
    2023, eq. 5; 0 iff every path is a straight line run at constant speed).

    The paths start at ``x0`` and are solved with ``num_steps`` RK4 steps; the integral is
    the trapezoidal rule over the ``num_steps + 1`` grid times. Units: squared data units.
    """
    ts = jnp.linspace(0.0, 1.0, num_steps + 1)
    sol = solve_ode(velocity_fn, x0, 0.0, 1.0, solver="rk4", num_steps=num_steps, save_ts=ts)
    ys = sol.ys
    chord = ys[-1] - ys[0]
    v = jax.vmap(velocity_fn)(ts, ys)
    err = jnp.mean(jnp.sum((v - chord[None]).reshape(len(ts), x0.shape[0], -1) ** 2, -1), -1)
    return jnp.trapezoid(err, ts)
