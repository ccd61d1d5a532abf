"""The posteriors without exact samples (``logreg_breast_cancer``, ``lgcp_synthetic``): their
log-densities against independent numpy/scipy computations in float64, their scores
against finite differences, and the shipped reference runs against their own samples and
against cheap independent approximations.

Tolerances: float32 log-densities within ``1e-6`` relative plus ``1e-3`` absolute of the
float64 ones (values of -100 to -20,000: a few float32 roundings of the sum); scores within
``1e-4`` relative plus ``1e-3`` absolute of central differences (step ``1e-5``) of the
float64 log-density; reference moments within 5 standard errors of their shipped
samples'; the cheap independent checks (importance sampling from the Laplace
approximation, the Laplace approximation itself) as each test states.
"""

import json
import math
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats
from scipy.spatial.distance import cdist

from flowzoo import bench

DATA = Path(bench.__file__).parent / "data"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
NAMES = ("logreg_breast_cancer", "lgcp_synthetic")


def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return np.column_stack([np.ones(len(y)), stats.zscore(x)]), y


def _logreg_log_prob(w, x, y):
    """float64: ``sum y log expit(l) + (1 - y) log expit(-l) + log N(w; 0, I)``, ``l = x w``."""
    logits = w @ x.T
    lik = y * special.log_expit(logits) + (1 - y) * special.log_expit(-logits)
    return lik.sum(-1) + stats.norm.logpdf(w).sum(-1)


def _lgcp():
    """The LGCP's counts (the shipped file), the Cholesky factor of its prior covariance
    (from scipy's distances between the 32x32 grid's cells) and its mean, float64."""
    counts = np.asarray(json.loads((DATA / "lgcp_synthetic_counts.json").read_text())["counts"])
    cells = np.array([(i, j) for i in range(32) for j in range(32)], np.float64)
    cov = 1.91 * np.exp(-cdist(cells, cells) * 33 / 32)
    return counts, np.linalg.cholesky(cov), math.log(126) - 1.91 / 2


def _lgcp_log_prob(z, counts, chol, mu):
    x = mu + z @ chol.T
    return np.sum(x * counts - np.exp(x) / 1024, -1) + stats.norm.logpdf(z).sum(-1)


def _check_score(target, f64, points, rng):
    """Autodiff score against central differences of the float64 log-density: along every
    coordinate for small ``dim``, along 8 random directions otherwise."""
    score = np.asarray(target.score(jnp.asarray(points, jnp.float32)), np.float64)
    dirs = np.eye(target.dim) if target.dim <= 64 else rng.normal(size=(8, target.dim))
    eps = 1e-5
    for p, s in zip(points, score, strict=True):
        fd = (f64(p + eps * dirs) - f64(p - eps * dirs)) / (2 * eps)
        np.testing.assert_allclose(dirs @ s, fd, rtol=1e-4, atol=1e-3)


def test_logreg_log_prob_and_score_match_scipy():
    pytest.importorskip("sklearn")
    target = bench.TARGETS["logreg_breast_cancer"]()
    x, y = _breast_cancer()
    assert (target.dim, target.sample, target.log_z) == (31, None, None)
    assert target.init_scale == target.reference_scale == 1.0
    rng = np.random.default_rng(0)
    # near the posterior, at the prior's scale, and far out (logits in the hundreds)
    w = np.concatenate(
        [
            target.reference.mean + 0.5 * rng.normal(size=(3, 31)),
            rng.normal(size=(3, 31)),
            30 * rng.normal(size=(2, 31)),
        ]
    )
    lp = np.asarray(target.log_prob(jnp.asarray(w, jnp.float32)), np.float64)
    want = _logreg_log_prob(w, x, y)
    assert np.all(np.isfinite(lp)) and want.min() < -5_000  # the far points saturate
    np.testing.assert_allclose(lp, want, rtol=1e-6, atol=1e-3)
    _check_score(target, lambda v: _logreg_log_prob(v, x, y), w[:4], rng)


def test_lgcp_log_prob_and_score_match_numpy():
    target = bench.TARGETS["lgcp_synthetic"]()
    counts, chol, mu = _lgcp()
    assert (target.dim, target.sample, target.log_z) == (1024, None, None)
    assert target.init_scale == target.reference_scale == 1.0
    rng = np.random.default_rng(1)
    z = np.concatenate(
        [target.reference.mean + rng.normal(size=(2, 1024)), rng.normal(size=(2, 1024))]
    )
    lp = np.asarray(target.log_prob(jnp.asarray(z, jnp.float32)), np.float64)
    np.testing.assert_allclose(lp, _lgcp_log_prob(z, counts, chol, mu), rtol=1e-6, atol=1e-3)
    _check_score(target, lambda v: _lgcp_log_prob(v, counts, chol, mu), z[:2], rng)


def test_lgcp_counts_are_the_stated_draw():
    """The shipped counts: numpy's ``default_rng(0)`` field from the prior, then Poisson."""
    counts, chol, mu = _lgcp()
    rng = np.random.default_rng(0)
    field = mu + chol @ rng.standard_normal(1024)
    np.testing.assert_array_equal(counts, rng.poisson(np.exp(field) / 1024))
    assert counts.sum() == 101


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [
        ("logreg_breast_cancer", (10_000, 31), np.float32),
        ("lgcp_synthetic", (2_000, 1024), np.float16),
    ],
)
def test_shipped_reference_agrees_with_its_samples(name, shape, dtype):
    path = DATA / f"{name}_reference.npz"
    assert path.stat().st_size < 5e6
    with np.load(path, allow_pickle=False) as f:
        assert f["samples"].shape == shape and f["samples"].dtype == dtype
        assert f["mean"].dtype == f["std"].dtype == np.float64
    if name == "logreg_breast_cancer":
        pytest.importorskip("sklearn")
    ref = bench.TARGETS[name]().reference
    assert ref.mean.shape == ref.std.shape == (shape[1],) and ref.samples.shape == shape
    s = ref.samples.astype(np.float64)
    m = shape[0]
    assert np.all(np.abs(s.mean(0) - ref.mean) < 5 * ref.std / math.sqrt(m))
    kurt = np.mean((s - ref.mean) ** 4, 0) / ref.std**4
    assert np.all(np.abs(s.std(0) - ref.std) < 5 * ref.std * np.sqrt((kurt - 1) / (4 * m)))


def test_reference_runs_passed_their_checks():
    """The summary JSON of the reference runs: converged NUTS, and the cross-check by
    adapted MALA with ESS >= 7,000 agreeing to 0.05 standard deviations; the targets' step
    sizes are the ones it derived."""
    pytest.importorskip("sklearn")
    runs = json.loads((RESULTS / "sampler_references.json").read_text())["targets"]
    for name in NAMES:
        run = runs[name]
        assert run["nuts"]["rhat_max"] < 1.01 and run["nuts"]["bulk_ess_min"] > 10_000
        cross = run["cross_check"]
        assert cross["ess_min"] >= 7_000
        assert max(cross["max_mean_deviation_sd"], cross["max_std_deviation_sd"]) <= 0.05
        assert bench.TARGETS[name]().step_size == run["step_size"]


def _laplace(grad_hess, dim):
    """The MAP and the inverse Hessian there, by Newton's method from 0 (float64)."""
    w = np.zeros(dim)
    for _ in range(30):
        g, h = grad_hess(w)
        step = np.linalg.solve(h, g)
        w = w + step
        if np.abs(step).max() < 1e-9:
            break
    return w, np.linalg.inv(grad_hess(w)[1])


def test_logreg_reference_matches_importance_sampling_from_laplace():
    """Self-normalised importance sampling from the Laplace approximation ``N(MAP, H^-1)``
    (20,000 draws, float64): its mean within 0.2 and its stds within 15% of the reference
    (its own noise: about 0.1 and 5% at its ESS of about 1,000). The MAP itself sits up to
    0.33 reference stds from the mean: the posterior is skewed, which is why the check
    reweights."""
    pytest.importorskip("sklearn")
    x, y = _breast_cancer()

    def grad_hess(w):
        p = special.expit(x @ w)
        return x.T @ (y - p) - w, x.T @ (x * (p * (1 - p))[:, None]) + np.eye(31)

    mode, cov = _laplace(grad_hess, 31)
    z = np.random.default_rng(0).normal(size=(20_000, 31))
    w = mode + z @ np.linalg.cholesky(cov).T
    log_w = _logreg_log_prob(w, x, y) + 0.5 * np.sum(z**2, 1)  # log p - log q + const
    p = np.exp(log_w - log_w.max())
    p /= p.sum()
    assert 1 / np.sum(p**2) > 500  # the weights' ESS
    mean = p @ w
    std = np.sqrt(p @ (w - mean) ** 2)
    ref = bench.TARGETS["logreg_breast_cancer"]().reference
    assert np.max(np.abs(mean - ref.mean) / ref.std) < 0.2
    assert np.max(np.abs(std / ref.std - 1)) < 0.15


def test_lgcp_reference_is_near_the_laplace_approximation_and_follows_the_counts():
    """Float64 Newton on the counts: the Laplace stds within 10% of the reference (3.5%
    measured), the MAP within 0.3 reference stds of the mean (0.22 measured: the log link
    skews the posterior, the mean sits above the mode where counts are high); the
    posterior mean log-intensity ``mu + L mean`` correlates with ``log(y + 0.5) - log a``
    above 0.6 (0.83 measured; the prior mean, a constant, has none)."""
    counts, chol, mu = _lgcp()

    def grad_hess(z):
        lam = np.exp(mu + chol @ z) / 1024
        return chol.T @ (counts - lam) - z, chol.T @ (chol * lam[:, None]) + np.eye(1024)

    mode, cov = _laplace(grad_hess, 1024)
    ref = bench.TARGETS["lgcp_synthetic"]().reference
    assert np.max(np.abs(np.sqrt(np.diag(cov)) / ref.std - 1)) < 0.1
    assert np.max(np.abs(mode - ref.mean) / ref.std) < 0.3
    field = mu + chol @ ref.mean
    assert np.corrcoef(field, np.log(counts + 0.5) + math.log(1024))[0, 1] > 0.6


def test_missing_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r'logreg_breast_cancer.*pip install "flowzoo\[data\]"'):
        bench.TARGETS["logreg_breast_cancer"]()
