"""Kernel Stein discrepancy and effective sample size (flowzoo._metrics_mcmc)."""

import jax
import jax.numpy as jnp
import numpy as np

from flowzoo.metrics import effective_sample_size, kernel_stein_discrepancy


def test_ksd_near_zero_for_exact_samples_and_grows_with_bias(key):
    score = lambda x: -x  # N(0, I) in 2-D
    z = jax.random.normal(key, (2000, 2))
    exact = float(kernel_stein_discrepancy(z, score))
    vals = [float(kernel_stein_discrepancy(z * (1 + b) + 0.5 * b, score)) for b in (0.1, 0.3, 0.6)]
    assert abs(exact) < 2e-3
    assert exact < vals[0] < vals[1] < vals[2]
    assert vals[0] > 5 * abs(exact)
    # score given as an array, and the V-statistic is the U-statistic plus a positive diagonal
    np.testing.assert_allclose(kernel_stein_discrepancy(z, -z), exact, rtol=1e-5)
    assert float(kernel_stein_discrepancy(z, score, unbiased=False)) > exact


def test_ksd_matches_direct_double_sum(key):
    x = jax.random.normal(key, (7, 3))
    s = -x + 0.3
    beta, c = -0.5, 1.0

    def k(a, b):
        return (c**2 + jnp.sum((a - b) ** 2)) ** beta

    def u(a, b, sa, sb):
        gx = jax.grad(k, 0)(a, b)
        gy = jax.grad(k, 1)(a, b)
        tr = jnp.trace(jax.jacfwd(jax.grad(k, 0), 1)(a, b))
        return sa @ sb * k(a, b) + sa @ gy + sb @ gx + tr

    mat = jax.vmap(lambda a, sa: jax.vmap(lambda b, sb: u(a, b, sa, sb))(x, s))(x, s)
    direct = (jnp.sum(mat) - jnp.trace(mat)) / (7 * 6)
    np.testing.assert_allclose(kernel_stein_discrepancy(x, s), direct, rtol=1e-4)


def test_ess_iid_and_ar1(key):
    n, m = 2000, 8
    iid = jax.random.normal(key, (n, m, 2))
    ess = effective_sample_size(iid)
    assert ess.shape == (2,)
    assert np.all(np.abs(np.asarray(ess) / (n * m) - 1) < 0.15)
    rho = 0.9
    eps = jax.random.normal(jax.random.fold_in(key, 1), (n, m))
    x = jax.lax.scan(lambda c, e: (rho * c + np.sqrt(1 - rho**2) * e,) * 2, eps[0], eps)[1]
    expected = n * m * (1 - rho) / (1 + rho)
    assert abs(float(effective_sample_size(x)) / expected - 1) < 0.25
