"""solve_sde / em_step: Euler–Maruyama statistics on the Ornstein–Uhlenbeck process."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.integrate import em_step, solve_sde

THETA, S, H, N = 1.5, 0.8, 0.02, 50  # OU: dy = -THETA y dt + S dW, y0 = 1, t in [0, 1]


def _em_moments(num_steps):
    """Exact mean/variance of the Euler–Maruyama recursion (not of the SDE)."""
    a = 1.0 - THETA * H
    mean, var = 1.0, 0.0
    for _ in range(num_steps):
        mean, var = a * mean, a * a * var + S * S * H
    return mean, var


@pytest.mark.slow
@pytest.mark.parametrize("brownian, chains", [("unsafe", 16384), ("virtual_tree", 2048)])
def test_ou_moments_match_em_recursion(key, brownian, chains):
    y0 = jnp.ones((chains, 2))
    ts = jnp.array([10 * H, 25 * H])
    sol = jax.jit(
        lambda k: solve_sde(
            lambda t, y: -THETA * y,
            lambda t, y: S,
            k,
            y0,
            0.0,
            N * H,
            N,
            save_ts=ts,
            brownian=brownian,
        )
    )(key)
    assert sol.ys.shape == (2, chains, 2)
    for i, n in enumerate((10, 25, N)):
        mean, var = _em_moments(n)
        y = np.asarray(sol.ys[i] if i < 2 else sol.y1, np.float64).ravel()
        se_mean, se_var = np.sqrt(var / y.size), var * np.sqrt(2.0 / y.size)
        assert abs(y.mean() - mean) < 4 * se_mean
        assert abs(y.var() - var) < 4 * se_var
    # and the EM moments are O(h)-close to the SDE's
    exact_var = S**2 / (2 * THETA) * (1 - np.exp(-2 * THETA))
    assert abs(_em_moments(N)[1] - exact_var) < 0.05 * exact_var


def test_pytree_state_and_direct_adjoint(key):
    y0 = {"a": jnp.zeros((8, 3)), "b": jnp.ones((8,))}
    sol = solve_sde(
        lambda t, y: jax.tree.map(jnp.zeros_like, y),
        lambda t, y: {"a": 1.0, "b": 0.0},
        key,
        y0,
        0.0,
        1.0,
        10,
        adjoint="direct",
    )
    assert sol.y1["a"].shape == (8, 3) and float(jnp.std(sol.y1["a"])) > 0.1
    np.testing.assert_allclose(sol.y1["b"], 1.0)


def test_em_step_formula(key):
    y = jnp.arange(6.0).reshape(3, 2)
    no_noise = em_step(lambda t, x: -x + t, lambda t, x: 0.0, key, 1.0, y, 0.1)
    np.testing.assert_allclose(no_noise, y + 0.1 * (-y + 1.0), rtol=1e-6)
    noisy = em_step(
        lambda t, x: jnp.zeros_like(x), lambda t, x: 2.0, key, 0.0, jnp.zeros((20000, 1)), 0.25
    )
    assert abs(float(jnp.std(noisy)) - 2.0 * 0.5) < 0.03


def test_rejects_backward_time(key):
    with pytest.raises(ValueError, match="forward"):
        solve_sde(lambda t, y: y, lambda t, y: 1.0, key, jnp.zeros((2, 1)), 1.0, 0.0, 10)
