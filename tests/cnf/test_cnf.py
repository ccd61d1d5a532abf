"""CNF likelihoods against closed forms, Hutchinson unbiasedness, normalisation, training.

Convention: t=0 noise N(0, I), t=1 data. For the linear field x' = A x the flow map is
x1 = expm(A) x0, so p1 = N(0, M M^T) with M = expm(A) and the log-det term is -tr(A).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.linalg import expm

from flowzoo.cnf import cnf
from flowzoo.data import array_batches
from flowzoo.distributions import standard_normal_log_prob
from flowzoo.integrate import (
    DivergenceConfig,
    SolverConfig,
    divergence_exact,
    divergence_hutchinson,
    ode_log_prob,
    sample_probes,
)
from flowzoo.samplers import flow_ode_sample
from flowzoo.train import fit
from flowzoo.zoo import build_model

A = jnp.array([[-0.5, 0.8, 0.0], [0.1, 0.3, -0.2], [0.0, 0.4, -0.6]])


def linear_cnf(**kw):
    def apply(params, t, x, context=None):
        return x @ (params * A).T

    return cnf(apply, 3, vector_field_init=lambda key, t, x, c=None: jnp.ones(()), **kw)


def smooth_field(dim, hidden=16):
    """A small time-dependent tanh MLP ``v(t, x)`` (smooth in t, unlike 1000*t embeddings)."""

    def init(key, t, x, context=None):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "w1": jax.random.normal(k1, (dim + 1, hidden)) / np.sqrt(dim + 1),
            "b1": 0.5 * jax.random.normal(k2, (hidden,)),
            "w2": jax.random.normal(k3, (hidden, dim)) / np.sqrt(hidden),
        }

    def apply(params, t, x, context=None):
        tt = jnp.full((x.shape[0], 1), t, x.dtype)
        h = jnp.tanh(jnp.concatenate([x, tt], 1) @ params["w1"] + params["b1"][None])
        return h @ params["w2"]

    return init, apply


def gaussian_log_prob(x, cov):
    _, logdet = np.linalg.slogdet(cov)
    sol = np.linalg.solve(cov, x.T).T
    return -0.5 * np.sum(x * sol, 1) - 0.5 * logdet - 0.5 * x.shape[1] * np.log(2 * np.pi)


def test_linear_field_log_prob_matches_closed_form(key):
    model = linear_cnf()
    params = model.init(key, jnp.zeros((2, 3)))
    x = jax.random.normal(key, (6, 3))
    logp = jax.jit(model.log_prob)(params, x)  # compiled whole (eager compiles op by op)
    stats = jax.jit(
        lambda x: ode_log_prob(
            lambda t, y: y @ (params * A).T,
            x,
            t_data=1.0,
            t_base=0.0,
            base_log_prob=standard_normal_log_prob,
        )
    )(x)
    np.testing.assert_allclose(stats.log_prob, logp, atol=1e-6)  # the CNF calls this function
    m = np.asarray(expm(A), np.float64)
    np.testing.assert_allclose(
        logp, gaussian_log_prob(np.asarray(x, np.float64), m @ m.T), atol=1e-4
    )
    # the log-det part alone: log p(x) - log N(x0) = -t * tr(A) with t = 1
    x0 = np.asarray(x) @ np.linalg.inv(m).T
    base = -0.5 * np.sum(x0**2, 1) - 1.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(np.asarray(logp) - base, -np.trace(A), atol=1e-4)
    assert int(stats.nfe) == 3 + 6 * int(stats.num_steps)


@pytest.mark.slow
def test_divergence_config_is_the_hand_built_hutchinson_likelihood(key):
    """Every field of a DivergenceConfig reaches the one likelihood function: ``log_prob``
    (probes from ``probe_seed``) and ``log_prob_estimate`` (probes from its key) equal
    ``ode_log_prob`` called by hand with the same options, bit for bit."""
    init, apply = smooth_field(3)
    params = init(key, 0.0, jnp.zeros((1, 3)))
    div = DivergenceConfig("hutchinson", "hutchinson", 3, "gaussian", probe_seed=5, chunk_size=3)
    solver = SolverConfig("rk4", 4)
    model = cnf(apply, 3, log_prob_solver=solver, divergence=div, vector_field_init=init)
    x = jax.random.normal(jax.random.fold_in(key, 1), (7, 3))  # 7 = 3 + 3 + 1 (padded)

    def by_hand(probe_key):
        return ode_log_prob(
            lambda t, y: apply(params, t, y),
            x,
            t_data=1.0,
            t_base=0.0,
            base_log_prob=standard_normal_log_prob,
            divergence="hutchinson",
            key=probe_key,
            num_probes=3,
            probe="gaussian",
            chunk_size=3,
            **solver._asdict(),
        ).log_prob

    k = jax.random.fold_in(key, 2)
    np.testing.assert_array_equal(model.log_prob(params, x), by_hand(jax.random.key(5)))
    np.testing.assert_array_equal(model.log_prob_estimate(params, k, x), by_hand(k))
    assert not np.array_equal(model.log_prob(params, x), cnf(apply, 3).log_prob(params, x))


def test_divergence_config_is_checked():
    with pytest.raises(ValueError, match="num_probes"):
        DivergenceConfig(num_probes=0).check()
    with pytest.raises(ValueError, match="probe"):
        linear_cnf(divergence=DivergenceConfig(probe="uniform"))
    with pytest.raises(ValueError, match="chunk_size"):
        DivergenceConfig(chunk_size=0).check()
    with pytest.raises(TypeError, match="DivergenceConfig"):
        linear_cnf(divergence="hutchinson")


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_log_prob_unbiased_on_linear_field(key, probe):
    # l = int_0^1 v^T A v dt = v^T A v per probe; E = tr(A). Monte-Carlo tolerance: 4 SE.
    model = linear_cnf(
        divergence=DivergenceConfig(log_prob_estimate="hutchinson", probe=probe),
        log_prob_solver=SolverConfig("rk4", 4),
    )
    x = jax.random.normal(key, (2, 3))
    exact = jax.jit(model.log_prob)(1.0, x)
    keys = jax.random.split(jax.random.fold_in(key, 1), 512)
    est = jax.jit(jax.vmap(lambda k: model.log_prob_estimate(1.0, k, x)))(keys)
    se = np.std(est, axis=0) / np.sqrt(len(keys))
    assert np.all(np.std(est, axis=0) > 1e-3)  # really stochastic
    np.testing.assert_array_less(np.abs(np.mean(est, axis=0) - exact), 4 * se + 1e-4)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_divergence_unbiased_for_mlp_field(key, probe):
    init, apply = smooth_field(3)
    params = init(key, 0.0, None)
    x = jax.random.normal(jax.random.fold_in(key, 1), (4, 3))
    f = jax.jit(lambda u: apply(params, 0.3, u))
    out, exact = jax.jit(lambda x: divergence_exact(f, x))(x)
    np.testing.assert_allclose(out, f(x), atol=1e-6)
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda v: f(v[None])[0])))(x)
    np.testing.assert_allclose(exact, jnp.trace(jac, axis1=1, axis2=2), atol=1e-5)
    n = 4000
    probes = sample_probes(jax.random.fold_in(key, 2), n, x.shape, x.dtype, probe)
    # est: (n, batch), one row per probe
    out_h, est = jax.jit(lambda x, probes: divergence_hutchinson(f, x, probes))(x, probes)
    np.testing.assert_allclose(out_h, f(x), atol=1e-6)
    se = np.std(est, axis=0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(np.mean(est, axis=0) - exact), 4 * se + 1e-5)


@pytest.fixture(scope="module")
def small_2d_cnf():
    init, apply = smooth_field(2)
    model = cnf(apply, 2, vector_field_init=init)
    params = model.init(jax.random.key(3), jnp.zeros((4, 2)))
    return model, params


def test_2d_density_integrates_to_one(small_2d_cnf):
    model, params = small_2d_cnf
    g = np.linspace(-7.0, 7.0, 141)
    xx, yy = np.meshgrid(g, g)
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    logp = jax.jit(model.log_prob)(params, pts)
    mass = float(jnp.sum(jnp.exp(logp)) * (g[1] - g[0]) ** 2)
    assert abs(mass - 1.0) < 1e-2, mass


def model_field(params, t, x):
    return smooth_field(2)[1](params, t, x)


@pytest.mark.slow
def test_sample_and_log_prob_agrees_with_log_prob(small_2d_cnf, key):
    model, params = small_2d_cnf
    # each call compiled whole (eager dispatch compiles every small op on its own)
    sample = jax.jit(model.sample, static_argnums=2)
    x, logp = jax.jit(model.sample_and_log_prob, static_argnums=2)(params, key, 64)
    # different adaptive step sequences (the augmented state changes the error control)
    np.testing.assert_allclose(x, sample(params, key, 64), atol=1e-3)
    np.testing.assert_allclose(logp, jax.jit(model.log_prob)(params, x), atol=2e-3)
    out = jax.jit(lambda k: flow_ode_sample(lambda t, y: model_field(params, t, y), k, (8, 2)))(key)
    np.testing.assert_allclose(out.samples, sample(params, key, 8), atol=1e-5)
    assert out.samples.shape == (8, 2) and int(out.nfe) >= 3 + 6


@pytest.mark.slow
def test_ffjord_training_with_fit_decreases_nll(key):
    # the registered "ffjord" model: Hutchinson loss, fixed-step RK4 for a fast test
    cfg = {"model": {"name": "ffjord", "hidden": [32, 32], "solver": "rk4", "num_steps": 6}}
    model = build_model(cfg, (2,))
    data = jax.random.normal(key, (512, 2)) * jnp.array([[0.5, 0.2]]) + jnp.array([[1.0, -0.5]])
    params = model.init(key, data[:64])
    eval_nll = jax.jit(lambda p: -jnp.mean(model.distribution.log_prob(p, data)))
    before = float(eval_nll(params))
    result = fit(
        model.loss,
        optax.adam(2e-2),
        params,
        array_batches(data, 128),
        key=key,
        num_steps=30,
        steps_per_call=30,
        progress=False,
    )
    after = float(eval_nll(result.state.params))
    assert after < before - 0.3, (before, after)
    assert np.isfinite(result.history[-1]["nll"])
