"""The one continuous-time likelihood: integrate ``(x, int div v dt)`` through :func:`solve_ode`.

CNFs, flow-matching models and the probability-flow ODE of a score model all compute their
log-density with :func:`ode_log_prob`. The caller says which end of the time interval holds
the data and which the base density:

    log p_data(x) = log p_base(x(t_base)) + int_{t_data}^{t_base} div v(t, x(t)) dt,

which follows from the instantaneous change of variables ``d log p_t(x_t)/dt = -div v``
(Chen et al. 2018, Thm. 1) and holds in either time direction (flow matching: ``t_data=1,
t_base=0``; the probability-flow ODE of an SDE: ``t_data=eps, t_base=T``).

With ``K`` Hutchinson probes the state carries K running traces along the *same* trajectory
``x(t)`` (the trajectory does not depend on the probe), so a solve costs one primal and K
tangent evaluations per step instead of K solves. Each probe gives an unbiased estimate of
``log p`` (Grathwohl et al. 2019); their mean is the estimate and ``std / sqrt(K)``
(ddof = 1) its standard error per example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Float, Key, LogProb
from ._divergence import check_divergence, divergence_exact, divergence_hutchinson, sample_probes
from ._ode import solve_ode


class ODELogProb(NamedTuple):
    """Result of :func:`ode_log_prob` (log-densities in nats).

    * ``log_prob``: ``(batch,)`` the estimate (exact, or the mean over probes).
    * ``stderr``: ``(batch,)`` standard error over the probes (``std(ddof=1) / sqrt(K)``);
      zeros for the exact divergence or ``K = 1``.
    * ``per_probe``: ``(K, batch)`` one estimate per probe (``(1, batch)`` if exact).
    * ``base_point``: ``(batch, *event)`` the points at ``t_base``.
    * ``nfe``: int32, evaluations of the augmented field (summed over chunks).
    * ``num_steps``: int32, solver steps (summed over chunks).
    """

    log_prob: LogProb
    stderr: Float[Array, " batch"]
    per_probe: Float[Array, "probes batch"]
    base_point: Batch
    nfe: Array
    num_steps: Array


def ode_log_prob(
    vector_field: Callable[[Array, Batch], Batch],
    x: Batch,
    *,
    t_data: float,
    t_base: float,
    base_log_prob: Callable[[Batch], LogProb],
    divergence: str = "exact",
    key: Key | None = None,
    num_probes: int = 1,
    probe: str = "rademacher",
    solver: str = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    adjoint: str = "recursive",
    chunk_size: int | None = None,
) -> ODELogProb:
    """Log-density (nats) of ``x`` ``(batch, *event)`` under the ODE flow of ``vector_field``.

    Args:
      vector_field: ``(t, x) -> dx/dt``, ``t`` a scalar in the caller's time, ``x``
        ``(batch, *event)``; rows must be independent (no batch statistics).
      x: points at time ``t_data``.
      t_data, t_base: the data and base times (flow matching: ``t_data=1, t_base=0``;
        probability-flow ODE of an SDE: ``t_data=eps, t_base=T``).
      base_log_prob: ``(batch, *event) -> (batch,)`` log-density at ``t_base``.
      divergence: ``"exact"`` (Jacobian trace, ``D`` tangents per evaluation) or
        ``"hutchinson"`` (``num_probes`` probes drawn from ``key``, fixed along the solve).
      key: PRNG key of the probes (required for Hutchinson, ignored otherwise).
      num_probes: ``K``, Hutchinson probes per example.
      probe: ``"rademacher"`` or ``"gaussian"``.
      solver, num_steps, rtol, atol, max_steps, adjoint: as in :func:`solve_ode`.
      chunk_size: solve ``chunk_size`` rows at a time with ``lax.map`` (bounds memory: the
        exact divergence evaluates the field on ``D * chunk_size`` rows at once); the batch
        is padded to a multiple of it. ``None``: the whole batch in one solve.

    Returns:
      :class:`ODELogProb`.
    """
    check_divergence(divergence, probe, num_probes)
    if divergence == "hutchinson" and key is None:
        raise ValueError("ode_log_prob: the Hutchinson divergence needs key=")
    num_probes = 1 if divergence == "exact" else int(num_probes)
    n = x.shape[0]
    if n == 0:
        raise ValueError("ode_log_prob: x is an empty batch")

    def solve(xc: Batch, kc: Key | None):
        if divergence == "exact":
            div = lambda f, y: (lambda o: (o[0], o[1][None]))(divergence_exact(f, y))
        else:
            probes = sample_probes(kc, num_probes, xc.shape, xc.dtype, probe)
            div = lambda f, y: divergence_hutchinson(f, y, probes)

        def aug(t, state):
            return div(lambda u: vector_field(t, u), state[0])

        l0 = jnp.zeros((num_probes, xc.shape[0]), xc.dtype)
        sol = solve_ode(
            aug,
            (xc, l0),
            t_data,
            t_base,
            solver=solver,
            num_steps=num_steps,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
            adjoint=adjoint,
        )
        z, delta = sol.y1
        return base_log_prob(z)[None, :] + delta, z, sol.nfe, sol.num_steps

    if chunk_size is None or chunk_size >= n:
        per_probe, z, nfe, steps = solve(x, key)
    else:
        m = -(-n // chunk_size)
        pad = m * chunk_size - n
        xp = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, *x.shape[1:]))]) if pad else x
        xs = xp.reshape(m, chunk_size, *x.shape[1:])
        ks = None if key is None else jax.random.split(key, m)
        out, zs, nfes, stepss = jax.lax.map(lambda a: solve(*a), (xs, ks))
        per_probe = jnp.moveaxis(out, 0, 1).reshape(num_probes, m * chunk_size)[:, :n]
        z = zs.reshape(m * chunk_size, *x.shape[1:])[:n]
        nfe, steps = jnp.sum(nfes), jnp.sum(stepss)
    estimate = jnp.mean(per_probe, axis=0)
    if num_probes > 1:
        stderr = jnp.std(per_probe, axis=0, ddof=1) / np.sqrt(num_probes)
    else:
        stderr = jnp.zeros_like(estimate)
    return ODELogProb(
        estimate, stderr, per_probe, z, jnp.asarray(nfe, jnp.int32), jnp.asarray(steps, jnp.int32)
    )
