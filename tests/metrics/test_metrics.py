"""Sample-quality metrics against closed forms (tolerances from Monte-Carlo error)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

from flowzoo import metrics


def _e_abs_normal(m, s):
    """E|N(m, s^2)| in closed form."""
    return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s * s)) + m * (
        1 - 2 * norm.cdf(-m / s)
    )


def test_energy_distance_matches_closed_form_for_shifted_gaussians(key):
    k1, k2 = jax.random.split(key)
    mu = 0.7
    x = jax.random.normal(k1, (3000, 1))
    y = jax.random.normal(k2, (3000, 1)) + mu
    ref = 2 * _e_abs_normal(mu, math.sqrt(2)) - 2 * _e_abs_normal(0.0, math.sqrt(2))
    assert abs(float(metrics.energy_distance(x, y)) - ref) < 0.03, ref


def test_mmd_and_energy_distance_near_zero_for_equal_distributions(key):
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.normal(k1, (1500, 3))
    y = jax.random.normal(k2, (1500, 3))
    z = jax.random.normal(k3, (1500, 3)) * 1.3
    assert abs(float(metrics.mmd(x, y))) < 5e-3
    assert abs(float(metrics.energy_distance(x, y))) < 1e-2
    assert float(metrics.mmd(x, z)) > 10 * abs(float(metrics.mmd(x, y)))
    assert float(metrics.energy_distance(x, z)) > 0.02


def test_sliced_wasserstein_of_a_shift(key):
    """Projecting a shift mu on a uniform direction: SW2^2 = |mu|^2 / d. Sorting commutes
    with the shift, so the sample size does not matter; the 4000 directions set the error."""
    k1, k2 = jax.random.split(key)
    d = 4
    x = jax.random.normal(k1, (200, d))
    mu = jnp.array([1.0, -2.0, 0.5, 0.0])
    sw = metrics.sliced_wasserstein(k2, x, x + mu[None], num_projections=4000)
    np.testing.assert_allclose(float(sw), float(jnp.linalg.norm(mu)) / math.sqrt(d), rtol=0.05)


def test_metrics_flatten_images(key):
    x = jax.random.normal(key, (50, 2, 2, 1))
    assert float(metrics.energy_distance(x, x.reshape(50, 4))) < 1e-3
