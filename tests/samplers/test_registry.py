"""Every sampler through the one registry: one call shape, NFE reported, right target.

Target: ``N(MU, diag(STD^2))`` in 2-D. Chains get its log-density and score; diffusion
samplers the exact score of its VP marginals (SDE time, t=0 data, t=T noise); flow ODEs the
exact marginal velocity of the OT path from N(0, I) (flow-matching time, t=0 noise, t=1
data). Tolerances: the mean within 0.1 and the std within 12% on 2,000 samples (the
Monte-Carlo error is about 0.03 and 2%; the rest is each sampler's bias at these budgets).
"""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowzoo.zoo  # noqa: F401  (registers the flow samplers, so the registry is complete)
from flowzoo import flows, paths, samplers
from flowzoo.integrate import SOLVERS, SolverConfig, solver_adaptive

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


TUNED = {"hmc", "nuts", "mala_adapted", "smc"}  # tests/samplers/test_adapted.py
FLOWS = set(flows.FLOW_SAMPLERS)  # tests/flows/test_reverse_kl.py


def test_every_registered_sampler_is_tested():
    assert set(SETTINGS) | TUNED | FLOWS == set(samplers.SAMPLERS)


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
    assert spec.adaptive == (steps is None)
    if spec.adaptive:
        assert nfe > 0
    else:  # the spec states exactly what a run reports
        assert nfe == spec.nfe(steps, **options), (nfe, spec.nfe(steps, **options))
    if name == "mala":
        assert 0.3 < float(info.acceptance_rate) < 1.0
    else:
        assert np.isnan(float(info.acceptance_rate))


BUDGETS = (4, 8, 10, 16, 18, 32, 64, 128, 256, 512, 1000, 1024)  # those flowzoo bench uses


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_budget_buys_steps_whose_nfe_fits(name):
    """``nfe(steps_for(B)) <= B`` for every budget the bench uses that covers the sampler's
    fewest steps, with default options and with the options that change the cost. MALA's
    one initial evaluation is over the budget: a budget of B runs B steps, as ULA does."""
    spec = samplers.SAMPLERS[name]
    if spec.adaptive:
        assert spec.nfe is None and spec.steps_for is None
        return
    over = 1 if name == "mala" else 0
    option_sets = {"pc": [{"num_corrector": 2}], "annealed_langevin": [{"num_levels": 8}]}
    for options in [{}, *option_sets.get(name, [])]:
        fewest = spec.nfe(spec.steps_for(1, **options), **options)
        for budget in BUDGETS:
            steps = spec.steps_for(budget, **options)
            assert isinstance(steps, int) and steps >= 1
            if budget >= fewest:
                assert spec.nfe(steps, **options) <= budget + over, (budget, options)
            assert spec.steps_for(2 * budget, **options) >= steps  # more budget, no fewer steps


def test_ode_samplers_are_adaptive_as_their_solver_is():
    for solver in SOLVERS:
        for family in ("pf_ode", "flow_ode"):
            spec = samplers.SAMPLERS[f"{family}_{solver}"]
            assert spec.adaptive == solver_adaptive(solver)
            if not spec.adaptive:
                per_step = SolverConfig(solver, 1).nfe_per_step()
                assert spec.nfe(10) == 10 * per_step
    assert {n for n, s in samplers.SAMPLERS.items() if s.adaptive} == {
        f"{family}_{solver}" for family in ("pf_ode", "flow_ode") for solver in ("tsit5", "dopri5")
    }


def test_pc_reports_the_nfe_of_its_corrector_count(key):
    spec = samplers.SAMPLERS["pc"]
    _, info = samplers.run("pc", key, PROBLEM, 8, 5, num_corrector=3)
    assert int(info.nfe) == spec.nfe(5, num_corrector=3) == 5 * 4 - 3


def test_needs_are_alternatives_and_errors_name_the_missing_fields(key):
    init = PROBLEM.init
    ula_problem = samplers.Problem((2,), init=init, log_prob=_log_prob)  # no score: derived
    assert samplers.supports("ula", ula_problem)
    assert samplers.supports("ula", samplers.Problem((2,), init=init, score=lambda x: -x))
    assert not samplers.supports("mala", samplers.Problem((2,), init=init, score=lambda x: -x))
    with pytest.raises(ValueError, match=r"needs Problem fields \['score or log_prob'\]"):
        samplers.run("ula", key, samplers.Problem((2,), init=init), 4, 4)
    with pytest.raises(ValueError, match=r"\['init', 'log_prob'\]"):
        samplers.run("mala", key, samplers.Problem((2,)), 4, 4)
    assert samplers.missing_fields((("sde",), ("score_t",)), samplers.Problem((2,), sde=VP)) == [
        "score_t"
    ]


@pytest.fixture
def registry():
    """The registry, restored to its entries after the test."""
    saved = dict(samplers.SAMPLERS)
    yield samplers.SAMPLERS
    samplers.SAMPLERS.clear()
    samplers.SAMPLERS.update(saved)


def test_register_sampler_refuses_duplicates_and_malformed_specs(registry):
    ula = registry["ula"]
    with pytest.raises(ValueError, match="'ula' is already registered; pass replace=True"):
        samplers.register_sampler("ula", ula)
    samplers.register_sampler("ula", ula._replace(kind="sde"), replace=True)
    assert registry["ula"].kind == "sde"
    with pytest.raises(ValueError, match="needs of 'mine' must be a tuple of tuples"):
        samplers.register_sampler("mine", ula._replace(needs=("init", "score|log_prob")))
    with pytest.raises(ValueError, match="needs of 'mine'.*got \\(\\('nope',\\),\\)"):
        samplers.register_sampler("mine", ula._replace(needs=(("nope",),)))
    with pytest.raises(ValueError, match="kind of 'mine' must be one of"):
        samplers.register_sampler("mine", ula._replace(kind="mcmc"))
    with pytest.raises(ValueError, match="fixed-step sampler.*needs callable nfe and steps_for"):
        samplers.register_sampler("mine", ula._replace(nfe=None))
    for name, spec in dict(registry).items():  # every built-in spec is well formed
        samplers.register_sampler(name, spec, replace=True)
    assert "mine" not in registry
    mine = samplers.SamplerSpec(ula.fn, (("init",), ("log_prob",)), "chain")  # defaults:
    assert mine.nfe(7) == 7 and mine.steps_for(7) == 7 and not mine.adaptive  # 1 per step


def test_registry_errors_name_the_problem(key):
    with pytest.raises(ValueError, match="unknown sampler 'nope'.*'mala'"):
        samplers.run("nope", key, PROBLEM, 10, 10)
    with pytest.raises(ValueError, match="needs Problem fields.*velocity"):
        samplers.run("flow_ode_euler", key, samplers.Problem((2,)), 10, 10)
    with pytest.raises(ValueError, match="num_steps"):
        samplers.run("ula", key, PROBLEM, 10)
    with pytest.raises(ValueError, match="n must be a positive int"):
        samplers.run("ula", key, PROBLEM, 0, 10)


@pytest.mark.parametrize("trace", [0, 10])
def test_mala_acceptance_is_the_mean_over_every_step(key, trace):
    """``SamplerInfo.acceptance_rate`` equals the mean of the kernel's per-step acceptance
    probabilities ``min(1, exp(log ratio))`` over every step and chain, from an independent
    step-by-step loop with the same keys (the registry's split: ``init`` from the first key,
    step ``i`` from ``fold_in(second, i)``). Chains start far out in the tails, where the
    first steps accept almost always, so the last step alone (or the last of each traced
    block) differs from the mean by more than 0.01, far beyond the tolerance. Tolerance
    1e-5 absolute: float32 running sums of 40 terms in [0, 1] agree to about 1e-6."""
    n, steps, h = 64, 40, 0.3
    problem = PROBLEM._replace(init=lambda k, m: MU[None] + 10.0 + jax.random.normal(k, (m, 2)))
    run = jax.jit(lambda k: samplers.run("mala", k, problem, n, steps, step_size=h, trace=trace))
    _, info = run(key)
    k0, k1 = jax.random.split(key)
    chain = samplers.mala(_log_prob, h)
    state = chain.init(problem.init(k0, n))
    step = jax.jit(chain.step)
    per_step = []
    for i in range(steps):
        state, step_info = step(jax.random.fold_in(k1, i), state)
        per_step.append(np.asarray(step_info.acceptance_rate, np.float64))
    per_step = np.stack(per_step)  # (steps, chains)
    want = per_step.mean()
    np.testing.assert_allclose(float(info.acceptance_rate), want, atol=1e-5)
    last_of_blocks = per_step[(trace or steps) - 1 :: trace or steps].mean()
    assert abs(last_of_blocks - want) > 0.01  # the last-step-only rate differs


def test_the_docs_table_is_read_from_the_specs():
    """``docs/samplers.md``'s sampler table is generated by ``docs/hooks.py`` from the
    registry: one row per sampler with its spec's steps and NFE at the stated budget."""
    path = Path(__file__).resolve().parents[2] / "docs" / "hooks.py"
    loader = importlib.util.spec_from_file_location("docs_hooks", path)
    hooks = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(hooks)
    page = (path.parent / "samplers.md").read_text()
    assert page.count("<!-- sampler-table -->") == 1
    rows = {
        line.split("|")[1].strip(" `"): [c.strip() for c in line.split("|")[2:-1]]
        for line in hooks.on_page_markdown(page, None).splitlines()
        if line.startswith("| `")
    }
    assert set(samplers.SAMPLERS) <= set(rows)
    for name, spec in samplers.SAMPLERS.items():
        kind, _, steps, nfe = rows[name]
        assert kind == spec.kind
        if not spec.adaptive:
            assert (int(steps), int(nfe)) == (spec.steps_for(64), spec.nfe(spec.steps_for(64)))
