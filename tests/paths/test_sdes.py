"""VE / VP / sub-VP SDEs: marginals against their ODEs and simulation; priors; energies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from flowzoo.integrate import solve_sde
from flowzoo.paths import probability_flow, subvp_sde, ve_sde, vp_sde
from flowzoo.score import score_from_energy

SDES = {"ve": ve_sde(0.01, 10.0), "vp": vp_sde(), "subvp": subvp_sde()}


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_moments_solve_their_odes(name):
    """For a linear SDE dx = a(t) x dt + g dW: mean' = a mean and var' = 2 a var + g^2."""
    sde = SDES[name]
    x0 = jnp.array([[1.5, -0.5]])
    for t in (0.1, 0.4, 0.9):
        t = jnp.asarray(t)
        (mean, std), (dmean, dstd) = jax.jvp(lambda s: sde.marginal(x0, s), (t,), (1.0,))
        a = sde.drift(t, jnp.ones((1, 1)))[0, 0]  # drift is a(t) * x
        np.testing.assert_allclose(dmean, a * mean, rtol=1e-4, atol=1e-6)
        g2 = sde.diffusion(t) ** 2
        np.testing.assert_allclose(2 * std * dstd, 2 * a * std**2 + g2, rtol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_marginal_matches_simulation(key, name):
    sde = SDES[name]
    x0 = jnp.full((8192, 1), 2.0)
    t1 = 0.5
    sol = solve_sde(sde.drift, lambda t, x: sde.diffusion(t), key, x0, 0.0, t1, 500)
    mean, std = sde.marginal(x0[:1], jnp.asarray(t1))
    np.testing.assert_allclose(jnp.mean(sol.y1), mean[0, 0], atol=0.02)
    np.testing.assert_allclose(jnp.std(sol.y1), std, rtol=0.03)


@pytest.mark.parametrize("name", list(SDES))
def test_prior(key, name):
    sde = SDES[name]
    x = sde.prior_sample(key, (4096, 2))
    prior_std = 10.0 if name == "ve" else 1.0
    np.testing.assert_allclose(jnp.std(x), prior_std, rtol=0.05)
    expected = jnp.sum(norm.logpdf(x, scale=prior_std), 1)
    np.testing.assert_allclose(sde.prior_log_prob(x), expected, rtol=1e-5)
    _, std_T = sde.marginal(x, jnp.asarray(sde.T))
    np.testing.assert_allclose(std_T, prior_std, rtol=1e-3)


def test_score_from_energy_and_pf_field():
    energy = lambda params, x: 0.5 * params * jnp.sum(x**2, 1)
    x = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(score_from_energy(energy)(2.0, x), -2.0 * x)
    sde = SDES["vp"]
    vf = probability_flow(sde, lambda t, y: -y)
    t = jnp.asarray(0.3)
    np.testing.assert_allclose(
        vf(t, x), sde.drift(t, x) + 0.5 * sde.diffusion(t) ** 2 * x, rtol=1e-6
    )
