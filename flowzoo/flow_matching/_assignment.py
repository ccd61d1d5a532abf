"""Exact minimum-cost assignment (minibatch optimal transport between equal-size batches).

Three host solvers, tried in an order that depends on the dimension of the points whose
squared distances make the cost (``event_size``), each falling back to the next when its
package is missing or it does not return a permutation:

* ``"pot"``: POT's network simplex (``ot.emd`` with uniform weights: its optimum is a vertex
  of the Birkhoff polytope, a permutation). A core dependency of flowzoo.
* ``"lapjv"``: ``lapjv.lapjv`` (PyPI ``lapjv``, Jonker-Volgenant; optional:
  ``pip install 'flowzoo[ot]'``).
* ``"scipy"``: ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant, Crouse's variant).

Low-dimensional costs have many near-ties, which the augmenting-path solvers handle badly
and the network simplex well, so ``"auto"`` puts POT first below :data:`HIGH_DIM`
dimensions and lapjv from there on (``benchmarks/assignment_solvers.py`` times the three
solvers by dimension and batch size; all three reach the same optimal total cost). POT,
lapjv and scipy release the GIL while they solve (``lap.lapjv`` holds it and is not
used).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Float, Shaped

HIGH_DIM = 16
"""From this event size on, ``solver="auto"`` tries lapjv before POT's network simplex."""

SOLVERS = ("auto", "pot", "lapjv", "scipy")
"""Values of the ``solver`` argument."""


def _is_permutation(cols: np.ndarray, n: int) -> bool:
    return cols.shape == (n,) and np.unique(cols).size == n and 0 <= cols.min() <= cols.max() < n


def _pot_assignment(cost: np.ndarray) -> np.ndarray | None:
    """POT's network simplex on uniform weights; ``None`` if POT is missing or did not
    return a permutation."""
    try:
        import ot
    except ImportError:
        return None
    n = cost.shape[0]
    w = np.full(n, 1.0 / n)
    plan = ot.emd(w, w, cost, numItermax=max(100_000, 20 * n * n))
    cols = np.argmax(plan, axis=1)
    if not (np.allclose(plan[np.arange(n), cols], 1.0 / n) and _is_permutation(cols, n)):
        return None
    return cols


def _lapjv_assignment(cost: np.ndarray) -> np.ndarray | None:
    """``lapjv.lapjv`` (row ``i`` -> column ``cols[i]``); ``None`` if it is not installed."""
    try:
        from lapjv import lapjv
    except ImportError:
        return None
    cols = np.asarray(lapjv(np.ascontiguousarray(cost))[0])
    return cols if _is_permutation(cols, cost.shape[0]) else None


def _scipy_assignment(cost: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(cost)[1]


_BY_NAME = {"pot": _pot_assignment, "lapjv": _lapjv_assignment, "scipy": _scipy_assignment}


def solver_order(solver: str = "auto", event_size: int | None = None) -> tuple[str, ...]:
    """The solvers :func:`host_assignment` tries, in order; the last always answers.

    ``"auto"``: POT then scipy for ``event_size < HIGH_DIM`` (or unknown), lapjv then scipy
    from ``HIGH_DIM`` on (scipy is faster than POT there, and lapjv much slower than both in
    low dimensions). A named solver is tried first, then scipy.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "auto":
        high = event_size is not None and event_size >= HIGH_DIM
        return ("lapjv", "scipy") if high else ("pot", "scipy")
    return tuple(dict.fromkeys((solver, "scipy")))


def host_assignment(
    cost: np.ndarray, solver: str = "auto", event_size: int | None = None
) -> np.ndarray:
    """NumPy version of :func:`exact_assignment`: ``int32`` permutation ``perm`` (or a stack
    of them for a ``(k, n, n)`` cost) minimising ``sum_i cost[i, perm[i]]``.

    Runs on the calling thread without the GIL held during the solve, so several can run in
    parallel in a thread pool (:func:`ot_paired_batches` does).

    Raises:
      ValueError: ``cost`` is not square (or a stack of square matrices) or not finite.
    """
    order = solver_order(solver, event_size)
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim == 3:  # vmapped with vmap_method="expand_dims" / "broadcast_all"
        return np.stack([host_assignment(c, solver, event_size) for c in cost])
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"exact assignment needs a square cost matrix, got {cost.shape}")
    if not np.all(np.isfinite(cost)):
        raise ValueError("exact assignment: the cost matrix holds NaN/inf values")
    for name in order:
        cols = _BY_NAME[name](cost)
        if cols is not None:
            return np.asarray(cols, np.int32)
    raise AssertionError("unreachable: scipy always answers")


def exact_assignment(
    cost: Float[Array, "n n"], solver: str = "auto", event_size: int | None = None
) -> Shaped[Array, " n"]:
    """The permutation ``perm`` minimising ``sum_i cost[i, perm[i]]``.

    Solved exactly on the host through ``jax.pure_callback``, so it can be called inside
    ``jit`` (and ``vmap``: batched calls loop on the host), by :func:`host_assignment`:
    POT's network simplex, ``lapjv`` or scipy's Jonker-Volgenant, in the order of
    :func:`solver_order` (``solver="auto"`` picks by ``event_size``, the dimension of the
    points whose squared distances ``cost`` holds; see the module docstring for the
    measurements). No gradient flows through it. A cost holding NaN/inf (NaN data) gives the
    identity permutation, so that the loss, not the callback, reports it (``fit`` then stops
    naming the step); :func:`host_assignment` raises instead.
    """
    n, m = cost.shape
    if n != m:
        raise ValueError(f"exact assignment needs a square cost matrix, got {cost.shape}")
    solver_order(solver)  # check the name while tracing

    def host(c):
        if not np.all(np.isfinite(c)):  # NaN data: the loss is NaN and fit stops, naming it
            return np.broadcast_to(np.arange(n, dtype=np.int32), c.shape[:-1]).copy()
        return host_assignment(c, solver, event_size)

    cost = jax.lax.stop_gradient(cost)
    return jax.pure_callback(
        host, jax.ShapeDtypeStruct((n,), jnp.int32), cost, vmap_method="sequential"
    )
