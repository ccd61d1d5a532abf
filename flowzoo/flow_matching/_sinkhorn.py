"""Entropic optimal transport between two uniform point clouds: log-domain Sinkhorn in JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._types import Array, Float


def sinkhorn_log_plan(
    cost: Float[Array, "n m"], epsilon: float = 0.05, num_iters: int = 200, relative: bool = True
) -> Float[Array, "n m"]:
    """Log of the entropic OT plan between uniform marginals ``1/n`` and ``1/m``.

    Minimises ``<P, C> - eps H(P)`` by alternating exact updates of the dual potentials in log
    space (stable for small ``eps``). Runs on device, ``num_iters`` fixed (``lax.fori_loop``),
    so it jit-compiles and vmaps. Entries of ``cost`` may be ``inf`` (forbidden pairs) as long as
    every row and column has a finite one.

    Args:
      cost: ``(n, m)`` cost matrix (e.g. squared Euclidean distances).
      epsilon: entropic regularisation; with ``relative=True`` (default) it is multiplied by
        the mean of the finite costs, so it is scale free.
      num_iters: number of Sinkhorn iterations (each updates both potentials).

    Returns:
      ``log P`` of shape ``(n, m)``; ``P`` sums to 1, rows to ``1/n``, columns to ``1/m``
      (rows exactly after the last update, columns to the solver's tolerance).
    """
    cost = jax.lax.stop_gradient(cost)
    n, m = cost.shape
    eps = jnp.asarray(epsilon, cost.dtype)
    if relative:
        finite = jnp.isfinite(cost)
        eps = eps * jnp.sum(jnp.where(finite, cost, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
        eps = jnp.maximum(eps, 1e-12)
    log_a = -jnp.log(float(n))
    log_b = -jnp.log(float(m))
    k = -cost / eps

    def body(_, fg):
        f, g = fg
        g = log_b - jax.nn.logsumexp(k + f[:, None], axis=0)
        f = log_a - jax.nn.logsumexp(k + g[None, :], axis=1)
        return f, g

    f0 = jnp.zeros((n,), cost.dtype)
    g0 = jnp.zeros((m,), cost.dtype)
    f, g = jax.lax.fori_loop(0, int(num_iters), body, (f0, g0))
    return k + f[:, None] + g[None, :]
