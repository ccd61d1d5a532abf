"""Exact minimum-cost assignment (minibatch optimal transport between equal-size batches)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Float, Shaped


def _pot_assignment(cost: np.ndarray) -> np.ndarray | None:
    """POT's network simplex (``ot.emd``) on uniform weights: its optimum is a vertex of the
    Birkhoff polytope, a permutation. ``None`` if POT is missing or did not return one."""
    try:
        import ot
    except ImportError:
        return None
    n = cost.shape[0]
    w = np.full(n, 1.0 / n)
    plan = ot.emd(w, w, cost, numItermax=max(100_000, 20 * n * n))
    cols = np.argmax(plan, axis=1)
    if not (np.allclose(plan[np.arange(n), cols], 1.0 / n) and np.unique(cols).size == n):
        return None
    return cols


def _host_assignment(cost: np.ndarray) -> np.ndarray:
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim == 3:  # vmapped with vmap_method="expand_dims" / "broadcast_all"
        return np.stack([_host_assignment(c) for c in cost])
    cols = _pot_assignment(cost)
    if cols is None:
        from scipy.optimize import linear_sum_assignment

        _, cols = linear_sum_assignment(cost)
    return np.asarray(cols, np.int32)


def exact_assignment(cost: Float[Array, "n n"]) -> Shaped[Array, " n"]:
    """The permutation ``perm`` minimising ``sum_i cost[i, perm[i]]``.

    Solved exactly on the host through ``jax.pure_callback``, so it can be called inside
    ``jit`` (and ``vmap``: batched calls loop on the host): by POT's network simplex
    (``ot.emd`` with uniform weights, whose optimum is a permutation), falling back to
    ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant) if POT is missing or returns
    anything else. Measured on 2 CPU cores, 2-D points: POT 4.3 ms vs scipy 9.5 ms at n=256,
    96 ms vs 485 ms at n=1024, the same optimal cost. No gradient flows through it.
    """
    n, m = cost.shape
    if n != m:
        raise ValueError(f"exact assignment needs a square cost matrix, got {cost.shape}")
    cost = jax.lax.stop_gradient(cost)
    return jax.pure_callback(
        _host_assignment,
        jax.ShapeDtypeStruct((n,), jnp.int32),
        cost,
        vmap_method="sequential",
    )
