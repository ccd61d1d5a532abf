"""Exact minimum-cost assignment (minibatch optimal transport between equal-size batches)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Float, Shaped


def _scipy_assignment(cost: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim == 3:  # vmapped with vmap_method="expand_dims" / "broadcast_all"
        return np.stack([_scipy_assignment(c) for c in cost])
    _, cols = linear_sum_assignment(cost)
    return cols.astype(np.int32)


def exact_assignment(cost: Float[Array, "n n"]) -> Shaped[Array, " n"]:
    """The permutation ``perm`` minimising ``sum_i cost[i, perm[i]]``.

    Solved exactly on the host with ``scipy.optimize.linear_sum_assignment`` (the
    Jonker-Volgenant algorithm, O(n^3)) through ``jax.pure_callback``, so it can be called
    inside ``jit`` (and ``vmap``: batched calls loop on the host). The cost is moved to the
    host each call: for batch sizes in the hundreds this costs less than a millisecond.
    No gradient flows through the assignment.
    """
    n, m = cost.shape
    if n != m:
        raise ValueError(f"exact assignment needs a square cost matrix, got {cost.shape}")
    cost = jax.lax.stop_gradient(cost)
    return jax.pure_callback(
        _scipy_assignment,
        jax.ShapeDtypeStruct((n,), jnp.int32),
        cost,
        vmap_method="sequential",
    )
