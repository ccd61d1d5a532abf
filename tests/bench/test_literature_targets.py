"""The sampling literature's targets (``mog40``, ``many_well32``, ``blr_diabetes``) and the
exact ``log_z`` of the targets, against independent computations.

Tolerances: sample moments within 5 standard errors (or a chi-square quantile at 1e-4);
``log Z`` by importance sampling within 5 of its delta-method standard errors (each below
0.03 nats, so the check has teeth); closed forms against scipy/numpy at float32 or float64
rounding as stated.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from flowzoo import bench

N = 20_000


def _moments_ok(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    """Per-coordinate sample mean within 5 standard errors, sample std within 5 of its
    standard errors (``std * sqrt((kurtosis - 1) / 4n)``, kurtosis from the sample)."""
    n = x.shape[0]
    assert np.all(np.abs(x.mean(0) - mean) < 5 * std / math.sqrt(n)), (x.mean(0), mean)
    kurt = np.mean((x - mean) ** 4, 0) / std**4
    se_std = std * np.sqrt((kurt - 1) / (4 * n))
    assert np.all(np.abs(x.std(0) - std) < 5 * se_std), (x.std(0), std)


def test_mog40_is_fabs_mixture_with_its_exact_moments():
    target = bench.TARGETS["mog40"]()
    mix = target.mixture
    means = np.asarray(mix.means)
    assert means.shape == (40, 2) and np.all(np.abs(means) <= 40.0)
    assert means.min() < -35 and means.max() > 35  # spread over the box, not a corner
    np.testing.assert_allclose(np.asarray(mix.weights), 1 / 40, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.asarray(mix.variances)), 1.3132616, rtol=1e-6)
    assert target.log_z == 0.0 and target.dim == 2
    # log_prob against an independent sum of scipy densities
    pts = np.random.default_rng(0).uniform(-45, 45, (64, 2))
    want = np.log(
        sum(stats.multivariate_normal(m, 1.3132616**2).pdf(pts) for m in means.astype(float)) / 40
    )
    np.testing.assert_allclose(target.log_prob(jnp.asarray(pts, jnp.float32)), want, atol=1e-3)
    # closed-form moments: mean of the means; variance of the means plus the component's
    mean = means.mean(0)
    std = np.sqrt(means.var(0) + 1.3132616**2)
    np.testing.assert_allclose(target.reference.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(target.reference.std, std, rtol=1e-5)
    _moments_ok(np.asarray(target.sample(jax.random.key(0), N), np.float64), mean, std)


def test_mog40_means_are_torchs_seed_0_draw():
    """The shipped means are fab-torch's draw (needs torch: skipped in CI)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    want = ((torch.rand((40, 2)) - 0.5) * 2 * 40).numpy()
    np.testing.assert_array_equal(np.asarray(bench.TARGETS["mog40"]().mixture.means), want)


def _double_well(x):
    return np.exp(0.5 * x + 6 * x**2 - x**4)


def test_many_well_log_z_and_log_prob_match_quadrature():
    z1, err = integrate.quad(_double_well, -np.inf, np.inf, epsabs=0, epsrel=1e-12)
    assert err < 1e-6 * z1
    target = bench.TARGETS["many_well32"]()
    want = 16 * (math.log(z1) + 0.5 * math.log(2 * math.pi))
    assert abs(target.log_z - want) < 1e-6, (target.log_z, want)  # FAB's 10-digit constant
    assert abs(target.log_z - 164.6957) < 1e-4
    # copy i on coordinates (2i, 2i+1): the double-well coordinate first
    x = np.random.default_rng(1).normal(0, 1.5, (8, 32))
    direct = np.sum(np.log(_double_well(x[:, 0::2])) - 0.5 * x[:, 1::2] ** 2, 1)
    np.testing.assert_allclose(target.log_prob(jnp.asarray(x, jnp.float32)), direct, rtol=1e-5)


def test_many_well_exact_samples_match_the_quadrature_distribution():
    target = bench.TARGETS["many_well32"]()
    z1 = integrate.quad(_double_well, -10, 10, epsrel=1e-12)[0]
    mean1 = integrate.quad(lambda x: x * _double_well(x), -10, 10, epsrel=1e-12)[0] / z1
    var1 = integrate.quad(lambda x: (x - mean1) ** 2 * _double_well(x), -10, 10)[0] / z1
    mean = np.tile([mean1, 0.0], 16)
    std = np.tile([math.sqrt(var1), 1.0], 16)
    np.testing.assert_allclose(target.reference.mean, mean, atol=1e-6)
    np.testing.assert_allclose(target.reference.std, std, atol=1e-6)
    x = np.asarray(target.sample(jax.random.key(0), 4000), np.float64)
    assert x.shape == (4000, 32)
    _moments_ok(x, mean, std)
    # the 64,000 double-well draws against the quadrature CDF (Kolmogorov-Smirnov)
    grid = np.linspace(-4, 4, 4001)
    pdf = _double_well(grid) / z1
    cdf = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(grid))])
    pooled = x[:, 0::2].ravel()
    assert stats.kstest(pooled, lambda v: np.interp(v, grid, cdf)).pvalue > 1e-3
    # the 16 copies are independent: no correlation between wells beyond sampling noise
    corr = np.corrcoef(x[:, 0::2].T)[np.triu_indices(16, 1)]
    assert np.abs(corr).max() < 5 / math.sqrt(4000)


def _diabetes():
    """The design, built independently: intercept plus standardised features; standardised y."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    x = np.column_stack([np.ones(len(y)), stats.zscore(x)])
    return x, stats.zscore(y)


def test_blr_posterior_and_log_z_match_independent_computations():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge

    target = bench.TARGETS["blr_diabetes"]()
    x, y = _diabetes()
    noise_var = 0.49  # noise std 0.7, prior N(0, I): the MAP is ridge with alpha = 0.49
    mean = Ridge(alpha=noise_var, fit_intercept=False).fit(x, y).coef_
    cov = np.linalg.inv(x.T @ x / noise_var + np.eye(11))
    np.testing.assert_allclose(target.reference.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(target.reference.std, np.sqrt(np.diag(cov)), rtol=1e-9)
    marginal = stats.multivariate_normal(np.zeros(442), noise_var * np.eye(442) + x @ x.T)
    assert abs(target.log_z - marginal.logpdf(y)) < 1e-6, (target.log_z, marginal.logpdf(y))
    # log_prob - log posterior = log Z at any w (float32 log_prob of about -500: 2e-3)
    w = np.random.default_rng(2).multivariate_normal(mean, 4 * cov, 16)
    post = stats.multivariate_normal(mean, cov).logpdf(w)
    lp = np.asarray(target.log_prob(jnp.asarray(w, jnp.float32)), np.float64)
    np.testing.assert_allclose(lp - post, target.log_z, atol=2e-3)
    np.testing.assert_allclose(target.step_size, 0.25 * np.linalg.eigvalsh(cov)[0], rtol=1e-9)
    # exact samples: the sample mean's Mahalanobis distance is chi-square(11)/N
    s = np.asarray(target.sample(jax.random.key(0), N), np.float64)
    d = s.mean(0) - mean
    assert N * d @ np.linalg.solve(cov, d) < stats.chi2.ppf(1 - 1e-4, 11)
    white = np.linalg.solve(np.linalg.cholesky(cov), (s - mean).T)
    assert np.abs(np.cov(white) - np.eye(11)).max() < 5 * math.sqrt(2 / N)


def _is_log_z(target, q, n):
    """log Z by importance sampling from the scipy distribution ``q``, and its standard error
    (delta method)."""
    x = q.rvs(size=n, random_state=np.random.default_rng(0)).reshape(n, target.dim)
    log_w = np.asarray(target.log_prob(jnp.asarray(x, jnp.float32)), np.float64) - q.logpdf(x)
    w = np.exp(log_w - log_w.max())
    return math.log(w.mean()) + log_w.max(), w.std() / (w.mean() * math.sqrt(n))


@pytest.mark.parametrize("name", ["mog40", "many_well2", "blr_diabetes"])
def test_log_z_by_importance_sampling_from_a_broad_gaussian(name):
    """The broad Gaussian: ``N(0, 30^2 I)`` for ``mog40``, ``N(0, 2.5^2 I)`` for one double
    well (``many_well`` at d=2: the same code as d=32, whose log Z is 16 copies'); for the
    regression (d=11, a posterior 30x narrower than its prior, strongly correlated) the
    posterior's mean and 1.5^2 times its covariance, computed here with numpy."""
    if name == "mog40":
        target, q = bench.TARGETS[name](), stats.multivariate_normal(np.zeros(2), 900.0)
    elif name == "many_well2":
        target = bench.TARGETS["many_well32"](dim=2)
        q = stats.multivariate_normal(np.zeros(2), 6.25)
    else:
        pytest.importorskip("sklearn")
        target, (x, y) = bench.TARGETS[name](), _diabetes()
        cov = np.linalg.inv(x.T @ x / 0.49 + np.eye(11))
        q = stats.multivariate_normal(cov @ x.T @ y / 0.49, 2.25 * cov)
    est, se = _is_log_z(target, q, 50_000)
    assert se < 0.03, se
    assert abs(est - target.log_z) < 5 * se, (est, target.log_z, se)


def test_banana_and_funnel_are_normalised():
    """log Z = 0: the banana by importance sampling from a proposal that follows its curve;
    the 2-D funnel by the trapezoid rule in ``(v, u = x e^{-v/2})`` (unit Jacobian for
    ``dx = e^{v/2} du``)."""
    banana = bench.TARGETS["banana"]()
    rng = np.random.default_rng(3)
    x1 = rng.normal(0, 12, 100_000)
    x2 = rng.normal(0.1 * (x1**2 - 100), 2.0)
    log_q = stats.norm(0, 12).logpdf(x1) + stats.norm(0.1 * (x1**2 - 100), 2.0).logpdf(x2)
    lp = np.asarray(banana.log_prob(jnp.asarray(np.c_[x1, x2], jnp.float32)), np.float64)
    w = np.exp(lp - log_q)
    assert abs(math.log(w.mean())) < 5 * w.std() / (w.mean() * math.sqrt(x1.size)) < 0.02
    funnel = bench.TARGETS["funnel"](dim=2)
    assert funnel.log_z == 0.0 and bench.TARGETS["funnel"]().log_z == 0.0
    v, u = np.meshgrid(np.linspace(-20, 20, 1601), np.linspace(-9, 9, 721), indexing="ij")
    pts = jnp.asarray(np.stack([v, u * np.exp(v / 2)], -1).reshape(-1, 2), jnp.float32)
    dens = np.exp(np.asarray(funnel.log_prob(pts), np.float64)).reshape(v.shape) * np.exp(v / 2)
    total = integrate.trapezoid(integrate.trapezoid(dens, u[0], axis=1), v[:, 0])
    assert abs(math.log(total)) < 1e-4, total
