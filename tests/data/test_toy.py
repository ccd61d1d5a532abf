"""Tests for the 2-D toy targets: shapes, determinism, jit/vmap, and each target's geometry.

Statistical checks use fixed keys and tolerances of 5 standard errors (binomial for mode
masses, sample standard deviation / sqrt(n) for means), so a correct sampler fails them
with probability < 1e-5 per check.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import data
from flowzoo.data import TOY_TARGETS

NAMES = sorted(TOY_TARGETS)
# One sample size everywhere, so each sampler compiles once for the whole module (compiling
# dominates the run time; drawing 1e5 points takes milliseconds).
N = NS = 100_000


def _binomial_tol(n: int, p: float, z: float = 5.0) -> float:
    """Tolerance on an empirical fraction: ``z`` binomial standard errors."""
    return z * math.sqrt(p * (1.0 - p) / n)


def _assert_mean(x: np.ndarray, expected, z: float = 5.0) -> None:
    se = x.std(axis=0) / math.sqrt(x.shape[0])
    np.testing.assert_array_less(np.abs(x.mean(axis=0) - np.asarray(expected)), z * se)


# --------------------------------------------------------------------------- generic


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_finite(name, key):
    x = TOY_TARGETS[name](key, N)
    assert x.shape == (N, 2)
    assert x.dtype == jnp.float32
    assert np.isfinite(np.asarray(x)).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_key_and_differs_across_keys(name, key):
    k1, k2 = jax.random.split(key)
    a, b, c = (TOY_TARGETS[name](k, N) for k in (k1, k1, k2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # points within one draw are not all the same either
    assert float(jnp.std(a[:, 0])) > 1e-2


def test_jit_of_vmap_matches_per_key_calls(key):
    # one jitted program for all targets (compiling them together is ~2x cheaper)
    keys = jax.random.split(key, 2)

    @jax.jit
    def all_targets(keys):
        return {name: jax.vmap(lambda k, fn=fn: fn(k, N))(keys) for name, fn in TOY_TARGETS.items()}

    batched = all_targets(keys)
    for name, fn in TOY_TARGETS.items():
        assert batched[name].shape == (2, N, 2), name
        for i in range(2):
            np.testing.assert_allclose(
                batched[name][i], fn(keys[i], N), rtol=1e-5, atol=1e-5, err_msg=name
            )


def test_traced_hyperparameters_under_jit(key):
    out = jax.jit(lambda noise: data.two_moons(key, N, noise=noise))(0.0)
    np.testing.assert_allclose(out, data.two_moons(key, N, noise=0.0), atol=1e-6)


def test_n_must_be_static_int(key):
    with pytest.raises(TypeError, match="static Python int"):
        jax.jit(data.two_moons)(key, 8)
    with pytest.raises(ValueError, match="non-negative"):
        data.circles(key, -1)
    assert data.circles(key, 0).shape == (0, 2)


def test_toy_registry_lookup(key):
    np.testing.assert_array_equal(data.toy("two_moons", key, N), data.two_moons(key, N))
    np.testing.assert_array_equal(data.toy("8gaussians", key, N), data.eight_gaussians(key, N))
    np.testing.assert_array_equal(data.toy("Two-Spirals", key, N), data.two_spirals(key, N))
    np.testing.assert_array_equal(
        data.toy("circles", key, N, factor=0.3), data.circles(key, N, factor=0.3)
    )
    with pytest.raises(ValueError, match="unknown toy target 'banana'") as err:
        data.toy("banana", key, 4)
    for name in NAMES:
        assert name in str(err.value)


# --------------------------------------------------------------------------- two moons


def test_two_moons_noiseless_on_semicircles(key):
    x = np.asarray(data.two_moons(key, NS, noise=0.0), np.float64)
    r_upper = np.hypot(x[:, 0], x[:, 1])
    r_lower = np.hypot(x[:, 0] - 1.0, x[:, 1] - 0.5)
    upper = (np.abs(r_upper - 1.0) < 1e-5) & (x[:, 1] >= -1e-6)
    lower = (np.abs(r_lower - 1.0) < 1e-5) & (x[:, 1] <= 0.5 + 1e-6)
    assert np.all(upper | lower), "every noiseless point lies on one of the two semicircles"
    # the two semicircles only meet at no point (their closest approach is > 0.1), so the
    # classification is unambiguous; equal mass within 5 binomial standard errors
    assert not np.any(upper & lower)
    assert abs(upper.mean() - 0.5) < _binomial_tol(x.shape[0], 0.5)
    # uniform angle: on the upper moon, P(angle < pi/4) = 1/4
    angle = np.arctan2(x[upper, 1], x[upper, 0])
    assert abs(np.mean(angle < math.pi / 4) - 0.25) < _binomial_tol(int(upper.sum()), 0.25)


def test_two_moons_mean_with_noise(key):
    # E[x] = 1/2 (E[cos a] + E[1 - cos a]) = 0.5, E[y] = 1/2 (2/pi + 0.5 - 2/pi) = 0.25
    x = np.asarray(data.two_moons(key, NS, noise=0.1), np.float64)
    _assert_mean(x, (0.5, 0.25))  # 5 standard errors, about (0.014, 0.008)
    # noise adds noise^2 to each coordinate's variance: Var[x] = 0.75 + 0.01
    assert abs(x[:, 0].var() - 0.76) < 0.02


def test_two_moons_matches_sklearn_moments(key):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref, _ = sklearn_datasets.make_moons(n_samples=NS, noise=0.05, random_state=0)
    x = np.asarray(data.two_moons(key, NS, noise=0.05), np.float64)
    np.testing.assert_allclose(x.mean(0), ref.mean(0), atol=0.015)
    np.testing.assert_allclose(np.cov(x.T), np.cov(ref.T), atol=0.015)


# --------------------------------------------------------------------------- others


def test_eight_gaussians_modes(key):
    n, radius, std = NS, 5.0, 0.1
    x = np.asarray(data.eight_gaussians(key, n, radius=radius, std=std), np.float64)
    angles = np.arange(8) * math.pi / 4
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=-1)
    mode = d.argmin(axis=1)
    # components are 38 std apart: assignment is exact, and every point is within 6 std
    assert d.min(axis=1).max() < 6 * std * math.sqrt(2)
    frac = np.bincount(mode, minlength=8) / n
    np.testing.assert_array_less(np.abs(frac - 1 / 8), _binomial_tol(n, 1 / 8))
    for k in range(8):
        xk = x[mode == k]
        _assert_mean(xk, centres[k])
        np.testing.assert_allclose(xk.std(axis=0), std, rtol=0.1)


def test_eight_gaussians_default_is_ffjord(key):
    x = np.asarray(data.eight_gaussians(key, NS, std=0.0), np.float64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 4.0 / 1.414, rtol=1e-5)


def test_checkerboard_on_squares(key):
    n = NS
    x = np.asarray(data.checkerboard(key, n), np.float64)
    assert np.all((x >= -4.0) & (x < 4.0))
    ij = np.floor(x / 2.0).astype(int)  # square index in {-2, ..., 1}^2
    assert np.all((ij.sum(axis=1) % 2) == 0), "every point lies in an 'on' square"
    counts = np.unique(ij, axis=0, return_counts=True)[1]
    assert counts.size == 8
    np.testing.assert_array_less(np.abs(counts / n - 1 / 8), _binomial_tol(n, 1 / 8))


def test_circles_radii(key):
    n, factor = NS, 0.3
    x = np.asarray(data.circles(key, n, noise=0.0, factor=factor), np.float64)
    r = np.linalg.norm(x, axis=1)
    outer = np.abs(r - 1.0) < 1e-5
    inner = np.abs(r - factor) < 1e-5
    assert np.all(outer | inner)
    assert abs(outer.mean() - 0.5) < _binomial_tol(n, 0.5)
    _assert_mean(x, (0.0, 0.0))  # uniform angle


def test_rings_radii(key):
    n = NS
    x = np.asarray(data.rings(key, n, noise=0.0), np.float64)
    r = np.linalg.norm(x, axis=1)
    radii = np.array([0.75, 1.5, 2.25, 3.0])
    nearest = np.abs(r[:, None] - radii[None]).argmin(axis=1)
    np.testing.assert_allclose(r, radii[nearest], atol=1e-5)
    frac = np.bincount(nearest, minlength=4) / n
    np.testing.assert_array_less(np.abs(frac - 0.25), _binomial_tol(n, 0.25))


def test_swiss_roll_noiseless_on_curve(key):
    scale = 0.2
    x = np.asarray(data.swiss_roll(key, NS, noise=0.0, scale=scale), np.float64) / scale
    t = np.linalg.norm(x, axis=1)  # |(t cos t, t sin t)| = t
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    np.testing.assert_allclose(x, np.stack([t * np.cos(t), t * np.sin(t)], 1), atol=2e-4)


def _ffjord_two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """FFJORD's ``2spirals`` written out in NumPy, as an independent reference."""
    s = np.sqrt(rng.random((n // 2, 1))) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(s) * s + rng.random((n // 2, 1)) * 0.5
    d1y = np.sin(s) * s + rng.random((n // 2, 1)) * 0.5
    x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    return x + rng.standard_normal(x.shape) * 0.1


def test_two_spirals_matches_ffjord_reference(key):
    n = NS
    x = np.asarray(data.two_spirals(key, n, noise=0.1), np.float64)
    ref = _ffjord_two_spirals(n, np.random.default_rng(0))
    _assert_mean(x, (0.0, 0.0))  # arms are point reflections of each other, equally likely
    np.testing.assert_allclose(np.cov(x.T), np.cov(ref.T), atol=0.05)  # entries ~1.5-2
    # radial profile: quantiles of |x| agree
    q = np.linspace(0.05, 0.95, 10)
    np.testing.assert_allclose(
        np.quantile(np.linalg.norm(x, axis=1), q),
        np.quantile(np.linalg.norm(ref, axis=1), q),
        atol=0.03,
    )
    bound = (3 * math.pi + 0.5 * math.sqrt(2)) / 3
    noiseless = np.asarray(data.two_spirals(key, n, noise=0.0))
    assert np.linalg.norm(noiseless, axis=1).max() <= bound + 1e-5


def test_pinwheel_arms(key):
    n = NS
    x = np.asarray(
        data.pinwheel(key, n, num_arms=5, radial_std=0.2, tangential_std=0.0, rate=0.0),
        np.float64,
    )
    # with no tangential noise and no twist, arm c is the ray at angle -2 pi c / 5
    angle = np.mod(-np.arctan2(x[:, 1], x[:, 0]), 2 * math.pi)
    arm = np.round(angle / (2 * math.pi / 5)) % 5
    np.testing.assert_allclose(np.mod(angle - arm * 2 * math.pi / 5 + 1, 2 * math.pi), 1, atol=1e-4)
    frac = np.bincount(arm.astype(int), minlength=5) / n
    np.testing.assert_array_less(np.abs(frac - 0.2), _binomial_tol(n, 0.2))
    # radius 2 * (1 + 0.2 e) > 0 unless e < -5: mean 2, std 0.4
    assert abs(np.linalg.norm(x, axis=1).mean() - 2.0) < 5 * 0.4 / math.sqrt(n)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1).std(), 0.4, rtol=0.05)
