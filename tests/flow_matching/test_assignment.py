"""Exact assignment: every host solver is optimal, the solver order, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from flowzoo import flow_matching as fm
from flowzoo.flow_matching import _assignment


def _sq_cost(rng, n, d):
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.5
    return np.sum((a[:, None] - b[None]) ** 2, -1)


@pytest.mark.parametrize("solver", ["pot", "lapjv", "scipy"])
def test_each_solver_returns_an_optimal_permutation(solver):
    if solver == "lapjv":
        pytest.importorskip("lapjv")
    rng = np.random.default_rng(1)
    for n, d in ((7, 2), (200, 2), (200, 32)):
        cost = _sq_cost(rng, n, d)
        perm = _assignment._BY_NAME[solver](cost)  # the solver itself, no fallback
        assert perm is not None and sorted(perm.tolist()) == list(range(n))
        rows, cols = linear_sum_assignment(cost)
        np.testing.assert_allclose(cost[np.arange(n), perm].sum(), cost[rows, cols].sum(), 1e-9)
        # and through the public host entry point and the jax.pure_callback one
        best = cost[rows, cols].sum()
        host = fm.host_assignment(cost, solver)
        dev = np.asarray(jax.jit(lambda c, s=solver: fm.exact_assignment(c, s))(cost))
        assert host.dtype == np.int32
        np.testing.assert_allclose(cost[np.arange(n), host].sum(), best, rtol=1e-9)
        np.testing.assert_allclose(cost[np.arange(n), dev].sum(), best, rtol=1e-5)


def test_auto_order_follows_the_event_size_and_scipy_always_answers(monkeypatch):
    assert fm.solver_order("auto", 2) == ("pot", "scipy")
    assert fm.solver_order("auto", None) == ("pot", "scipy")
    assert fm.solver_order("auto", _assignment.HIGH_DIM) == ("lapjv", "scipy")
    assert fm.solver_order("scipy") == ("scipy",)
    with pytest.raises(ValueError, match="solver must be one of"):
        fm.solver_order("hungarian")
    with pytest.raises(ValueError, match="solver must be one of"):
        fm.exact_ot_coupling("hungarian")
    # neither POT nor lapjv available: scipy's answer, still optimal
    monkeypatch.setitem(_assignment._BY_NAME, "pot", lambda c: None)
    monkeypatch.setitem(_assignment._BY_NAME, "lapjv", lambda c: None)
    cost = _sq_cost(np.random.default_rng(2), 50, 20)
    rows, cols = linear_sum_assignment(cost)
    for size in (2, 20):
        perm = fm.host_assignment(cost, event_size=size)
        np.testing.assert_allclose(cost[np.arange(50), perm].sum(), cost[rows, cols].sum())


def test_bad_costs_raise_on_the_host_and_nan_gives_identity_in_jax():
    with pytest.raises(ValueError, match="square cost matrix"):
        fm.host_assignment(np.ones((3, 4)))
    with pytest.raises(ValueError, match="square cost matrix"):
        fm.exact_assignment(jnp.ones((3, 4)))
    cost = np.ones((4, 4))
    cost[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        fm.host_assignment(cost)
    # inside a step the loss reports NaN data (fit names the step), not the callback
    np.testing.assert_array_equal(fm.exact_assignment(jnp.asarray(cost)), np.arange(4))
