"""Stochastic interpolants, Schroedinger-bridge CFM and reflow against closed forms.

Gaussian-to-Gaussian references (isotropic, per coordinate): with ``x0 ~ N(m0, s0^2)``,
``x1 ~ N(m1, s1^2)`` independent and ``x_t = sigma_t x0 + alpha_t x1 + gamma_t z``,
``x_t ~ N(mu_t, V_t)``, ``mu_t = sigma_t m0 + alpha_t m1``, ``V_t = sigma_t^2 s0^2 +
alpha_t^2 s1^2 + gamma_t^2``; the drift ``b = E[dx_t/dt | x_t] = mu_t' + V_t'/(2 V_t) (x -
mu_t)`` and the denoiser ``E[z | x_t] = gamma_t / V_t (x - mu_t)`` are linear in ``x``, so
the least-squares linear fit to the loss's own (x_t, target) pairs must recover them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from flowzoo import flow_matching as fm
from flowzoo import paths
from flowzoo.integrate import solve_ode

M0, S0, M1, S1 = -1.0, 0.5, 2.0, 1.5
T = 0.3


def _linear_fit(loss, n=200_000):
    """Exact minimiser of a loss that is quadratic in ``(a, b)`` of ``pred = a + b * x``
    (one Newton step from zero), over one big batch."""

    def apply_fn(p, t, x, context=None):
        return p[0] + p[1] * x

    key = jax.random.key(0)
    x1 = M1 + S1 * jax.random.normal(jax.random.key(1), (n, 2))

    def f(p):
        return loss(apply_fn)(p, key, x1)[0]

    @jax.jit  # one compiled program: eager Hessians dispatch every op twice over 200k rows
    def newton(p0):
        return p0 - jnp.linalg.solve(jax.hessian(f)(p0), jax.grad(f)(p0))

    return newton(jnp.zeros(2))


def _moments(path, t):
    tt = jnp.asarray(t)
    alpha, sigma = path.schedule(tt)
    d_alpha, d_sigma = path.schedule_dt(tt)
    gamma, d_gamma = path.noise(tt)
    mu, d_mu = sigma * M0 + alpha * M1, d_sigma * M0 + d_alpha * M1
    var = sigma**2 * S0**2 + alpha**2 * S1**2 + gamma**2
    d_var = 2 * (sigma * d_sigma * S0**2 + alpha * d_alpha * S1**2 + gamma * d_gamma)
    return mu, d_mu, var, d_var, gamma


def _source(key, n):
    return M0 + S0 * jax.random.normal(key, (n, 2))


@pytest.mark.slow
@pytest.mark.parametrize("base", ["linear", "trig"])
def test_two_sided_interpolant_losses_recover_the_closed_form_drift_and_denoiser(base):
    path = paths.stochastic_interpolant_path(0.8, base)
    mu, d_mu, var, d_var, gamma = _moments(path, T)

    def loss(target):
        return lambda apply_fn: fm.cfm_loss(
            apply_fn, path, source=_source, time_range=(T, T), target=target
        )

    a, b = _linear_fit(loss("velocity"))
    slope = d_var / (2 * var)
    np.testing.assert_allclose([a, b], [d_mu - slope * mu, slope], atol=0.02)
    a, b = _linear_fit(loss("noise"))
    np.testing.assert_allclose([a, b], [-gamma / var * mu, gamma / var], atol=0.01)


@pytest.mark.slow
def test_schroedinger_bridge_coupling_matches_the_gaussian_closed_form():
    """Static SB with Brownian reference of variance sigma^2 between N(0, a^2) and N(0, b^2):
    cross-covariance (sqrt(4 a^2 b^2 + sigma^4) - sigma^2) / 2 (Bunne et al. 2023, "The
    Schroedinger Bridge between Gaussian Measures has a Closed Form", thm. 3), via entropic OT
    with epsilon = 2 sigma^2 (absolute). Quantile grids make the marginals deterministic."""
    n, a, b = 512, 1.0, 2.0
    q = (jnp.arange(n) + 0.5) / n
    x0, x1 = a * norm.ppf(q)[:, None], b * norm.ppf(q)[:, None]
    for s2 in (0.25, 1.0, 4.0):
        exact = 0.5 * (math.sqrt(4 * a * a * b * b + s2 * s2) - s2)
        cost = fm.squared_distances(x0, x1)
        plan = jnp.exp(fm.sinkhorn_log_plan(cost, 2 * s2, 1000, relative=False))
        np.testing.assert_allclose(float(jnp.sum(plan * (x0 @ x1.T))), exact, rtol=0.01)
        i0, i1 = fm.sinkhorn_coupling(2 * s2, 1000, relative=False)(jax.random.key(3), x0, x1)
        cov = float(jnp.mean(x0[i0, 0] * x1[i1, 0]))
        np.testing.assert_allclose(cov, exact, rtol=0.12)  # 512 draws from the plan


def test_bridge_oracle_transports_noise_along_the_gaussian_marginal():
    """One data point ``d``: ``x_t ~ N(t d, ((1-t)^2 + s^2 t (1-t)) I)``; the exact marginal
    field integrated from N(0, I) must follow it."""
    s, d = 0.7, jnp.array([[1.5, -0.5]])
    field = fm.marginal_velocity(paths.brownian_bridge_path(s), d)
    x0 = jax.random.normal(jax.random.key(0), (20_000, 2))
    t1 = 0.8
    y = solve_ode(field, x0, 0.0, t1, solver="rk4", num_steps=200).y1
    np.testing.assert_allclose(jnp.mean(y, 0), t1 * d[0], atol=0.02)
    var = (1 - t1) ** 2 + s * s * t1 * (1 - t1)
    np.testing.assert_allclose(jnp.var(y, 0), var, rtol=0.03)


@pytest.mark.slow
def test_reflow_pairs_straightness_and_paired_loss():
    shift = jnp.array([1.0, -2.0])
    pairs = fm.reflow_pairs(
        lambda t, x: jnp.broadcast_to(shift, x.shape), jax.random.key(0), 10, (2,)
    )
    assert pairs.shape == (10, 2, 2)
    np.testing.assert_allclose(
        pairs[:, 1] - pairs[:, 0], jnp.broadcast_to(shift, (10, 2)), atol=1e-5
    )
    loss = fm.cfm_loss(
        lambda p, t, x, c=None: jnp.broadcast_to(p, x.shape), paths.cond_ot_path(), source="paired"
    )
    assert float(loss(shift, jax.random.key(1), pairs)[0]) < 1e-10
    assert float(loss(jnp.zeros(2), jax.random.key(1), pairs)[0]) == pytest.approx(2.5, rel=1e-5)
    # one reflow round of a constant field: its pairs, and a loss that the same field zeroes
    pairs, rloss = fm.reflow(
        lambda p, t, x, c=None: jnp.broadcast_to(p, x.shape), shift, jax.random.key(4), 8, (2,)
    )
    np.testing.assert_allclose(
        pairs[:, 1] - pairs[:, 0], jnp.broadcast_to(shift, (8, 2)), atol=1e-5
    )
    assert float(rloss(shift, jax.random.key(5), pairs)[0]) < 1e-10
    # straightness: 0 for a constant field; for v = -x, int_0^1 (e^-t + e^-1 - 1)^2 dt E|x0|^2
    x0 = jax.random.normal(jax.random.key(2), (4000, 2))
    assert float(fm.straightness(lambda t, x: jnp.broadcast_to(shift, x.shape), x0)) < 1e-10
    ts = np.linspace(0.0, 1.0, 100_001)
    c = np.trapezoid((np.exp(-ts) + np.exp(-1.0) - 1.0) ** 2, ts)
    got = float(fm.straightness(lambda t, x: -x, x0))
    # trapezoid on 33 grid points: O(h^2) = 2e-3 relative here
    np.testing.assert_allclose(got, c * float(jnp.mean(jnp.sum(x0**2, -1))), rtol=5e-3)


def test_bad_interpolant_arguments_are_refused():
    ot = paths.cond_ot_path()
    f = lambda p, t, x, c=None: x  # noqa: E731
    with pytest.raises(ValueError, match="needs a stochastic interpolant"):
        fm.cfm_loss(f, ot, target="noise")
    with pytest.raises(ValueError, match="target must be"):
        fm.cfm_loss(f, ot, target="score")
    with pytest.raises(ValueError, match="no coupling"):
        fm.cfm_loss(f, ot, source="paired", coupling=fm.exact_ot_coupling())
    with pytest.raises(ValueError, match=r"\(batch, 2, \*event\)"):
        fm.cfm_loss(f, ot, source="paired")(None, jax.random.key(0), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="noise_scale must be > 0"):
        paths.brownian_bridge_path(0.0)
    with pytest.raises(ValueError, match="base must be"):
        paths.stochastic_interpolant_path(1.0, "cubic")
