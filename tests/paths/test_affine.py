"""Paths: endpoints, velocity == d/dt sample_xt, converters, Gaussian closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import flow_matching as fm
from flowzoo import paths

PATHS = {
    "cond_ot": paths.cond_ot_path(0.0),
    "cond_ot_smin": paths.cond_ot_path(0.05),
    "vp": paths.vp_path(),
    "ve": paths.ve_path(0.01, 5.0),
    "cosine": paths.cosine_path(),
    "poly2": paths.polynomial_path(2.0),
    "poly1.5": paths.polynomial_path(1.5),
}
# (alpha_0, sigma_0, alpha_1, sigma_1) and the endpoint tolerance
ENDPOINTS = {
    "cond_ot": ((0, 1, 1, 0), 1e-7),
    "cond_ot_smin": ((0, 1, 1, 0.05), 1e-7),
    "vp": ((0, 1, 1, 0), 7e-3),  # alpha_0 = exp(-T(1)/2) = 0.0066
    "ve": ((1, 5.0, 1, 0.01), 1e-5),
    "cosine": ((0, 1, 1, 0), 1e-7),
    "poly2": ((0, 1, 1, 0), 1e-7),
    "poly1.5": ((0, 1, 1, 0), 1e-7),
}


@pytest.mark.parametrize("name", PATHS)
def test_endpoints(name, key):
    path = PATHS[name]
    (a0, s0, a1, s1), tol = ENDPOINTS[name]
    np.testing.assert_allclose(path.schedule(jnp.zeros(())), (a0, s0), atol=tol)
    np.testing.assert_allclose(path.schedule(jnp.ones(())), (a1, s1), atol=tol)
    k0, k1 = jax.random.split(key)
    x0, x1 = jax.random.normal(k0, (4, 3, 2)), jax.random.normal(k1, (4, 3, 2))
    xt = path.sample_xt(x0, x1, jnp.ones(4))
    np.testing.assert_allclose(xt, a1 * x1 + s1 * x0, atol=tol * 10, rtol=1e-5)


@pytest.mark.parametrize("name", PATHS)
def test_velocity_is_time_derivative(name, key):
    path = PATHS[name]
    k0, k1, kt = jax.random.split(key, 3)
    x0, x1 = jax.random.normal(k0, (6, 3)), jax.random.normal(k1, (6, 3))
    t = jax.random.uniform(kt, (6,), minval=0.02, maxval=0.98)
    _, dxt = jax.jvp(lambda s: path.sample_xt(x0, x1, s), (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(path.velocity(x0, x1, t), dxt, rtol=1e-4, atol=1e-4)
    # schedule_dt is the derivative of the schedule, elementwise
    _, (da, ds) = jax.jvp(path.schedule, (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(path.schedule_dt(t), (da, ds), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["cond_ot_smin", "vp", "cosine", "poly2"])
def test_converters_round_trip(name, key):
    path = PATHS[name]
    k0, k1, kt = jax.random.split(key, 3)
    x0, x1 = jax.random.normal(k0, (5, 2, 2)), jax.random.normal(k1, (5, 2, 2))
    t = jax.random.uniform(kt, (5,), minval=0.1, maxval=0.9)
    x, u = path.sample_xt(x0, x1, t), path.velocity(x0, x1, t)
    tol = {"rtol": 1e-4, "atol": 1e-4}
    np.testing.assert_allclose(paths.x1_from_velocity(path, t, x, u), x1, **tol)
    np.testing.assert_allclose(paths.eps_from_velocity(path, t, x, u), x0, **tol)
    np.testing.assert_allclose(paths.velocity_from_x1(path, t, x, x1), u, **tol)
    np.testing.assert_allclose(paths.velocity_from_eps(path, t, x, x0), u, **tol)
    np.testing.assert_allclose(paths.x1_from_eps(path, t, x, x0), x1, **tol)
    np.testing.assert_allclose(paths.eps_from_x1(path, t, x, x1), x0, **tol)


def test_scalar_time_and_bad_shape(key):
    path = paths.cond_ot_path()
    x0, x1 = jnp.zeros((3, 2)), jnp.ones((3, 2))
    np.testing.assert_allclose(path.sample_xt(x0, x1, 0.25), 0.25)
    with pytest.raises(ValueError, match="shape"):
        path.sample_xt(x0, x1, jnp.ones(4))
    with pytest.raises(ValueError, match="unknown path"):
        paths.get_path("nope")


def gaussian_marginal(path, mu, s, t, x):
    """Closed form for data N(mu, s^2 I): x_t ~ N(alpha mu, (sigma^2 + alpha^2 s^2) I) and
    u_t(x) = alpha' mu + (sigma sigma' + alpha alpha' s^2) / var_t (x - alpha mu)."""
    alpha, sigma = path.schedule(t)
    da, ds = path.schedule_dt(t)
    var = sigma**2 + alpha**2 * s**2
    return alpha * mu, var, da * mu + (sigma * ds + alpha * da * s**2) / var * (x - alpha * mu)


@pytest.mark.parametrize("name", ["cond_ot_smin", "cosine", "vp"])
def test_gaussian_marginal_moments_and_velocity(name, key):
    path = PATHS[name]
    mu, s, t = jnp.array([[1.5, -0.5]]), 0.5, 0.6
    k0, k1, kd = jax.random.split(key, 3)
    n = 40_000
    x0 = jax.random.normal(k0, (n, 2))
    x1 = mu + s * jax.random.normal(k1, (n, 2))
    xt = path.sample_xt(x0, x1, jnp.full((n,), t))
    mean, var, _ = gaussian_marginal(path, mu, s, jnp.float32(t), xt)
    np.testing.assert_allclose(xt.mean(0), mean[0], atol=4 * np.sqrt(var / n))
    np.testing.assert_allclose(xt.var(0), jnp.full(2, var), rtol=4 * np.sqrt(2 / n))
    # the oracle on many Gaussian samples approaches the closed-form marginal field
    data = mu + s * jax.random.normal(kd, (20_000, 2))
    x = mean + jnp.sqrt(var) * jnp.array([[0.0, 0.0], [1.0, -1.0], [-0.5, 1.5]])
    _, _, u_exact = gaussian_marginal(path, mu, s, jnp.float32(t), x)
    u_oracle = fm.marginal_velocity(path, data)(t, x)
    np.testing.assert_allclose(u_oracle, u_exact, atol=0.05)
