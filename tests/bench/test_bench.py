"""The sampler benchmark: targets' exact fields, the noise floor, a broken sampler, the CLI.

Tolerances: energy distances at n = 1000 fluctuate by about the noise floor (1e-3 to 1e-2
depending on the target); assertions compare against it or against other samplers.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bench, cli, metrics, paths, samplers
from flowzoo.integrate import SOLVERS

SMALL = bench.Settings(n=1000, repeats=1, trace=16)


@pytest.mark.parametrize("name", sorted(bench.TARGETS))
def test_exact_samples_score_at_the_noise_floor(name):
    """Exact samples score like exact samples: within 5 standard deviations of the energy
    distance between independent exact samples (its spread, from 8 pairs)."""
    target = bench.TARGETS[name]()
    floor = bench.noise_floor(target, 0, SMALL)["energy_distance"]
    pairs = [
        float(
            metrics.energy_distance(
                target.sample(jax.random.key(100 + 2 * i), SMALL.n),
                target.sample(jax.random.key(101 + 2 * i), SMALL.n),
            )
        )
        for i in range(8)
    ]
    spread = float(np.std(pairs))
    assert 0.2 * spread < floor < 3 * spread  # the reported floor is the typical magnitude
    x = target.sample(jax.random.key(7), SMALL.n)
    ref = target.sample(jax.random.fold_in(jax.random.key(0), 1), SMALL.n)
    out = bench.score_samples(target, x, ref, jax.random.key(1))
    assert abs(out["energy_distance"]) < 5 * spread, (out, spread)
    if out.get("mode_coverage") is not None:
        assert out["mode_coverage"] == 1.0


def test_exact_samplers_have_the_stated_moments():
    x = bench.TARGETS["funnel"]().sample(jax.random.key(0), 20_000)
    np.testing.assert_allclose(jnp.std(x[:, 0]), 3.0, rtol=0.03)  # v ~ N(0, 9)
    y = bench.TARGETS["banana"]().sample(jax.random.key(0), 20_000)
    np.testing.assert_allclose(jnp.std(y[:, 0]), 10.0, rtol=0.03)
    np.testing.assert_allclose(jnp.std(y[:, 1] - 0.1 * (y[:, 0] ** 2 - 100.0)), 1.0, rtol=0.03)


def test_mixture_fields_match_autodiff_and_closed_forms(key):
    mix = bench.TARGETS["eight_gaussians"]().mixture
    x = 3.0 * jax.random.normal(key, (16, 2))
    a, s = 0.7, 0.4  # diffused mixture: components N(a m, a^2 v + s^2)
    diffused = bench.GaussianMixture(mix.weights, a * mix.means, a**2 * mix.variances + s**2)
    auto = jax.grad(lambda y: jnp.sum(bench.mixture_log_prob(diffused, y)))(x)
    np.testing.assert_allclose(bench.diffused_score(mix, a, s, x), auto, rtol=1e-4, atol=1e-5)
    # one Gaussian component: the OT-path velocity is linear in x, in closed form
    one = bench.GaussianMixture(jnp.ones(1), jnp.array([[1.0, -0.5]]), jnp.array([[0.25, 2.25]]))
    path, t = paths.cond_ot_path(), 0.6
    var = t**2 * one.variances[0] + (1 - t) ** 2
    gain = (t * one.variances[0] - (1 - t)) / var
    want = one.means + gain[None] * (x - t * one.means)
    np.testing.assert_allclose(bench.path_velocity(one, path)(t, x), want, rtol=1e-5, atol=1e-5)


def _broken(base: str):
    """``base`` run with the score (and log-density) of the wrong sign."""
    spec = samplers.SAMPLERS[base]

    @functools.wraps(spec.fn)  # the same options as ``base`` (the bench reads its signature)
    def run(key, problem, n, num_steps, **options):
        flipped = problem._replace(
            score_t=None if problem.score_t is None else (lambda t, x: -problem.score_t(t, x)),
            score=None if problem.score is None else (lambda x: -problem.score(x)),
            log_prob=None if problem.log_prob is None else (lambda x: -problem.log_prob(x)),
        )
        return spec.fn(key, flipped, n, num_steps, **options)

    return spec._replace(fn=run)


@pytest.mark.parametrize("name", sorted(bench.TARGETS))
def test_a_broken_sampler_ranks_last_on_every_target(monkeypatch, name):
    """DDIM or ULA with the score of the wrong sign scores worse than every working sampler
    that runs on the target (or diverges)."""
    monkeypatch.setitem(samplers.SAMPLERS, "broken_ddim", _broken("ddim"))
    monkeypatch.setitem(samplers.SAMPLERS, "broken_ula", _broken("ula"))
    settings = bench.Settings(n=500, repeats=1, warmup=False)
    target = bench.TARGETS[name]()
    rows = [bench.run_cell(target, s, 64, 0, settings) for s in ("ddim", "dpm_solver_2m", "mala")]
    rows = [r for r in rows if r is not None]
    broken = bench.run_cell(target, "broken_ddim", 64, 0, settings) or bench.run_cell(
        target, "broken_ula", 64, 0, settings
    )
    worst = max(r["energy_distance"] for r in rows if not r["diverged"])
    assert broken["diverged"] or broken["energy_distance"] > worst, (name, broken, worst)


BUDGETS = sorted(set(bench.DEFAULT_NFE) | set(bench.QUICK_NFE))


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_bench_steps_come_from_the_sampler_spec(name):
    """The bench runs the steps each spec's ``steps_for`` buys with the bench's options, and
    their NFE fits in the budget (MALA: one initial evaluation over it, see its spec); the
    options are the target's Langevin step for ULA and MALA, 8 levels for annealed Langevin,
    ``t1 = 1 - 1e-3`` for the flow ODEs and none for the rest."""
    target = bench.TARGETS["eight_gaussians"]()
    spec = samplers.SAMPLERS[name]
    want = {"ula": {"step_size"}, "mala": {"step_size"}, "annealed_langevin": {"num_levels"}}
    want.update({f"flow_ode_{solver}": {"t1"} for solver in SOLVERS})
    for budget in BUDGETS:
        steps, options = bench.steps_and_options(name, budget, target)
        assert set(options) == want.get(name, set())
        if spec.adaptive:
            assert steps is None
            continue
        assert steps == spec.steps_for(budget, **options)
        assert spec.nfe(steps, **options) <= budget + (name == "mala"), (budget, steps)


def test_quick_help_states_the_settings_quick_uses(capsys):
    assert cli.main(["bench", "samplers", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    quick = bench.QUICK_SETTINGS
    assert f"n={quick.n}," in out and f"--quick {quick.n})" in out
    assert f"default {bench.Settings().n}," in out
    assert ",".join(map(str, bench.QUICK_NFE)) in out and ",".join(bench.QUICK_TARGETS) in out


def test_cli_runs_skips_finished_cells_and_rejects_unknown_names(tmp_path, capsys):
    args = [
        "bench",
        "samplers",
        "--targets",
        "eight_gaussians",
        "--samplers",
        "ddim,mala",
        "--nfe",
        "16",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--quick",
    ]
    assert cli.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {c["sampler"] for c in results["cells"]} == {"ddim", "mala"}
    assert results["settings"]["n"] == bench.QUICK_SETTINGS.n  # what --help says --quick uses
    mala = next(c for c in results["cells"] if c["sampler"] == "mala")
    assert mala["num_steps"] == 16 and mala["nfe"] == 17 and 0 < mala["acceptance_rate"] < 1
    assert {"load_average_start", "load_average_end", "versions"} <= set(results["environment"])
    assert (tmp_path / "leaderboard.md").read_text().count("eight_gaussians") >= 1
    assert (tmp_path / "eight_gaussians.png").stat().st_size > 1000
    before = (tmp_path / "results.json").read_text()
    assert cli.main(args) == 0  # every cell is done: nothing is rerun
    after = json.loads((tmp_path / "results.json").read_text())
    assert [c["wall_seconds"] for c in after["cells"]] == [
        c["wall_seconds"] for c in json.loads(before)["cells"]
    ]
    capsys.readouterr()
    assert cli.main(["bench", "samplers", "--targets", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown target nope" in err[0] and "eight_gaussians" in err[0]
    assert cli.main(["bench", "samplers", "--samplers", "ddim,nope", "--out", str(tmp_path)]) == 2
    assert "unknown sampler nope" in capsys.readouterr().err
