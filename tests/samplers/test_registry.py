"""Every sampler through the one registry: one call shape, NFE reported, right target.

Target: ``N(MU, diag(STD^2))`` in 2-D. Chains get its log-density and score; diffusion
samplers the exact score of its VP marginals (SDE time, t=0 data, t=T noise); flow ODEs the
exact marginal velocity of the OT path from N(0, I) (flow-matching time, t=0 noise, t=1
data). Tolerances: the mean within 0.1 and the std within 12% on 2,000 samples (the
Monte-Carlo error is about 0.03 and 2%; the rest is each sampler's bias at these budgets).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import paths, samplers

MU, STD = jnp.array([1.0, -0.5]), jnp.array([0.5, 1.5])
VP = paths.vp_sde()
OT = paths.cond_ot_path()


def _log_prob(x):
    return jnp.sum(-0.5 * ((x - MU[None]) / STD[None]) ** 2, 1)


def _score_t(t, x):
    m, s = VP.marginal(jnp.ones_like(x), t)
    var = m**2 * STD[None] ** 2 + paths.bcast(s**2, x)
    return -(x - m * MU[None]) / var


def _velocity(t, x):
    alpha, sigma = OT.schedule(t)
    d_alpha, d_sigma = OT.schedule_dt(t)
    var = alpha**2 * STD**2 + sigma**2
    mean = alpha * MU
    gain = (alpha * d_alpha * STD**2 + sigma * d_sigma) / var  # (2,): per coordinate
    return (d_alpha * MU)[None] + gain[None] * (x - mean[None])


PROBLEM = samplers.Problem(
    event_shape=(2,),
    log_prob=_log_prob,
    init=lambda key, n: MU[None] + 2.0 * jax.random.normal(key, (n, 2)),
    sde=VP,
    score_t=_score_t,
    path=OT,
    velocity=_velocity,
)

SETTINGS = {  # name -> (num_steps, options)
    "ula": (400, {"step_size": 0.05}),
    "mala": (400, {"step_size": 0.2}),
    "annealed_langevin": (400, {"num_levels": 10}),
    "reverse_sde": (200, {}),
    "pc": (100, {"snr": 0.1}),
}
SETTINGS.update(
    ddim=(50, {}),
    ddim_stochastic=(100, {}),
    dpm_solver_2m=(20, {}),
    edm_heun=(20, {}),
    edm_heun_churn=(40, {}),
    exp_euler=(100, {}),
)
for _solver, _steps in {"euler": 64, "midpoint": 16, "heun": 16, "rk4": 8}.items():
    SETTINGS[f"pf_ode_{_solver}"] = (_steps, {})
    SETTINGS[f"flow_ode_{_solver}"] = (_steps, {"t1": 1.0 - 1e-3})
for _solver in ("tsit5", "dopri5"):
    SETTINGS[f"pf_ode_{_solver}"] = (None, {})
    SETTINGS[f"flow_ode_{_solver}"] = (None, {"t1": 1.0 - 1e-3})


def test_every_registered_sampler_is_tested():
    assert set(SETTINGS) == set(samplers.SAMPLERS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_sampler_reaches_the_target_and_reports_nfe(key, name):
    steps, options = SETTINGS[name]
    run = jax.jit(lambda k: samplers.run(name, k, PROBLEM, 2000, steps, **options))
    x, info = run(key)
    assert x.shape == (2000, 2)
    np.testing.assert_allclose(jnp.mean(x, 0), MU, atol=0.1)
    np.testing.assert_allclose(jnp.std(x, 0), STD, rtol=0.12)
    spec = samplers.SAMPLERS[name]
    nfe = int(info.nfe)
    if steps is not None:  # PC and EDM Heun skip one evaluation in their last step
        assert spec.nfe_per_step * steps - 2 * steps <= nfe <= spec.nfe_per_step * steps + 1
    else:
        assert nfe > 0
    if name == "mala":
        assert 0.3 < float(info.acceptance_rate) < 1.0
    else:
        assert np.isnan(float(info.acceptance_rate))


def test_registry_errors_name_the_problem(key):
    with pytest.raises(ValueError, match="unknown sampler 'nope'.*'mala'"):
        samplers.run("nope", key, PROBLEM, 10, 10)
    with pytest.raises(ValueError, match="needs Problem fields.*velocity"):
        samplers.run("flow_ode_euler", key, samplers.Problem((2,)), 10, 10)
    with pytest.raises(ValueError, match="num_steps"):
        samplers.run("ula", key, PROBLEM, 10)
    with pytest.raises(ValueError, match="n must be a positive int"):
        samplers.run("ula", key, PROBLEM, 0, 10)
