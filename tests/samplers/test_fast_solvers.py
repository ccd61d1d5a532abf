"""The fast diffusion solvers: order of convergence and Gaussian moments with exact scores.

SDE time (t=0 data, t=T noise), VP SDE. For Gaussian data ``N(MU, SD^2)`` the
probability-flow map is affine, ``x_t = a_t MU + sqrt(a_t^2 SD^2 + s_t^2) xi`` with ``xi``
fixed by the prior draw, so every deterministic solver's error at ``t_min`` is known
exactly. Fitted slopes of log error against log steps (asserted with the stated margins;
measured: DDIM 0.93, DPM-Solver++(2M) 2.11, EDM Heun 2.27, Heun 1.93, RK4 3.8 before the
float32 floor).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import paths, samplers
from flowzoo.integrate import SolverConfig

SDE = paths.vp_sde()
MU, SD, T_MIN = 1.0, 0.5, 1e-2
KEY = jax.random.key(0)
SHAPE = (256, 1)


def _coef(t):
    a, s = SDE.marginal(jnp.ones(()), jnp.asarray(t, jnp.float32))
    return a, s


def _score(t, x):
    a, s = _coef(t)
    return -(x - a * MU) / (a**2 * SD**2 + s**2)


def _exact_at_t_min():
    x_T = SDE.prior_sample(jax.random.split(KEY)[0], SHAPE)  # every SDE sampler's prior draw
    (a_T, s_T), (a, s) = _coef(SDE.T), _coef(T_MIN)
    xi = (x_T - a_T * MU) / jnp.sqrt(a_T**2 * SD**2 + s_T**2)
    x = a * MU + jnp.sqrt(a**2 * SD**2 + s**2) * xi
    x0_hat = MU + a * SD**2 / (a**2 * SD**2 + s**2) * (x - a * MU)  # what EDM returns
    return x, x0_hat


RUNS = {  # name -> (solve(num_steps), expected order); slopes asserted within 0.4
    "ddim": (lambda n: samplers.ddim_sample(SDE, _score, KEY, SHAPE, n, t_min=T_MIN), 1.0),
    "dpm_solver_2m": (
        # on the log-SNR grid the step ratio r is constant, where the 2M analysis applies
        # (on the default time grid the pre-asymptotic slope was 2.6)
        lambda n: samplers.dpm_solver_2m_sample(
            SDE, _score, KEY, SHAPE, n, t_min=T_MIN, spacing="logsnr"
        ),
        2.0,
    ),
    "edm_heun": (lambda n: samplers.edm_heun_sample(SDE, _score, KEY, SHAPE, n, t_min=T_MIN), 2.0),
    "heun": (
        lambda n: (
            samplers.pf_ode_sample(
                SDE, _score, KEY, SHAPE, t_min=T_MIN, solver=SolverConfig("heun", n)
            ).samples
        ),
        2.0,
    ),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_order_of_convergence(name):
    solve, order = RUNS[name]
    x, x0_hat = _exact_at_t_min()
    ref = x0_hat if name == "edm_heun" else x
    steps = [8, 16, 32, 64]
    errs = [float(jnp.max(jnp.abs(jax.jit(lambda n=n: solve(n))() - ref))) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.4, (name, slope, errs)


def test_rk4_is_fourth_order():
    x, _ = _exact_at_t_min()

    def err(n):
        out = samplers.pf_ode_sample(
            SDE, _score, KEY, SHAPE, t_min=T_MIN, solver=SolverConfig("rk4", n)
        ).samples
        return float(jnp.max(jnp.abs(out - x)))

    steps = [4, 8, 16]  # above the float32 floor (about 1e-6 here)
    slope = -np.polyfit(np.log(steps), np.log([err(n) for n in steps]), 1)[0]
    assert slope > 3.5, slope


COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])
MEAN2 = jnp.array([1.0, -1.0])


def _score_2d(t, x):
    a, s = _coef(t)
    cov_t = a**2 * COV + s**2 * jnp.eye(2)
    return -jnp.linalg.solve(cov_t, (x - a * MEAN2[None]).T).T


@pytest.mark.parametrize(
    ("name", "steps", "options"),
    [("ddim", 100, {}), ("ddim_stochastic", 200, {}), ("dpm_solver_2m", 50, {})],
)
def test_ddim_and_dpm_solver_reproduce_a_gaussian(name, steps, options):
    problem = samplers.Problem(event_shape=(2,), sde=SDE, score_t=_score_2d)
    run = jax.jit(lambda k: samplers.run(name, k, problem, 20_000, steps, **options)[0])
    x = run(jax.random.key(3))
    # Monte-Carlo standard errors at n = 20,000: about 0.007 (mean), 0.01 (covariance)
    np.testing.assert_allclose(jnp.mean(x, 0), MEAN2, atol=0.03)
    np.testing.assert_allclose(jnp.cov(x.T), COV, atol=0.04)


def test_edm_sigma_max_cap():
    """A cap above sigma(T) changes nothing (to float32 rounding); a cap of 80 (EDM's value, below
    sigma(T) ~ 152 for this VP SDE) starts from N(0, 80^2) and, with enough steps, still
    lands on the Gaussian's data prediction (the start's neglected data spread, SD = 0.5, is
    forgotten by the flow from sigma = 80: error about 0.5 / 80 in x~ at the start)."""
    _, x0_hat = _exact_at_t_min()
    run = jax.jit(
        lambda cap: samplers.edm_heun_sample(
            SDE, _score, KEY, SHAPE, 64, t_min=T_MIN, sigma_max=cap
        ),
        static_argnums=0,
    )
    np.testing.assert_allclose(run(1e6), run(None), rtol=1e-5, atol=1e-6)
    capped = run(80.0)
    # not the same draw, so compare distributions: the data prediction's mean and spread
    want_sd = float(jnp.std(x0_hat))
    assert abs(float(jnp.mean(capped)) - MU) < 0.05
    assert abs(float(jnp.std(capped)) - want_sd) < 0.05 * want_sd + 0.01
    with pytest.raises(ValueError, match="sigma_max must be > 0"):
        samplers.edm_heun_sample(SDE, _score, KEY, SHAPE, 8, sigma_max=0.0)
