"""Divergence of a batched vector field: the exact Jacobian trace and Hutchinson's estimator.

The one divergence module of flowzoo: CNF and flow-matching likelihoods, the probability-flow
ODE and exact score matching all call these functions.

The field ``f`` maps ``(batch, *event) -> (batch, *event)`` and must treat batch rows
independently (no batch statistics), so that one Jacobian-vector product with a tangent that
is the same basis vector in every row gives every row's Jacobian column at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Float, Key

PROBES = ("rademacher", "gaussian")
"""Hutchinson probe distributions accepted by :func:`sample_probes`."""

DIVERGENCES = ("exact", "hutchinson")
"""Divergence computations accepted by :func:`flowzoo.integrate.ode_log_prob`."""


def check_divergence(divergence: str, probe: str = "rademacher", num_probes: int = 1) -> None:
    """Raise ``ValueError`` naming the bad argument of a divergence configuration."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {list(DIVERGENCES)}, got {divergence!r}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {list(PROBES)}, got {probe!r}")
    if isinstance(num_probes, bool) or int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")


class DivergenceConfig(NamedTuple):
    """How a continuous-time model computes the divergence in its likelihood, as one value.

    A CNF (:func:`flowzoo.cnf.cnf`, and through it :func:`flowzoo.flow_matching.distribution`
    and :func:`flowzoo.score.pf_ode_distribution`) takes one of these as ``divergence=``.

    * ``log_prob``: the divergence of ``log_prob``: ``"exact"`` (the Jacobian trace, ``D``
      tangents per evaluation) or ``"hutchinson"`` with ``num_probes`` probes from the fixed
      key ``jax.random.key(probe_seed)`` (deterministic; for high-dimensional data).
    * ``log_prob_estimate``: the divergence of ``log_prob_estimate``: ``"exact"`` or
      ``"hutchinson"`` with ``num_probes`` fresh probes from the method's key (unbiased;
      FFJORD's training estimate).
    * ``num_probes`` (``K``, Hutchinson probes per example) and ``probe`` (a name in
      :data:`PROBES`): the probes of either method (:func:`sample_probes`).
    * ``probe_seed``: the seed of ``log_prob``'s fixed probes.
    * ``chunk_size``: rows per likelihood solve (``None``: the whole batch; see
      :func:`flowzoo.integrate.ode_log_prob`).
    """

    log_prob: str = "exact"
    log_prob_estimate: str = "exact"
    num_probes: int = 1
    probe: str = "rademacher"
    probe_seed: int = 0
    chunk_size: int | None = None

    def check(self) -> DivergenceConfig:
        """Validate eagerly (raises ``ValueError`` naming the field); returns ``self``."""
        check_divergence(self.log_prob, self.probe, self.num_probes)
        check_divergence(self.log_prob_estimate, self.probe, self.num_probes)
        c = self.chunk_size
        if c is not None and (isinstance(c, bool) or int(c) != c or c < 1):
            raise ValueError(f"chunk_size must be a positive int or None, got {c!r}")
        return self


def divergence_exact(f: Callable[[Batch], Batch], x: Batch) -> tuple[Batch, Float[Array, " batch"]]:
    """``(f(x), tr(df/dx))`` per row, exactly, with one ``jvp`` per event dimension.

    ``x``: ``(batch, *event)``; cost ``D = prod(event)`` forward passes (vmapped), so meant
    for low-dimensional events. Returns ``f(x)`` (from the primal pass) and the trace
    ``(batch,)``.
    """
    n, event = x.shape[0], x.shape[1:]
    d = int(np.prod(event)) if event else 1
    basis = jnp.eye(d, dtype=x.dtype).reshape(d, 1, *event)

    def column(e):
        out, tangent = jax.jvp(f, (x,), (jnp.broadcast_to(e, x.shape),))
        return out, tangent.reshape(n, d)

    outs, cols = jax.vmap(column)(basis)  # cols: (d, batch, d); cols[i, :, i] = J_ii
    return outs[0], jnp.einsum("ibi->b", cols)


def sample_probes(
    key: Key, num_probes: int, shape: tuple[int, ...], dtype=jnp.float32, probe: str = "rademacher"
) -> Array:
    """``num_probes`` Hutchinson probes of ``shape`` with ``E[v v^T] = I``: ``(K, *shape)``.

    ``probe``: ``"rademacher"`` (+-1, the default: lowest variance) or ``"gaussian"``.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {list(PROBES)}")
    if int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
    full = (int(num_probes), *tuple(shape))
    if probe == "rademacher":
        return jax.random.rademacher(key, full, dtype)
    return jax.random.normal(key, full, dtype)


def divergence_hutchinson(
    f: Callable[[Batch], Batch], x: Batch, probes: Float[Array, "probes batch *event"]
) -> tuple[Batch, Float[Array, "probes batch"]]:
    """``(f(x), v_k^T (df/dx) v_k)`` for every probe ``v_k``: one primal pass, K tangents.

    ``probes``: ``(K, batch, *event)`` with ``E[v v^T] = I`` (:func:`sample_probes`). Each
    row of the result is an unbiased estimate of the trace. Per example the variance of one
    estimate is ``sum_{i != j} (J_ij^2 + J_ij J_ji)`` for Rademacher probes and
    ``sum_{i, j} (J_ij^2 + J_ij J_ji)`` for Gaussian ones (Hutchinson 1990). Only the
    tangents are vmapped, so the primal pass is shared.
    """
    n = x.shape[0]

    def one(v):
        out, jv = jax.jvp(f, (x,), (v,))
        return out, jnp.sum((v * jv).reshape(n, -1), axis=-1)

    outs, traces = jax.vmap(one)(probes)
    return outs[0], traces
