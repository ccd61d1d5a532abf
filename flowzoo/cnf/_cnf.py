"""Continuous normalizing flows (Chen et al. 2018; FFJORD, Grathwohl et al. 2019).

Time convention (flow matching): t = ``t0`` (default 0) is the base noise N(0, I) and
t = ``t1`` (default 1) is data. Sampling integrates ``dx/dt = v(t, x)`` from t0 to t1; the
log-density integrates the augmented state ``(x, l)`` with ``dl/dt = div v(t, x)`` from
t1 back to t0 (``l(t1) = 0``), and ``log p_1(x) = log N(x(t0); 0, I) + l(t0)``
(instantaneous change of variables: ``d log p_t(x_t) / dt = -div v(t, x_t)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Context, Key, LogProb, Params
from ..distributions import Distribution
from ..distributions._base import check_context, check_event
from ..integrate import solve_ode
from ._divergence import PROBES, divergence_exact, divergence_hutchinson, sample_probe

DIVERGENCES = ("exact", "hutchinson")


class CNFStats(NamedTuple):
    """Solver statistics of one CNF solve: ``nfe`` (vector-field evaluations of the whole
    batch, int32) and ``num_steps`` (solver steps, int32)."""

    nfe: Array
    num_steps: Array


class CNF(NamedTuple):
    """A CNF: the :class:`~flowzoo.distributions.Distribution` fields plus key-explicit extras.

    The first five fields are the Distribution protocol (``log_prob`` and
    ``sample_and_log_prob`` use the *exact* divergence, since they take no key / must be
    exact); ``cnf.distribution`` gives a plain ``Distribution``.

    * ``log_prob_estimate(params, key, x, context=None) -> (batch,)``: the configured
      divergence (Hutchinson with a fresh probe per call, or exact if so configured).
    * ``log_prob_and_stats(params, x, context=None, key=None) -> ((batch,), CNFStats)``:
      exact without a key, the configured estimator with one.
    * ``sample_and_stats(params, key, n, context=None, temperature=1.0) -> (x, CNFStats)``.
    * ``vector_field(params, t, x, context=None) -> (batch, *event)``: the network.
    """

    init: Callable
    log_prob: Callable
    sample: Callable
    sample_and_log_prob: Callable
    event_shape: tuple[int, ...]
    log_prob_estimate: Callable
    log_prob_and_stats: Callable
    sample_and_stats: Callable
    vector_field: Callable

    @property
    def distribution(self) -> Distribution:
        """The plain :class:`~flowzoo.distributions.Distribution` view of this CNF."""
        return Distribution(*self[:5])


def _split_network(vector_field: Any, vector_field_init: Callable | None):
    if vector_field_init is not None:
        apply = getattr(vector_field, "apply", vector_field)
        return vector_field_init, apply
    if hasattr(vector_field, "init") and hasattr(vector_field, "apply"):
        return vector_field.init, vector_field.apply
    if callable(vector_field):
        return None, vector_field
    raise TypeError("vector_field must be a Network(init, apply) or an apply function")


def _std_normal_log_prob(z: Batch) -> LogProb:
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * jnp.sum(flat**2, axis=-1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def cnf(
    vector_field: Any,
    event_shape: int | Sequence[int],
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    divergence: str = "exact",
    probe: str = "rademacher",
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    num_steps: int | None = None,
    max_steps: int = 4096,
    adjoint: str = "recursive",
    vector_field_init: Callable | None = None,
) -> CNF:
    """A continuous normalizing flow with base N(0, I) at ``t0`` and data at ``t1``.

    Args:
      vector_field: a :class:`flowzoo.nets.Network` such as ``nets.time_mlp(event_shape)``
        (``init(key, t, x, context)``, ``apply(params, t, x, context=None)``), or just the
        apply function together with ``vector_field_init``. ``apply`` maps ``(batch,
        *event)`` to the same shape with a scalar ``t``, and must treat rows independently
        (the exact divergence relies on it).
      event_shape: shape of one example.
      t0, t1: noise and data times (flow-matching convention: 0 noise, 1 data).
      divergence: ``"exact"`` (Jacobian trace, ``D`` jvps per evaluation) or
        ``"hutchinson"`` (one jvp with a probe drawn once per solve, FFJORD). Used by
        ``log_prob_estimate`` and ``log_prob_and_stats(..., key=...)``; ``log_prob`` is
        always exact because the protocol gives it no key.
      probe: Hutchinson probe, ``"rademacher"`` or ``"gaussian"``.
      solver, rtol, atol, num_steps, max_steps, adjoint: passed to
        :func:`flowzoo.integrate.solve_ode` (adaptive ``"tsit5"`` by default; pass
        ``num_steps`` for fixed steps).
      vector_field_init: ``init(key, t, x, context) -> params`` when ``vector_field`` is a
        bare apply function.

    Returns:
      :class:`CNF`. Params are the network's params; ``init(key, x, context=None)`` calls the
      network's init with ``t = t0`` and the batch ``x``.
    """
    shape = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(int(s) for s in event_shape)
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose one of {list(DIVERGENCES)}")
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {list(PROBES)}")
    net_init, apply = _split_network(vector_field, vector_field_init)
    solve_kw = dict(
        solver=solver,
        rtol=rtol,
        atol=atol,
        num_steps=num_steps,
        max_steps=max_steps,
        adjoint=adjoint,
    )

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        if net_init is None:
            raise TypeError("cnf(...) got a bare apply function: pass vector_field_init=")
        check_event(x, shape, "cnf.init")
        return net_init(key, jnp.asarray(t0, jnp.float32), x, context)

    def _log_prob(params, x, context, key):
        check_event(x, shape, "cnf.log_prob")
        check_context(x.shape[0], context, "cnf.log_prob")
        if key is None or divergence == "exact":
            div = divergence_exact
        else:
            v = sample_probe(key, x.shape, x.dtype, probe)
            div = lambda f, y: divergence_hutchinson(f, y, v)

        def aug(t, state):
            y, _ = state
            return div(lambda u: apply(params, t, u, context), y)

        sol = solve_ode(aug, (x, jnp.zeros(x.shape[0], x.dtype)), t1, t0, **solve_kw)
        z, delta = sol.y1
        return _std_normal_log_prob(z) + delta, CNFStats(sol.nfe, sol.num_steps)

    def log_prob_and_stats(
        params: Params, x: Batch, context: Context = None, key: Key | None = None
    ) -> tuple[LogProb, CNFStats]:
        return _log_prob(params, x, context, key)

    def log_prob(params: Params, x: Batch, context: Context = None) -> LogProb:
        return _log_prob(params, x, context, None)[0]

    def log_prob_estimate(params: Params, key: Key, x: Batch, context: Context = None) -> LogProb:
        return _log_prob(params, x, context, key)[0]

    def sample_and_stats(
        params: Params, key: Key, n: int, context: Context = None, temperature: float = 1.0
    ) -> tuple[Batch, CNFStats]:
        check_context(n, context, "cnf.sample")
        z = temperature * jax.random.normal(key, (n, *shape), jnp.float32)
        sol = solve_ode(lambda t, y: apply(params, t, y, context), z, t0, t1, **solve_kw)
        return sol.y1, CNFStats(sol.nfe, sol.num_steps)

    def sample(params, key, n, context=None, temperature=1.0):
        return sample_and_stats(params, key, n, context, temperature)[0]

    def sample_and_log_prob(params, key, n, context=None, temperature=1.0):
        check_context(n, context, "cnf.sample_and_log_prob")
        z = temperature * jax.random.normal(key, (n, *shape), jnp.float32)

        def aug(t, state):
            y, _ = state
            out, tr = divergence_exact(lambda u: apply(params, t, u, context), y)
            return out, -tr

        sol = solve_ode(aug, (z, jnp.zeros(n, z.dtype)), t0, t1, **solve_kw)
        x, delta = sol.y1
        return x, _std_normal_log_prob(z) + delta

    return CNF(
        init,
        log_prob,
        sample,
        sample_and_log_prob,
        shape,
        log_prob_estimate,
        log_prob_and_stats,
        sample_and_stats,
        apply,
    )
