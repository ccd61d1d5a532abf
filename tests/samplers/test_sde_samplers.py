"""Reverse SDE, predictor-corrector and probability-flow ODE with the exact Gaussian score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from flowzoo.integrate import DivergenceConfig, ode_log_prob
from flowzoo.metrics import bits_per_dim
from flowzoo.paths import bcast, probability_flow, subvp_sde, ve_sde, vp_sde
from flowzoo.samplers import pc_sample, pf_ode_sample, reverse_sde_sample
from flowzoo.score import pf_ode_distribution

MU, STD = jnp.array([1.0, -0.5]), jnp.array([0.5, 1.5])  # data: N(MU, diag(STD^2))


def _exact_score(sde):
    def moments(t, x):
        m, s = sde.marginal(jnp.ones_like(x), t)  # VP/sub-VP: m = mean coefficient
        var = m**2 * STD[None] ** 2 + bcast(s**2, x)
        return m * MU[None], var

    def score(t, x):
        mean, var = moments(t, x)
        return -(x - mean) / var

    return score, moments


def _msd(moments):
    mean, var = moments
    return mean, jnp.sqrt(var)


SDES = {"vp": vp_sde(), "subvp": subvp_sde(), "ve": ve_sde(0.01, 20.0)}


def _check_gaussian(x, tol_mean=0.05, tol_std=0.05):
    np.testing.assert_allclose(jnp.mean(x, 0), MU, atol=tol_mean)
    np.testing.assert_allclose(jnp.std(x, 0), STD, rtol=tol_std)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_reverse_sde_recovers_gaussian(key, name):
    sde = SDES[name]
    score, _ = _exact_score(sde)
    x = jax.jit(lambda k: reverse_sde_sample(sde, score, k, (4096, 2), 500))(key)
    _check_gaussian(x)


def test_predictor_corrector_recovers_gaussian(key):
    sde = SDES["vp"]
    score, _ = _exact_score(sde)
    x = jax.jit(lambda k: pc_sample(sde, score, k, (4096, 2), 200, snr=0.1))(key)
    _check_gaussian(x)


def test_pf_ode_sample_recovers_gaussian(key):
    sde = SDES["vp"]
    score, _ = _exact_score(sde)
    x = jax.jit(lambda k: pf_ode_sample(sde, score, k, (4096, 2)).samples)(key)
    _check_gaussian(x)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_pf_ode_log_likelihood_equals_gaussian_density(key, name):
    sde = SDES[name]
    score, moments = _exact_score(sde)
    x = MU[None] + STD[None] * jax.random.normal(key, (64, 2))
    eps = 1e-5
    field = probability_flow(sde, score)
    kw = dict(t_data=eps, t_base=sde.T, base_log_prob=sde.prior_log_prob)
    out = jax.jit(lambda y: ode_log_prob(field, y, **kw))(x)
    # the score model's Distribution (probability-flow ODE) computes the same thing
    dist = pf_ode_distribution(sde, lambda params, t, y: score(t, y), (2,), t_min=eps)
    np.testing.assert_allclose(jax.jit(dist.log_prob)((), x), out.log_prob, atol=1e-5)
    logpdf = lambda t, y: jnp.sum(norm.logpdf(y, *_msd(moments(jnp.asarray(t), y))), 1)
    expected = logpdf(eps, x)
    # change of variables is exact with the true p_T; the N(0, I) prior differs from p_T by
    # the un-forgotten data mean (VP: exp(-5) * MU), a few 1e-2 nats
    exact_T = out.log_prob - sde.prior_log_prob(out.base_point) + logpdf(sde.T, out.base_point)
    np.testing.assert_allclose(exact_T, expected, atol=2e-3)
    np.testing.assert_allclose(out.log_prob, expected, atol=0.05)
    assert int(out.nfe) > 0
    if name != "vp":
        return
    # the Hutchinson estimate is unbiased: its mean over probes is close
    hdist = pf_ode_distribution(
        sde,
        lambda params, t, y: score(t, y),
        (2,),
        t_min=eps,
        divergence=DivergenceConfig(log_prob_estimate="hutchinson"),
    )
    hutch = jax.jit(lambda y, k: hdist.log_prob_estimate((), k, y))
    est = jnp.mean(jnp.stack([hutch(x, jax.random.key(i)) for i in range(4)]), 0)
    assert abs(float(jnp.mean(est - expected))) < 0.1
    bpd = bits_per_dim(out.log_prob, (2,))
    np.testing.assert_allclose(bpd, -out.log_prob / (2 * np.log(2)), rtol=1e-6)
    np.testing.assert_allclose(bits_per_dim(out.log_prob, (2,), 256), bpd + 8.0, rtol=1e-6)
