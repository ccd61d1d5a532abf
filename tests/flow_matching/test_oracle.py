"""The marginal-velocity oracle against a float64 brute-force evaluation."""

import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import flow_matching as fm
from flowzoo import paths


def brute_force(data, t, x, schedule):
    """Loop over points and data in float64 numpy: sum_i w_i u_t(x | d_i)."""
    alpha, sigma, da, ds = schedule(t)
    out = np.zeros_like(x)
    for b in range(len(x)):
        logw = np.array([-np.sum((x[b] - alpha * d) ** 2) / (2 * sigma**2) for d in data])
        w = np.exp(logw - logw.max())
        w /= w.sum()
        cond = [ds / sigma * (x[b] - alpha * d) + da * d for d in data]
        out[b] = sum(wi * ci for wi, ci in zip(w, cond, strict=True))
    return out


def ot_schedule(smin):
    return lambda t: (t, 1 - (1 - smin) * t, 1.0, -(1 - smin))


def cos_schedule(t):
    h = np.pi / 2
    return np.sin(h * t), np.cos(h * t), h * np.cos(h * t), -h * np.sin(h * t)


@pytest.mark.parametrize(
    "path,schedule",
    [(paths.cond_ot_path(0.01), ot_schedule(0.01)), (paths.cosine_path(), cos_schedule)],
    ids=["cond_ot", "cosine"],
)
@pytest.mark.parametrize("t", [0.1, 0.5, 0.9, 0.99])
def test_oracle_matches_brute_force(path, schedule, t):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(30, 3))
    x = rng.normal(size=(7, 3)) * 0.7 + t * data[:7]
    got = fm.marginal_velocity(path, jnp.asarray(data, jnp.float32))(t, jnp.asarray(x, jnp.float32))
    want = brute_force(data, t, x, schedule)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * max(1.0, np.abs(want).max()))


def test_oracle_batched_times_and_images():
    rng = np.random.default_rng(1)
    data = jnp.asarray(rng.normal(size=(10, 2, 2, 1)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(4, 2, 2, 1)), jnp.float32)
    t = jnp.array([0.2, 0.4, 0.6, 0.8])
    fn = fm.marginal_velocity(paths.cond_ot_path(), data)
    batched = fn(t, x)
    assert batched.shape == x.shape
    for i in range(4):
        np.testing.assert_allclose(batched[i], fn(t[i], x[i : i + 1])[0], rtol=1e-5, atol=1e-5)


def test_oracle_finite_near_t1():
    """At t -> 1 (sigma -> 0) the weights collapse onto the nearest datum without NaNs."""
    data = jnp.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    x = jnp.array([[0.1, 0.05], [2.9, 0.2]])
    for t in (1 - 1e-4, 1 - 1e-7, 1.0):
        x1_hat = fm.posterior_mean(paths.cond_ot_path(), data, t, x)
        np.testing.assert_allclose(x1_hat, data[:2], atol=1e-6)
        assert bool(jnp.all(jnp.isfinite(fm.marginal_velocity(paths.cond_ot_path(), data)(t, x))))
