"""Couplings: exact assignment optimality, Sinkhorn marginals, within-class pairing."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from flowzoo import flow_matching as fm


def test_exact_assignment_matches_brute_force(key):
    for i in range(3):
        k0, k1 = jax.random.split(jax.random.fold_in(key, i))
        x0, x1 = jax.random.normal(k0, (6, 2)), jax.random.normal(k1, (6, 2))
        i0, i1 = jax.jit(fm.exact_ot_coupling())(key, x0, x1)
        cost = np.asarray(fm.squared_distances(x0, x1))
        got = cost[np.asarray(i0), np.asarray(i1)].sum()
        best = min(cost[list(p), range(6)].sum() for p in itertools.permutations(range(6)))
        np.testing.assert_allclose(got, best, rtol=1e-6)
        assert sorted(np.asarray(i0).tolist()) == list(range(6))  # a permutation


def test_exact_ot_beats_identity_and_vmaps(key):
    k0, k1 = jax.random.split(key)
    x0, x1 = jax.random.normal(k0, (3, 128, 2)), jax.random.normal(k1, (3, 128, 2))
    i0, i1 = jax.vmap(fm.exact_ot_coupling(), in_axes=(None, 0, 0))(key, x0, x1)
    for b in range(3):
        ot = jnp.sum((x0[b][i0[b]] - x1[b][i1[b]]) ** 2)
        ident = jnp.sum((x0[b] - x1[b]) ** 2)
        assert float(ot) < 0.5 * float(ident)


def test_sinkhorn_plan_marginals_and_limit(key):
    k0, k1 = jax.random.split(key)
    x0, x1 = jax.random.normal(k0, (40, 2)), jax.random.normal(k1, (30, 2)) + 1.0
    cost = fm.squared_distances(x0, x1)
    plan = jnp.exp(jax.jit(fm.sinkhorn_log_plan, static_argnums=2)(cost, 0.05, 500))
    np.testing.assert_allclose(plan.sum(1), jnp.full(40, 1 / 40), rtol=1e-4)
    np.testing.assert_allclose(plan.sum(0), jnp.full(30, 1 / 30), rtol=1e-2)
    # small epsilon on a square problem: the plan's cost approaches the exact assignment's
    c = fm.squared_distances(x0[:30], x1)
    plan = jnp.exp(fm.sinkhorn_log_plan(c, 0.002, 2000))
    exact = c[jnp.arange(30), fm.exact_assignment(c)].mean()
    assert float(jnp.sum(plan * c)) < float(exact) * 1.05


def test_sinkhorn_coupling_samples_low_cost_pairs(key):
    k0, k1 = jax.random.split(key)
    x0, x1 = jax.random.normal(k0, (256, 2)), jax.random.normal(k1, (256, 2))
    i0, i1 = jax.jit(fm.sinkhorn_coupling(0.01))(key, x0, x1)
    assert i0.shape == i1.shape == (256,)
    cost = jnp.mean(jnp.sum((x0[i0] - x1[i1]) ** 2, -1))
    assert float(cost) < 0.5 * float(jnp.mean(jnp.sum((x0 - x1) ** 2, -1)))


def test_label_conditional_pairs_within_class(key):
    k0, k1, kl = jax.random.split(key, 3)
    x0, x1 = jax.random.normal(k0, (64, 2)), jax.random.normal(k1, (64, 2))
    labels = jax.random.randint(kl, (64,), 0, 3)
    # the noise labels each coupling draws (a permutation of the data labels) from its key
    cases = [(fm.exact_ot_coupling(), key), (fm.sinkhorn_coupling(0.05), jax.random.split(key)[0])]
    for coupling, label_key in cases:
        i0, i1 = jax.jit(coupling)(key, x0, x1, labels)
        noise_labels = jax.random.permutation(label_key, labels)
        np.testing.assert_array_equal(noise_labels[i0], labels[i1])


def test_exact_assignment_is_optimal_with_pot_and_with_the_scipy_fallback(monkeypatch):
    """POT's network simplex and scipy's Jonker-Volgenant give the same (optimal) cost; with
    POT reported missing the scipy path is used and agrees."""
    import itertools

    from scipy.optimize import linear_sum_assignment

    from flowzoo.flow_matching import _assignment

    rng = np.random.default_rng(0)
    for n in (5, 64, 300):
        cost = rng.random((n, n)) ** 2
        perm = np.asarray(_assignment.exact_assignment(jnp.asarray(cost)))
        rows, cols = linear_sum_assignment(cost)
        assert np.unique(perm).size == n
        np.testing.assert_allclose(
            cost[np.arange(n), perm].sum(), cost[rows, cols].sum(), rtol=1e-6
        )
        if n == 5:  # brute force over all 120 permutations
            best = min(cost[np.arange(5), list(p)].sum() for p in itertools.permutations(range(5)))
            np.testing.assert_allclose(cost[np.arange(5), perm].sum(), best, rtol=1e-6)
    monkeypatch.setattr(_assignment, "_pot_assignment", lambda c: None)
    cost = rng.random((40, 40))
    perm = np.asarray(_assignment.exact_assignment(jnp.asarray(cost)))
    rows, cols = linear_sum_assignment(cost)
    np.testing.assert_allclose(cost[np.arange(40), perm].sum(), cost[rows, cols].sum(), rtol=1e-6)
