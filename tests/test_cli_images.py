"""``flowzoo train`` on an image experiment: metrics.jsonl carries test bits/dim at each
eval, summary.json the final figure, samples.png a grid; ``sample``/``eval`` on the run.

One tiny Glow run (1 level, 1 step, 8 channels, 20 steps) is trained once per module.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import jax
import numpy as np
import pytest

from flowzoo import cli, data
from flowzoo.zoo import load_run

TINY = [
    "--set",
    "train.steps=20",
    "--set",
    "train.steps_per_call=10",
    "--set",
    "train.eval_every=10",
    "--set",
    "train.checkpoint_every=0",
    "--set",
    "train.batch_size=32",
    "--set",
    "model.levels=1",
    "--set",
    "model.depth=1",
    "--set",
    "model.hidden=8",
    "--set",
    "plot.n_samples=16",
    "--set",
    "plot.quality_samples=300",
    "--no-progress",
]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, digits_classifier):
    workdir = tmp_path_factory.mktemp("runs")
    rc, out, err = run_cli("train", "glow_digits", *TINY, "--workdir", workdir)
    assert rc == 0, err
    return workdir / "glow_digits"


@pytest.mark.slow
def test_train_logs_bits_per_dim_and_writes_a_sample_grid(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/test_bpd" in r]
    assert [r["step"] for r in evals] == [10, 20]
    for r in evals:  # bits/dim = nats per image / (64 ln 2)
        assert r["eval/test_bpd"] == pytest.approx(r["eval/test_nll"] / (64 * math.log(2)))
        assert 0 < r["eval/test_bpd"] < 10
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 20
    assert summary["test_bpd"] == pytest.approx(evals[-1]["eval/test_bpd"], rel=1e-5)
    # sample quality of a 20-step Glow: far from the real-image floor, 300 of each
    assert summary["n"] == 300 and summary["fd"] > summary["fd_floor"] > 0
    assert summary["legibility"] < summary["legibility_floor"]
    assert sum(summary["class_histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert summary["classifier_accuracy"] >= 0.98
    assert (run_dir / "samples.png").stat().st_size > 1000
    assert not (run_dir / "density.png").exists()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["event_shape"] == [8, 8, 1]
    assert "data_levels" not in info["config"]["model"]  # filled in at build time only


def test_summary_energy_distance_uses_every_quality_sample_in_pixel_units(run_dir):
    """summary.json's energy distance compares all 300 samples drawn for the quality figures
    (not the 16 plotted) with the 300 held-out images, both as pixel values in [0, 1]: the
    figure of an independent float64 computation on the same samples (train_and_evaluate
    samples with the third key split from the seed, at plot.temperature)."""
    from scipy.spatial.distance import cdist, pdist

    run = load_run(run_dir)
    key = jax.random.split(jax.random.key(run.config["seed"]), 3)[2]
    x = run.sample(key, 300, float(run.config["plot"]["temperature"]))
    y = data.image_dataset("digits").test
    assert x.shape == y.shape == (300, 8, 8, 1)
    x, y = (np.asarray(a, np.float64).reshape(300, -1) / 16 for a in (x, y))
    want = 2 * cdist(x, y).mean() - pdist(x).mean() - pdist(y).mean()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert want > 0 and summary["energy_distance"] == pytest.approx(want, rel=1e-4)


@pytest.mark.slow
def test_sample_and_eval_on_an_image_run(run_dir, tmp_path):
    out_file = tmp_path / "x.npy"
    rc, _, err = run_cli("sample", run_dir, "-n", 5, "--out", out_file)
    assert rc == 0, err
    x = np.load(out_file)
    assert x.shape == (5, 8, 8, 1) and np.all(x == np.floor(x))
    assert x.min() >= 0 and x.max() <= 16
    test = data.image_dataset("digits").test
    np.save(tmp_path / "test.npy", test.astype(np.float32))
    rc, out, err = run_cli("eval", run_dir, "--data", tmp_path / "test.npy", "--samples", 0)
    assert rc == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    # same model, different dequantization draws for part of the test set
    assert json.loads(out)["nll"] == pytest.approx(summary["test_nll"], rel=0.02)
    assert "quality" not in json.loads(out)
    assert load_run(run_dir).step == 20
    rc, out, err = run_cli("eval", run_dir, "--samples", 300)  # sample quality only
    assert rc == 0, err
    quality = json.loads(out)["quality"]
    assert "nll" not in json.loads(out) and quality["n"] == 300
    assert quality["fd_floor"] == pytest.approx(summary["fd_floor"])  # same real images
    assert quality["fd"] > quality["fd_floor"]
    rc, _, err = run_cli("eval", run_dir, "--samples", 1)
    assert rc == 2 and "--samples must be 0 or >= 2" in err


def test_eval_rejects_images_scaled_to_the_unit_interval(run_dir, tmp_path):
    np.save(tmp_path / "bad.npy", np.full((3, 8, 8, 1), 0.5, np.float32))
    rc, out, err = run_cli("eval", run_dir, "--data", tmp_path / "bad.npy")
    assert rc == 2 and out == ""
    assert "not whole numbers" in err and "Traceback" not in err
