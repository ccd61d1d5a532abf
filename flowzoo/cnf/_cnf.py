"""Continuous normalizing flows (Chen et al. 2018; FFJORD, Grathwohl et al. 2019).

A CNF is a :class:`~flowzoo.distributions.Distribution`: a base density at ``t_base`` pushed
through the ODE ``dx/dt = v(t, x)`` to ``t_data``. Flow-matching models
(:func:`flowzoo.flow_matching.distribution`, t=0 noise, t=1 data) and the probability-flow
ODE of a score model (:func:`flowzoo.score.pf_ode_distribution`, t=0 data, t=T noise) are
built by this function; the log-density of all of them is
:func:`flowzoo.integrate.ode_log_prob`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Batch, Context, Key, LogProb, Params
from ..distributions import (
    Distribution,
    as_real,
    check_context,
    check_count,
    check_event,
    check_key,
    params_checker,
    standard_normal,
)
from ..integrate import DivergenceConfig, SolverConfig, divergence_exact, ode_log_prob, solve_ode


def _split_network(vector_field: Any, vector_field_init: Callable | None):
    if vector_field_init is not None:
        return vector_field_init, getattr(vector_field, "apply", vector_field)
    if hasattr(vector_field, "init") and hasattr(vector_field, "apply"):
        return vector_field.init, vector_field.apply
    if callable(vector_field):
        return None, vector_field
    raise TypeError("vector_field must be a Network(init, apply) or an apply function")


def _shape(event_shape) -> tuple[int, ...]:
    return (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(int(s) for s in event_shape)


def cnf(
    vector_field: Any,
    event_shape: int | Sequence[int],
    *,
    base: Distribution | None = None,
    t_base: float = 0.0,
    t_data: float = 1.0,
    sample_solver: SolverConfig = SolverConfig(),
    log_prob_solver: SolverConfig = SolverConfig(),
    divergence: DivergenceConfig = DivergenceConfig(),
    vector_field_init: Callable | None = None,
) -> Distribution:
    """A continuous normalizing flow: ``base`` at ``t_base`` pushed by the ODE to ``t_data``.

    Args:
      vector_field: a :class:`flowzoo.nets.Network` such as ``nets.time_mlp(event_shape)``
        (``init(key, t, x, context)``, ``apply(params, t, x, context=None) -> dx/dt``), or
        just the apply function together with ``vector_field_init``. ``apply`` maps
        ``(batch, *event)`` to the same shape with a scalar ``t`` and must treat rows
        independently (the exact divergence relies on it).
      event_shape: shape of one example.
      base: a parameter-free base density (``init`` returns ``()``) over ``event_shape``;
        default N(0, I). Its ``sample`` takes the temperature.
      t_base, t_data: the base and data times in the caller's convention (default the
        flow-matching one, 0 noise and 1 data; the probability-flow ODE uses ``t_base=T``,
        ``t_data=eps``).
      sample_solver: how ``sample`` and ``sample_and_log_prob`` integrate base -> data.
      log_prob_solver: how ``log_prob`` and ``log_prob_estimate`` integrate data -> base.
      divergence: how ``log_prob`` and ``log_prob_estimate`` compute the divergence, their
        Hutchinson probes and rows per solve (:class:`flowzoo.integrate.DivergenceConfig`;
        default: the exact divergence for both, the whole batch in one solve).
      vector_field_init: ``init(key, t, x, context) -> params`` when ``vector_field`` is a
        bare apply function.

    Returns:
      A :class:`~flowzoo.distributions.Distribution` with ``log_prob_estimate``. Params are
      the network's; ``init(key, x, context=None)`` calls the network's init at ``t_data``.
    """
    shape = _shape(event_shape)
    base = standard_normal(shape) if base is None else base
    if tuple(base.event_shape) and tuple(base.event_shape) != shape:
        raise ValueError(f"cnf: base event shape {base.event_shape} differs from {shape}")
    if not isinstance(divergence, DivergenceConfig):
        raise TypeError(
            "cnf: divergence must be a flowzoo.integrate.DivergenceConfig, e.g. "
            f"DivergenceConfig(log_prob_estimate='hutchinson'); got {divergence!r}"
        )
    divergence = divergence.check()
    sample_solver, log_prob_solver = sample_solver.check(), log_prob_solver.check()
    net_init, apply = _split_network(vector_field, vector_field_init)
    eval_key = jax.random.key(int(divergence.probe_seed))

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        if net_init is None:
            raise TypeError("cnf(...) got a bare apply function: pass vector_field_init=")
        check_event(x, shape, "cnf.init")
        params = net_init(key, jnp.asarray(t_data, jnp.float32), x, context)
        check_params.remember(params, context)
        return params

    check_params = params_checker(init, shape, "cnf")

    def _log_prob(params, x, context, key, kind):
        check_event(x, shape, "cnf.log_prob")
        check_context(x.shape[0], context, "cnf.log_prob")
        check_params(params, context)
        x = as_real(x, at_least_float32=True)
        return ode_log_prob(
            lambda t, y: apply(params, t, y, context),
            x,
            t_data=t_data,
            t_base=t_base,
            base_log_prob=lambda z: base.log_prob((), z),
            divergence=kind,
            key=key,
            num_probes=divergence.num_probes,
            probe=divergence.probe,
            chunk_size=divergence.chunk_size,
            **log_prob_solver._asdict(),
        ).log_prob

    def log_prob(params: Params, x: Batch, context: Context = None) -> LogProb:
        return _log_prob(params, x, context, eval_key, divergence.log_prob)

    def log_prob_estimate(params: Params, key: Key, x: Batch, context: Context = None) -> LogProb:
        check_key(key, "cnf.log_prob_estimate")
        return _log_prob(params, x, context, key, divergence.log_prob_estimate)

    def sample(params, key, n, context=None, temperature=1.0):
        check_count(n, "cnf.sample")
        check_key(key, "cnf.sample")
        check_context(n, context, "cnf.sample")
        check_params(params, context)
        z = base.sample((), key, n, temperature=temperature)
        vf = lambda t, y: apply(params, t, y, context)
        return solve_ode(vf, z, t_base, t_data, **sample_solver._asdict()).y1

    def sample_and_log_prob(params, key, n, context=None, temperature=1.0):
        check_count(n, "cnf.sample_and_log_prob")
        check_key(key, "cnf.sample_and_log_prob")
        check_context(n, context, "cnf.sample_and_log_prob")
        check_params(params, context)
        if divergence.log_prob != "exact":
            x = sample(params, key, n, context, temperature)
            return x, log_prob(params, x, context)
        z = base.sample((), key, n, temperature=temperature)

        def aug(t, state):
            out, tr = divergence_exact(lambda u: apply(params, t, u, context), state[0])
            return out, -tr

        sol = solve_ode(aug, (z, jnp.zeros(n, z.dtype)), t_base, t_data, **sample_solver._asdict())
        x, delta = sol.y1
        return x, base.log_prob((), z) + delta

    return Distribution(
        init, log_prob, sample, sample_and_log_prob, shape, log_prob_estimate=log_prob_estimate
    )
