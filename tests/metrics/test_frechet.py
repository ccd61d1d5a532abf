"""Fréchet distance and classifier legibility against closed forms and scipy's sqrtm."""

import numpy as np
import pytest
import scipy.linalg

from flowzoo import metrics


def _random_cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_gaussian_frechet_matches_scipy_sqrtm():
    """Non-commuting covariances: tr(C1 + C2 - 2 sqrtm(C1 C2)) by scipy (rtol 1e-8)."""
    rng = np.random.default_rng(0)
    d = 12
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = _random_cov(rng, d), _random_cov(rng, d)
    ref = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert metrics.gaussian_frechet_distance(m1, c1, m2, c2) == pytest.approx(ref, rel=1e-8)


def test_gaussian_frechet_closed_form_for_diagonal_covariances():
    """Diagonal covariances: |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2; zero for equal ones,
    also when the covariance is singular."""
    a, b = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 0.0])
    m1, m2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    want = 5.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert metrics.gaussian_frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want)
    assert metrics.gaussian_frechet_distance(m1, np.diag(a), m1, np.diag(a)) == pytest.approx(
        0.0, abs=1e-9
    )


def test_frechet_distance_of_samples_approaches_the_closed_form():
    """Two 4-D Gaussians, 100k samples each: the sample FD is within 2% of the exact one."""
    rng = np.random.default_rng(1)
    d = 4
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    c1, c2 = _random_cov(rng, d), _random_cov(rng, d)
    x = rng.multivariate_normal(m1, c1, size=100_000)
    y = rng.multivariate_normal(m2, c2, size=100_000)
    exact = metrics.gaussian_frechet_distance(m1, c1, m2, c2)
    assert metrics.frechet_distance(x, y) == pytest.approx(exact, rel=0.02)


def test_class_confidence_counts_confident_rows_and_classes():
    probs = np.array([[0.95, 0.05, 0.0], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9], [0.0, 0.0, 1.0]])
    legible, hist = metrics.class_confidence(probs, 0.9)
    assert legible == 0.75
    np.testing.assert_allclose(hist, [0.5, 0.0, 0.5])


def test_frechet_inputs_are_checked():
    with pytest.raises(ValueError, match="non-finite"):
        metrics.frechet_distance(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="dimensions differ"):
        metrics.frechet_distance(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        metrics.frechet_distance(np.zeros(4), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="threshold"):
        metrics.class_confidence(np.ones((2, 2)) / 2, 0.0)
