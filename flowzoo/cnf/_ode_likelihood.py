"""Log-likelihood of any ODE flow, with exact or multi-probe Hutchinson divergence.

One function for every continuous-time likelihood in flowzoo's recipes: the CNF of a
flow-matching velocity field (flow-matching time: t=1 data, t=0 noise) and the
probability-flow ODE of a score SDE (SDE time: t=eps data, t=T noise). The caller states
which end is data and which is the base:

    log p_data(x) = log p_base(x(t_base)) + int_{t_data}^{t_base} div v(t, x(t)) dt,

which follows from the instantaneous change of variables ``d log p_t(x_t)/dt = -div v``
(Chen et al. 2018, Thm. 1) and holds in either time direction. The augmented state
``(x, l)`` is solved by :func:`flowzoo.integrate.solve_ode` from ``t_data`` to ``t_base``.

With ``num_probes = K`` Hutchinson probes the state carries K running traces, one per probe,
along the *same* trajectory ``x(t)`` (the trajectory does not depend on the probe), so a solve
costs one primal and K tangent evaluations per step instead of K solves. Each probe gives an
unbiased estimate of ``log p`` (Grathwohl et al. 2019); their mean is the estimate and
``std / sqrt(K)`` (ddof = 1) its standard error per example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Float, Key, LogProb
from ..integrate import solve_ode
from ._divergence import divergence_exact, sample_probe

VectorField = Callable[[Array, Batch], Batch]


class ODELogProbEstimate(NamedTuple):
    """Result of :func:`ode_log_prob` (all in nats).

    * ``log_prob``: ``(batch,)`` the estimate (exact, or the mean over probes).
    * ``stderr``: ``(batch,)`` standard error of ``log_prob`` over the probes
      (``std(ddof=1) / sqrt(K)``); zeros for the exact divergence or ``K = 1``.
    * ``per_probe``: ``(K, batch)`` one estimate per probe (``(1, batch)`` if exact).
    * ``nfe``: int32, vector-field evaluations of the solve (summed over chunks).
    """

    log_prob: LogProb
    stderr: Float[Array, " batch"]
    per_probe: Float[Array, "probes batch"]
    nfe: Array


def divergence_hutchinson_probes(
    f: Callable[[Batch], Batch], x: Batch, probes: Float[Array, "probes batch *event"]
) -> tuple[Batch, Float[Array, "probes batch"]]:
    """``(f(x), v_k^T (df/dx) v_k)`` for every probe ``v_k``: one primal, K tangents.

    ``probes``: ``(K, batch, *event)`` with ``E[v v^T] = I``. ``vmap`` over the tangents only,
    so the primal pass is shared (it does not depend on the batched input).
    """
    n = x.shape[0]

    def one(v):
        out, jv = jax.jvp(f, (x,), (v,))
        return out, jnp.sum((v * jv).reshape(n, -1), axis=-1)

    outs, traces = jax.vmap(one)(probes)
    return outs[0], traces


def ode_log_prob(
    vector_field: VectorField,
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
    chunk_size: int | None = None,
) -> ODELogProbEstimate:
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
      key: PRNG key of the probes (required for Hutchinson).
      num_probes: ``K``, Hutchinson probes per example.
      probe: ``"rademacher"`` or ``"gaussian"``.
      solver, num_steps, rtol, atol, max_steps: as in :func:`flowzoo.integrate.solve_ode`.
      chunk_size: solve ``chunk_size`` rows at a time with ``lax.map`` (bounds memory:
        the exact divergence evaluates the field on ``D * chunk_size`` rows at once); the
        batch is padded to a multiple of it. ``None``: the whole batch in one solve.

    Returns:
      :class:`ODELogProbEstimate`.
    """
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if divergence == "hutchinson" and key is None:
        raise ValueError("the Hutchinson divergence needs a key")
    num_probes = 1 if divergence == "exact" else int(num_probes)
    n = x.shape[0]

    def solve(xc: Batch, kc: Key | None):
        if divergence == "exact":
            div = lambda f, y: (lambda o: (o[0], o[1][None]))(divergence_exact(f, y))
        else:
            keys = jax.random.split(kc, num_probes)
            probes = jax.vmap(lambda k: sample_probe(k, xc.shape, xc.dtype, probe))(keys)
            div = lambda f, y: divergence_hutchinson_probes(f, y, probes)

        def aug(t, state):
            y, _ = state
            return div(lambda u: vector_field(t, u), y)

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
        )
        z, delta = sol.y1
        return base_log_prob(z)[None, :] + delta, sol.nfe

    if chunk_size is None or chunk_size >= n:
        per_probe, nfe = solve(x, key)
    else:
        m = -(-n // chunk_size)
        pad = m * chunk_size - n
        xp = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, *x.shape[1:]))]) if pad else x
        xs = xp.reshape(m, chunk_size, *x.shape[1:])
        ks = None if key is None else jax.random.split(key, m)
        out, nfes = jax.lax.map(lambda a: solve(*a), (xs, ks))
        per_probe = jnp.moveaxis(out, 0, 1).reshape(num_probes, m * chunk_size)[:, :n]
        nfe = jnp.sum(nfes)
    estimate = jnp.mean(per_probe, axis=0)
    if num_probes > 1:
        stderr = jnp.std(per_probe, axis=0, ddof=1) / np.sqrt(num_probes)
    else:
        stderr = jnp.zeros_like(estimate)
    return ODELogProbEstimate(estimate, stderr, per_probe, jnp.asarray(nfe, jnp.int32))


def standard_normal_log_prob(z: Batch) -> LogProb:
    """``log N(z; 0, I)`` per row of ``(batch, *event)``, in nats."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * jnp.sum(flat**2, axis=-1) - 0.5 * flat.shape[1] * np.log(2 * np.pi)
