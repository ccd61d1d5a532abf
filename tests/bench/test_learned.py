"""Learned targets: a trained run's own field through the benchmark harness and the CLI."""

import contextlib
import io
import json

import jax
import numpy as np
import pytest

from flowzoo import bench, cli

SMALL = bench.Settings(n=500, repeats=1, trace=16, warmup=False)


def _train(tmp_path_factory, name: str, *overrides: str):
    """``flowzoo train NAME --set ...`` in a fresh directory; returns the run directory."""
    work = tmp_path_factory.mktemp(name)
    argv = ["train", name, "--workdir", str(work), "--no-progress"]
    for kv in overrides:
        argv += ["--set", kv]
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(argv) == 0
    return work / name


@pytest.fixture(scope="module")
def fm_run(tmp_path_factory):
    """A small I-CFM run on two moons (300 steps of a 2x64 time MLP, no likelihood)."""
    return _train(
        tmp_path_factory,
        "fm_moons",
        "train.steps=300",
        "train.checkpoint_every=300",
        "model.hidden=[64,64]",
        "model.log_prob=none",
        "data.n_train=4000",
        "data.n_test=2500",  # the CLI benchmark draws n = 2000 reference points
        "plot.n_samples=200",
    )


@pytest.mark.slow
def test_learned_flow_target_runs_the_run_field_against_data_and_a_tight_solve(fm_run):
    data_t = bench.learned_target(fm_run, "data")
    solve_t = bench.learned_target(fm_run, "solve")
    assert data_t.name == "run:fm_moons" and solve_t.name == "run:fm_moons:solve"
    assert data_t.log_prob is None and data_t.dim == 2
    # against the model's own tight solve, RK4 with 64 evaluations is far more accurate
    # than one Euler step; against held-out data both carry the model's own error too
    rk4 = bench.run_cell(solve_t, "flow_ode_rk4", 64, 0, SMALL)
    euler = bench.run_cell(solve_t, "flow_ode_euler", 1, 0, SMALL)
    floor = bench.noise_floor(solve_t, 0, SMALL, pairs=3)["energy_distance"]
    assert rk4["energy_distance"] < 3 * floor + 1e-3 < euler["energy_distance"], (rk4, euler)
    ref = data_t.sample(jax.random.key(0), 500)
    assert len({tuple(r) for r in np.asarray(ref)}) == 500  # distinct held-out points
    with pytest.raises(ValueError, match="held out"):
        data_t.sample(jax.random.key(0), 3000)
    assert bench.run_cell(data_t, "mala", 16, 0, SMALL) is None  # no log-density


@pytest.mark.slow
def test_bench_cli_with_runs_writes_a_leaderboard_for_the_run(fm_run, tmp_path):
    out = tmp_path / "bench"
    argv = [
        "bench",
        "samplers",
        "--runs",
        str(fm_run),
        "--samplers",
        "flow_ode_euler",
        "--nfe",
        "2,8",
        "--seeds",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(argv) == 0
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert {c["target"] for c in cells} == {"run:fm_moons"} and len(cells) == 2
    assert "## run:fm_moons" in (out / "leaderboard.md").read_text()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["bench", "samplers", "--runs", str(tmp_path / "nope"), "--out", str(out)])
    assert rc != 0 and "does not exist" in err.getvalue()


@pytest.mark.slow
def test_image_run_is_benchmarked_in_its_model_space(tmp_path_factory):
    """A tiny fm_digits run (4 steps of a one-level UNet without attention or dropout, on
    batches of 16): the target lives in the flattened model space ([-1, 1) after
    dequantization), the held-out reference is the 300 test images mapped there, and the
    sampler rows run on the UNet's field."""
    run = _train(
        tmp_path_factory,
        "fm_digits",
        "train.steps=4",
        "train.batch_size=16",
        "train.checkpoint_every=4",
        "train.steps_per_call=2",
        "train.ema_decay=0",
        "train.warmup_steps=0",
        "model.channels=[8]",
        "model.embed_dim=16",
        "model.attention_heads=0",
        "model.dropout=0",
        "model.log_prob=none",
        "plot.n_samples=4",
        "plot.quality_samples=0",
    )
    target = bench.learned_target(run, "data")
    assert target.dim == 64
    ref = np.asarray(target.sample(jax.random.key(0), 300))
    assert ref.shape == (300, 64) and ref.min() >= -1.0 and ref.max() < 1.0
    with pytest.raises(ValueError, match="--n 300"):
        target.sample(jax.random.key(0), 301)
    small = bench.Settings(n=100, repeats=1, warmup=False)
    cell = bench.run_cell(target, "flow_ode_euler", 4, 0, small)
    assert cell["nfe"] == 4 and not cell["diverged"]
