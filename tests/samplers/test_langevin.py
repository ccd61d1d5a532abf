"""ULA bias, MALA unbiasedness, annealed Langevin on a Gaussian mixture, run_chain."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.samplers import annealed_langevin, denoise, mala, run_chain, ula, ula_sample

SIGMA, H, CHAINS = 1.0, 0.5, 4096
ULA_VAR = SIGMA**2 / (1.0 - H / (2.0 * SIGMA**2))  # = 4/3: the ULA bias to detect


def _gauss_score(x):
    return -x / SIGMA**2


def _var_from_chain(key, sampler):
    x0 = jax.random.normal(jax.random.fold_in(key, 1), (CHAINS, 1))
    res = jax.jit(lambda k: run_chain(sampler, k, x0, 200, thin=5))(key)
    kept = np.asarray(res.positions[10:], np.float64)  # drop 50 burn-in steps
    return kept.var(), res


def test_ula_has_the_known_stationary_bias(key):
    var, res = _var_from_chain(key, ula(_gauss_score, H))
    assert res.positions.shape == (40, CHAINS, 1)
    # ~120k draws, effective ~ CHAINS * 30: standard error of the variance ~ 0.01
    assert abs(var - ULA_VAR) < 0.04
    assert abs(var - SIGMA**2) > 0.25  # the bias is resolved, not just "close"


def test_ula_through_one_sde_solve_has_the_same_bias(key):
    x0 = jnp.zeros((4 * CHAINS, 1))
    x = jax.jit(lambda k: ula_sample(_gauss_score, k, x0, H, 60))(key)
    var = float(jnp.var(x))
    assert abs(var - ULA_VAR) < 0.06 and abs(var - SIGMA**2) > 0.2


def test_mala_is_unbiased(key):
    log_prob = lambda x: -0.5 * jnp.sum(x**2, 1) / SIGMA**2
    var, res = _var_from_chain(key, mala(log_prob, H))
    assert abs(var - SIGMA**2) < 0.04
    acc = float(jnp.mean(res.info.acceptance_rate))
    assert 0.5 < acc < 1.0
    assert res.info.is_accepted.shape == (40, CHAINS) and res.info.is_accepted.dtype == bool
    np.testing.assert_allclose(jnp.mean(res.info.is_accepted.astype(jnp.float32)), acc, atol=0.02)


W, MU, S = jnp.array([0.2, 0.8]), jnp.array([-4.0, 4.0]), 0.5


def _mixture_score(sigma, x):
    """Exact score of sum_k W_k N(MU_k, S^2 + sigma^2) (the noised mixture), x: (n, 1)."""
    var = S**2 + sigma**2
    logits = jnp.log(W)[None] - 0.5 * (x - MU[None]) ** 2 / var
    resp = jax.nn.softmax(logits, axis=1)
    return jnp.sum(resp * (MU[None] - x), 1, keepdims=True) / var


@pytest.mark.slow
def test_annealed_langevin_recovers_mixture_weights(key):
    sigmas = jnp.geomspace(20.0, 0.05, 12)
    sampler = annealed_langevin(_mixture_score, sigmas, 100, step_size=5e-4)
    x0 = jax.random.uniform(jax.random.fold_in(key, 1), (4096, 1), minval=-8, maxval=8)
    res = jax.jit(lambda k: run_chain(sampler, k, x0, 1200, thin=1200))(key)
    x = denoise(_mixture_score, 0.05, res.state.position)
    frac = float(jnp.mean(x > 0))
    assert abs(frac - 0.8) < 0.04
    np.testing.assert_allclose(jnp.std(x[x > 0]), S, rtol=0.1)
    np.testing.assert_allclose(res.info.sigma[-1], 0.05, rtol=1e-5)
    # plain Langevin at the smallest sigma from the same start cannot move mass between modes
    plain = annealed_langevin(_mixture_score, sigmas[-1:], 1200, step_size=5e-4)
    y = jax.jit(lambda k: run_chain(plain, k, x0, 1200, thin=1200))(key).state.position
    assert abs(float(jnp.mean(y > 0)) - 0.5) < 0.05
