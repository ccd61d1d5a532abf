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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(bench.TARGETS))
def test_exact_samples_score_at_the_noise_floor(name):
    """Exact samples score like exact samples: within 5 standard deviations of the energy
    distance between independent exact samples (its spread, from 8 pairs), and moment
    errors within 3 times the floor's (their mean over exact samples). Targets without an
    exact sampler compare two disjoint halves of their shipped reference samples."""
    target = bench.TARGETS[name]()
    floors = bench.noise_floor(target, 0, SMALL)
    floor = floors["energy_distance"]
    base = jax.random.key(100)
    pairs = [_pair(target, jax.random.fold_in(base, i)) for i in range(8)]
    spread = float(np.std([float(metrics.energy_distance(a, b)) for a, b in pairs]))
    assert 0.2 * spread < floor < 3 * spread  # the reported floor is the typical magnitude
    x, ref = _pair(target, jax.random.key(7))
    out = bench.score_samples(target, x, ref, jax.random.key(1))
    assert abs(out["energy_distance"]) < 5 * spread, (out, spread)
    if out.get("mode_coverage") is not None:
        assert out["mode_coverage"] == 1.0
    for k in ("mean_error_sd", "std_error_rel"):
        assert (k in out) == (target.reference is not None)
        if k in out:
            assert out[k] < 3 * floors[k], (k, out[k], floors[k])


def _pair(target, key):
    """Two independent exact samples of the size cells are scored at."""
    if target.sample is None:
        pool = np.asarray(target.reference.samples, np.float32)
        m = bench.reference_size(target, SMALL.n)
        order = np.asarray(jax.random.permutation(key, pool.shape[0]))
        return jnp.asarray(pool[order[:m]]), jnp.asarray(pool[order[m : 2 * m]])
    k1, k2 = jax.random.split(key)
    return target.sample(k1, SMALL.n), target.sample(k2, SMALL.n)


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


@pytest.mark.slow
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


BUDGETS = sorted(set(bench.DEFAULT_NFE) | set(bench.LITERATURE_NFE) | set(bench.QUICK_NFE))


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


@pytest.mark.slow
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
        "--seeds",
        "0,1",
    ]
    assert cli.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {c["sampler"] for c in results["cells"]} == {"ddim", "mala"}
    assert sorted(c["seed"] for c in results["cells"]) == [0, 0, 1, 1]
    assert results["settings"]["n"] == bench.QUICK_SETTINGS.n  # what --help says --quick uses
    mala = next(c for c in results["cells"] if c["sampler"] == "mala")
    assert mala["num_steps"] == 16 and mala["nfe"] == 17 and 0 < mala["acceptance_rate"] < 1
    assert {"load_average_start", "load_average_end", "versions"} <= set(results["environment"])
    board = (tmp_path / "leaderboard.md").read_text()
    assert "## eight_gaussians" in board and "seeds 0, 1" in board and " ± " in board
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


def _cells(values: dict[str, list[float]]) -> list[dict]:
    """Leaderboard cells of one target and budget: sampler -> energy distance per seed."""
    return [
        {
            "target": "t",
            "sampler": s,
            "budget": 64.0,
            "seed": k,
            "n": 100,
            "nfe": 320 if s == "over" else 64,
            "num_steps": 64,
            "energy_distance": v,
        }
        for s, vals in values.items()
        for k, v in enumerate(vals)
    ]


@pytest.mark.parametrize(
    "values, floor, want",
    [
        # a consistent gap far beyond the spread: a winner
        ({"a": [0.10, 0.11, 0.12], "b": [0.30, 0.32, 0.31]}, 0.01, ["a"]),
        # better on average, but the paired differences swing by more than their mean
        ({"a": [0.10, 0.20, 0.12], "b": [0.15, 0.12, 0.16]}, 0.01, ["a", "b"]),
        # both within the noise floor: indistinguishable from exact sampling
        ({"a": [-0.004, 0.001, -0.002], "b": [0.004, 0.005, 0.003]}, 0.01, ["a", "b"]),
        # one seed: only a gap beyond the floor names a winner
        ({"a": [0.10], "b": [0.105], "c": [0.5]}, 0.01, ["a", "b"]),
        # a sampler that diverged on one seed does not compete
        ({"a": [0.10, float("nan"), 0.1], "b": [0.2, 0.2, 0.21]}, 0.01, ["b"]),
        # nor does one that spent more than 1.1 times the budget (nfe_a: 5 x 64)
        ({"over": [0.01, 0.01, 0.01], "b": [0.2, 0.2, 0.21]}, 0.01, ["b"]),
        # the runner-up is beaten: a worse sampler whose seeds scatter does not make a tie
        ({"a": [0.01, 0.02, 0.0], "b": [0.5, 0.55, 0.52], "c": [1.0, 9.0, 4.0]}, 0.01, ["a"]),
    ],
)
def test_the_leaderboard_names_a_winner_only_beyond_the_noise(values, floor, want):
    grouped = bench._leaderboard.group(_cells(values))
    runs = {s: by for (_, s, _), by in grouped.items()}
    best, tied = bench.ties(runs, floor)
    assert best == want[0] and tied == want
    board = bench.leaderboard(
        _cells(values), {f"t|{k}|100": {"energy_distance": floor} for k in range(3)}
    )
    assert (f"**{want[0]}**" in board) == (len(want) == 1)
    assert ("tie: " + ", ".join(want) in board) == (len(want) > 1)
    assert ("[NFE 320]" in board) == ("over" in values)
