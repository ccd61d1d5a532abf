"""The ``flowzoo`` command: train / sample / eval / list, resume, and every error path.

Commands run in-process through ``flowzoo.cli.main`` (fast); one error path runs the real
``flowzoo`` executable in a subprocess. One tiny run (2 couplings, 16 hidden units, 50
steps) is trained once per module and copied where a test damages it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from flowzoo import checkpoint as ckpt
from flowzoo import cli, data
from flowzoo.zoo import load_data, load_run

NAME = "moons_realnvp"  # the default config's name: the run directory under --workdir
TINY = [
    "--set",
    "train.steps=50",
    "--set",
    "model.num_layers=2",
    "--set",
    "model.hidden=[16]",
    "--set",
    "data.n_train=2000",
    "--set",
    "data.n_test=500",
    "--set",
    "train.eval_every=0",
    "--set",
    "plot.n_samples=500",
    "--set",
    "plot.grid=40",
    "--no-progress",
]


def run_cli(*argv) -> tuple[int, str, str]:
    """``flowzoo ARGV`` in-process: ``(exit status, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def assert_error(rc, err, status, *needles):
    """Exit ``status``; stderr ends with one ``flowzoo: error: ...`` line naming the problem.

    (``flowzoo train`` prints one ``flowzoo: training NAME -> DIR`` line before it starts.)
    """
    assert rc == status, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("flowzoo: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert all(line.startswith("flowzoo: training ") for line in lines[:-1]), err
    for needle in needles:
        assert needle in errors[0], errors[0]


def snapshot(directory):
    """{relative path: (bytes, mtime_ns)} of every file under ``directory``."""
    out = {}
    for root, _, files in os.walk(directory):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, directory)] = (fh.read(), os.stat(path).st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(exit status, stdout, stderr, run_dir)`` of one tiny ``flowzoo train``."""
    workdir = tmp_path_factory.mktemp("runs")
    rc, out, err = run_cli("train", *TINY, "--workdir", workdir)
    return rc, out, err, workdir / NAME


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the trained run (``tmp_path/runs/NAME``), for tests that damage it."""
    dst = tmp_path / "runs" / NAME
    shutil.copytree(trained[3], dst)
    return dst


@pytest.fixture(scope="module")
def moons_file(tmp_path_factory):
    """200 raw-unit two-moons points saved as .npy (the run's data distribution)."""
    path = tmp_path_factory.mktemp("data") / "moons.npy"
    np.save(path, np.asarray(data.two_moons(jax.random.key(5), 200, noise=0.05)))
    return path


# --------------------------------------------------------------------------- happy paths


@pytest.mark.slow
def test_train_writes_run_directory(trained):
    rc, out, err, run_dir = trained
    assert rc == 0, err
    for name in ["run.json", "metrics.jsonl", "summary.json", "samples.png", "density.png"]:
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    assert ckpt.all_steps(run_dir / "checkpoints") == [50]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads(out) == summary  # stdout is the summary, as JSON
    assert summary["steps"] == 50 and np.isfinite(summary["test_nll"])
    info = json.loads((run_dir / "run.json").read_text())
    assert info["config"]["model"]["num_layers"] == 2
    assert info["config"]["model"]["hidden"] == [16]
    assert info["config"]["train"]["steps"] == 50
    assert info["event_shape"] == [2]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    assert train_records[-1]["step"] == 50 and np.isfinite(train_records[-1]["loss"])
    assert train_records[-1]["samples_per_sec"] > 0
    # the end-of-run eval is logged too
    assert records[-1]["step"] == 50 and np.isfinite(records[-1]["eval/test_nll"])
    assert f"-> {run_dir}" in err


def test_sample_writes_finite_samples(trained, tmp_path):
    out_file = tmp_path / "sub" / "f.npy"
    rc, _, err = run_cli("sample", trained[3], "-n", 100, "--out", out_file)
    assert rc == 0, err
    x = np.load(out_file)
    assert x.shape == (100, 2) and x.dtype == np.float32
    assert np.all(np.isfinite(x))
    assert "wrote 100 samples" in err


@pytest.mark.slow
def test_eval_matches_load_run(trained, moons_file):
    """The printed NLL equals ``-mean(load_run(...).log_prob(x))`` (tolerance 1e-5 nats)."""
    rc, out, err = run_cli("eval", trained[3], "--data", moons_file)
    assert rc == 0, err
    result = json.loads(out)
    assert result["n"] == 200 and result["step"] == 50
    assert np.isfinite(result["nll"]) and np.isfinite(result["nll_standardized"])
    run = load_run(trained[3])
    expected = -float(np.mean(run.log_prob(np.load(moons_file))))
    assert result["nll"] == pytest.approx(expected, abs=1e-5)
    assert "quality" not in result  # sample quality is for image runs
    rc, out, err = run_cli("eval", trained[3])  # without --data: the run's held-out split
    assert rc == 0, err
    held_out = load_data(run.config)[1]
    expected = -float(np.mean(run.log_prob(held_out)))
    assert json.loads(out)["n"] == len(held_out)
    assert json.loads(out)["nll"] == pytest.approx(expected, abs=1e-5)
    rc, _, err = run_cli("eval", trained[3], "--data", moons_file, "--samples", 100)
    assert_error(rc, err, 2, "--samples applies to image runs only")


def test_list_includes_default():
    rc, out, _ = run_cli("list")
    assert rc == 0
    assert "default" in out.splitlines()


def test_print_config_applies_overrides_without_training(tmp_path):
    rc, out, _ = run_cli("train", "--set", "train.lr=0.01", "--print-config", "--workdir", tmp_path)
    assert rc == 0
    assert json.loads(out)["train"]["lr"] == 0.01
    assert list(tmp_path.iterdir()) == []


def test_rerun_with_more_steps_resumes(run_copy):
    rc, out, err = run_cli("train", *TINY, "--set", "train.steps=60", "--workdir", run_copy.parent)
    assert rc == 0, err
    assert json.loads(out)["steps"] == 60
    assert ckpt.latest_step(run_copy / "checkpoints") == 60
    records = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    # the first run logged step 50; the resumed one only its 10 new steps
    assert [r["step"] for r in records if "loss" in r] == [50, 60]
    assert json.loads((run_copy / "run.json").read_text())["config"]["train"]["steps"] == 60


def test_rerun_with_different_model_refuses(run_copy):
    before = snapshot(run_copy)
    rc, _, err = run_cli(
        "train", *TINY, "--set", "model.num_layers=4", "--workdir", run_copy.parent
    )
    assert_error(rc, err, 2, "different config", "model.num_layers")
    assert snapshot(run_copy) == before  # checkpoints, run.json, metrics untouched


def test_run_of_the_old_coupling_orientation_is_refused(run_copy):
    """A run.json without params_format (written before the affine couplings changed
    orientation) is neither resumed nor loaded: its params would mean another model."""
    info_path = run_copy / "run.json"
    info = json.loads(info_path.read_text())
    assert info["params_format"] == 5
    del info["params_format"]
    info_path.write_text(json.dumps(info))
    before = snapshot(run_copy)
    rc, _, err = run_cli("train", *TINY, "--set", "train.steps=60", "--workdir", run_copy.parent)
    assert_error(rc, err, 2, "params format 1", "Retrain")
    rc, _, err = run_cli("eval", run_copy)
    assert_error(rc, err, 2, "params format 1")
    assert snapshot(run_copy) == before


def test_rerun_with_fewer_steps_refuses(run_copy):
    before = snapshot(run_copy)
    rc, _, err = run_cli("train", *TINY, "--set", "train.steps=40", "--workdir", run_copy.parent)
    assert_error(rc, err, 2, "already holds 50 training steps", "train.steps=40")
    assert snapshot(run_copy) == before


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["train", "no_such_experiment"], ["unknown experiment", "no_such_experiment"]),
        (["train", "--set", "train.steps"], ["bad override", "key=value"]),
        (["train", "--set", "train.nope=1"], ["unknown key", "train.nope"]),
        (["train", "--set", "nope.steps=1"], ["no config section", "nope"]),
        (["train", "--set", "train.steps=abc"], ["train.steps", "an integer"]),
        (["train", "--set", "train.steps=-5"], ["train.steps", ">= 0"]),
        (["train", "--bogus"], ["unrecognized arguments", "--bogus"]),
        (["frobnicate"], ["invalid choice", "frobnicate"]),
    ],
    ids=[
        "unknown-experiment",
        "no-equals",
        "unknown-key",
        "unknown-section",
        "wrong-type",
        "negative-steps",
        "unknown-flag",
        "unknown-command",
    ],
)
def test_usage_errors(tmp_path, argv, needles):
    rc, out, err = run_cli(*argv, "--workdir", tmp_path) if argv[0] == "train" else run_cli(*argv)
    assert_error(rc, err, 2, *needles)
    assert err.count("\n") == 1  # nothing but the error line (training never started)
    assert out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_missing_run_dir(tmp_path, moons_file, command):
    extra = ["--out", tmp_path / "x.npy"] if command == "sample" else ["--data", moons_file]
    rc, _, err = run_cli(command, tmp_path / "nope", *extra)
    assert_error(rc, err, 2, "does not exist", "nope")


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_run_without_checkpoints(run_copy, tmp_path, moons_file, command):
    shutil.rmtree(run_copy / "checkpoints")
    extra = ["--out", tmp_path / "x.npy"] if command == "sample" else ["--data", moons_file]
    rc, _, err = run_cli(command, run_copy, *extra)
    assert_error(rc, err, 2, "no checkpoint")
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_run_with_corrupt_checkpoint(run_copy, tmp_path, moons_file, command):
    """Every file of the only checkpoint truncated to half its size."""
    for root, _, files in os.walk(run_copy / "checkpoints" / "50"):
        for f in files:
            path = os.path.join(root, f)
            os.truncate(path, os.path.getsize(path) // 2)
    extra = ["--out", tmp_path / "x.npy"] if command == "sample" else ["--data", moons_file]
    with warnings.catch_warnings(record=True):  # the "skipping corrupt step" warning
        warnings.simplefilter("always")
        rc, _, err = run_cli(command, run_copy, *extra)
    assert_error(rc, err, 2, "corrupt", "step")
    assert not (tmp_path / "x.npy").exists()


def test_run_without_run_json(run_copy, tmp_path):
    (run_copy / "run.json").unlink()
    rc, _, err = run_cli("sample", run_copy, "--out", tmp_path / "x.npy")
    assert_error(rc, err, 2, "run.json")


def test_sample_bad_count(trained, tmp_path):
    rc, _, err = run_cli("sample", trained[3], "-n", 0, "--out", tmp_path / "x.npy")
    assert_error(rc, err, 2, "-n must be >= 1")


# --------------------------------------------------------------------------- eval data errors


def _bad_data(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "missing.npy"
    path = tmp_path / f"{kind}.npy"
    if kind == "wrong-shape":
        np.save(path, np.zeros((10, 3), np.float32))
    else:
        x = np.zeros((10, 2), np.float32)
        x[4, 1] = np.nan
        np.save(path, x)
    return path


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("wrong-shape", ["expected shape (n, 2)", "(10, 3)"]),
        ("nan", ["non-finite", "first bad row index 4"]),
        ("missing", ["no such file", "missing.npy"]),
    ],
)
def test_eval_bad_data(trained, tmp_path, kind, needles):
    rc, out, err = run_cli("eval", trained[3], "--data", _bad_data(tmp_path, kind))
    assert_error(rc, err, 2, *needles)
    assert out == ""


# --------------------------------------------------------------------------- training failures


def test_nan_during_training_exits_1(tmp_path):
    """Unstandardised data of size 1e20: the base log-density overflows float32 at step 0."""
    rng = np.random.default_rng(0)
    path = tmp_path / "huge.npy"
    np.save(path, (1e20 * (1 + 0.1 * rng.standard_normal((300, 2)))).astype(np.float32))
    rc, out, err = run_cli(
        "train",
        *TINY,
        "--set",
        "data.name=file",
        "--set",
        f"data.path={path}",
        "--set",
        "data.standardize=False",
        "--set",
        "train.batch_size=32",
        "--set",
        "train.steps=20",
        "--workdir",
        tmp_path / "runs",
    )
    assert_error(rc, err, 1, "non-finite loss", "at step 0", "no checkpoint was written")
    assert out == ""
    assert ckpt.all_steps(tmp_path / "runs" / NAME / "checkpoints") == []


def test_keyboard_interrupt_exits_130(tmp_path, monkeypatch):
    import flowzoo.zoo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(flowzoo.zoo, "train_and_evaluate", interrupted)
    rc, _, err = run_cli("train", *TINY, "--workdir", tmp_path)
    assert rc == 130
    assert err.strip().splitlines()[-1].startswith("flowzoo: interrupted")


# --------------------------------------------------------------------------- real executable


@pytest.mark.slow
def test_executable_error_is_one_line(tmp_path):
    """The installed ``flowzoo`` script: exit 2 and one stderr line, no traceback."""
    exe = shutil.which("flowzoo")
    cmd = [exe] if exe else [sys.executable, "-m", "flowzoo.cli"]
    proc = subprocess.run(
        [*cmd, "train", "--set", "train.nope=1", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("flowzoo: error: ") and "train.nope" in lines[0]
    assert proc.stdout == ""


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_concurrent_train_is_refused_and_the_first_run_is_undisturbed(run_copy, lock_holder):
    """A ``flowzoo train`` of a run directory whose lock another process holds (a trainer)
    exits 2 with one line naming the holder's host and PID, and writes nothing: every file
    of the run, checkpoints and logs included, is byte for byte as it was."""
    holder = lock_holder(run_copy)
    before = _files(run_copy)
    argv = ["train", *TINY, "--set", "train.steps=80", "--workdir", run_copy.parent]
    rc, _, err = run_cli(*argv)
    assert_error(rc, err, 2, f"PID {holder.pid}", socket.gethostname(), "being trained")
    assert holder.poll() is None
    assert _files(run_copy) == before


# --------------------------------------------------------------------------- reliability


def _strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity (not JSON)."""

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--temperature", "nan"], "--temperature"),
        (["--temperature", "inf"], "--temperature"),
        (["--temperature", "-1"], "--temperature"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**64)], "--seed"),
        (["-n", "0"], "-n"),
    ],
)
def test_sample_refuses_bad_numbers(trained, tmp_path, argv, needle):
    out = tmp_path / "s.npy"
    rc, _, err = run_cli("sample", trained[3], "--out", out, *argv)
    assert_error(rc, err, 2, needle)
    assert not out.exists()


def test_sample_out_paths(trained, tmp_path):
    """A directory gets samples.npy; a missing extension is added and reported; the message
    names the file actually written; an unwritable path is one line naming it."""
    (tmp_path / "dir").mkdir()
    rc, _, err = run_cli("sample", trained[3], "-n", 7, "--out", tmp_path / "dir")
    assert rc == 0 and str(tmp_path / "dir" / "samples.npy") in err
    assert np.load(tmp_path / "dir" / "samples.npy").shape == (7, 2)
    rc, _, err = run_cli("sample", trained[3], "-n", 7, "--out", f"{tmp_path}/new/")
    assert rc == 0 and np.load(tmp_path / "new" / "samples.npy").shape == (7, 2)
    rc, _, err = run_cli("sample", trained[3], "-n", 7, "--out", tmp_path / "noext")
    assert rc == 0 and ".npy added" in err and f"to {tmp_path / 'noext.npy'}" in err
    assert np.load(tmp_path / "noext.npy").shape == (7, 2)
    assert not (tmp_path / "noext").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc, _, err = run_cli("sample", trained[3], "-n", 7, "--out", blocker / "x.npy")
    assert_error(rc, err, 2, f"cannot write {blocker / 'x.npy'}")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no debris


def test_eval_of_infinite_nll_is_json_null(trained, tmp_path):
    path = tmp_path / "far.npy"
    np.save(path, np.full((4, 2), 1e30, np.float32))
    rc, out, err = run_cli("eval", trained[3], "--data", path)
    assert rc == 0, err
    result = _strict_json(out)
    assert result["nll"] is None and result["nll_standardized"] is None and result["n"] == 4
    assert "not finite" in err and "null" in err


def test_unexpected_error_is_one_line_with_a_log(tmp_path, monkeypatch):
    import flowzoo.zoo

    def broken(*args, **kwargs):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(flowzoo.zoo, "train_and_evaluate", broken)
    rc, _, err = run_cli("train", *TINY, "--workdir", tmp_path)
    assert rc == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("flowzoo: error: unexpected RuntimeError: something broke")
    log = line.split("full traceback in ")[1].rstrip(")")
    with open(log) as f:
        text = f.read()
    os.unlink(log)
    assert "Traceback" in text and "RuntimeError: something" in text


def test_run_json_without_data_is_an_error_line(run_copy, tmp_path, moons_file):
    info = json.loads((run_copy / "run.json").read_text())
    del info["config"]["data"]
    (run_copy / "run.json").write_text(json.dumps(info))
    for argv in (["sample", run_copy, "--out", tmp_path / "x.npy"], ["eval", run_copy]):
        extra = ["--data", moons_file] if argv[0] == "eval" else []
        rc, _, err = run_cli(*argv, *extra)
        assert_error(rc, err, 2, "run.json", "data")


def test_experiment_code_errors_and_shadowing(tmp_path, monkeypatch):
    """An experiment whose get_config() raises is one error line; a ./experiments file of a
    built-in name is used, with a notice naming both files; the file run is printed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raises.py").write_text("def get_config():\n    raise RuntimeError('boom')\n")
    rc, _, err = run_cli("train", tmp_path / "raises.py", "--print-config")
    assert rc == 2 and "RuntimeError: boom" in err and "Traceback" not in err
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "fm_moons.py").write_text(
        "from flowzoo.zoo import default_config\n"
        "def get_config():\n    c = default_config()\n    c['name'] = 'mine'\n    return c\n"
    )
    rc, out, err = run_cli("train", "fm_moons", "--print-config")
    assert rc == 0 and json.loads(out)["name"] == "mine"
    assert f"running {tmp_path / 'experiments' / 'fm_moons.py'}" in err
    assert "shadows the built-in experiment" in err and "experiments/fm_moons.py" in err


@pytest.mark.slow
def test_failed_final_evaluation_keeps_the_trained_run(tmp_path, monkeypatch):
    """The final evaluation raises after training: exit 1, the final checkpoint is on
    disk, the message says how to evaluate again; rerunning the same command does so
    without training further and logs no step twice."""
    import flowzoo.zoo._run as run_module

    real = run_module._summarise
    monkeypatch.setattr(
        run_module, "_summarise", lambda *a, **k: (_ for _ in ()).throw(MemoryError("plots"))
    )
    argv = ["train", *TINY, "--set", "train.steps=20", "--workdir", tmp_path]
    rc, out, err = run_cli(*argv)
    assert_error(rc, err, 1, "checkpoint (step 20) is saved", "flowzoo eval", "MemoryError")
    assert ckpt.latest_step(tmp_path / NAME / "checkpoints") == 20 and out == ""
    log = (tmp_path / NAME / "metrics.jsonl").read_text()
    monkeypatch.setattr(run_module, "_summarise", real)
    rc, out, err = run_cli(*argv)
    assert rc == 0, err
    assert json.loads(out)["steps"] == 20 and json.loads(out)["test_nll"] is not None
    assert (tmp_path / NAME / "metrics.jsonl").read_text() == log


@pytest.mark.slow
def test_resume_logs_each_step_once(tmp_path):
    """Records past the restored checkpoint are dropped on resume (here: a log that ran on
    to step 40 although the newest checkpoint is step 20), and retraining after deleting
    checkpoints/ starts a fresh log."""
    argv = ["train", *TINY, "--set", "train.steps=40", "--set", "train.steps_per_call=10"]
    argv += ["--set", "train.checkpoint_every=20", "--set", "train.eval_every=20"]
    rc, _, err = run_cli(*argv, "--workdir", tmp_path)
    assert rc == 0, err
    run_dir = tmp_path / NAME
    shutil.rmtree(run_dir / "checkpoints" / "40")  # as if killed between two checkpoints
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 41, "loss"')  # and in the middle of a write
    rc, _, err = run_cli(*argv, "--workdir", tmp_path)
    assert rc == 0, err
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "loss" in r]
    eval_steps = [r["step"] for r in records if "eval/test_nll" in r]
    assert train_steps == [10, 20, 30, 40] and eval_steps == [20, 40]
    shutil.rmtree(run_dir / "checkpoints")
    rc, _, err = run_cli(*argv, "--set", "train.steps=20", "--workdir", tmp_path)
    assert rc == 0, err
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [10, 20]


def test_documented_resumable_keys_match_the_code():
    """docs/cli.md lists exactly the keys that may change on resume."""
    import re
    from pathlib import Path

    from flowzoo.zoo import _run

    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    section = text.split("## Resuming", 1)[1].split("\n## ", 1)[0]
    listed = section.split("differences allowed only in", 1)[1].split(")", 1)[0]
    documented = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", listed))
    assert documented == {f"{a}.{b}" for a, b in _run._RESUMABLE}


@pytest.mark.slow
def test_checkpoint_fallback_prints_no_orbax_noise(tmp_path):
    """The newest checkpoint's array data is corrupt: the real executable falls back to the
    older one with a single warning line; none of orbax's abandoned-coroutine reports
    (pages of tracebacks, printed when they are collected, often at exit: about 1900 lines
    for this corruption before the filter) reach stderr."""
    # the default model: with TINY's small arrays orbax reads this corruption without error
    argv = ["train", "--no-progress", "--set", "train.steps=20"]
    for item in ("checkpoint_every=10", "eval_every=0"):
        argv += ["--set", f"train.{item}"]
    for item in ("data.n_train=2000", "data.n_test=500", "plot.n_samples=500", "plot.grid=40"):
        argv += ["--set", item]
    rc, _, err = run_cli(*argv, "--workdir", tmp_path)
    assert rc == 0, err
    run_dir = tmp_path / NAME
    step20 = (run_dir / "checkpoints" / "20").rglob("*")
    data_files = [p for p in step20 if "ocdbt.process_0" in str(p) and p.is_file()]
    assert data_files
    for path in data_files:
        path.write_bytes(os.urandom(50))
    exe = shutil.which("flowzoo")
    cmd = [exe] if exe else [sys.executable, "-m", "flowzoo.cli"]
    out = tmp_path / "s.npy"
    proc = subprocess.run(
        [*cmd, "sample", str(run_dir), "-n", "5", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("flowzoo: ") for line in lines), proc.stderr[:3000]
    assert len(lines) == 2, proc.stderr[:3000]
    assert "step 20" in lines[0] and "trying step 10" in lines[0], lines[0]
    assert np.load(out).shape == (5, 2)


def _tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` read from TensorBoard event files (TFRecord framing:
    u64 length, u32 crc, an ``Event`` protobuf, u32 crc), with tensorboardX's own protos."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


@pytest.mark.slow
def test_tensorboard_events_and_plot(tmp_path):
    """``train.tensorboard=true`` writes the logged metrics as TensorBoard scalars (the same
    steps and values as metrics.jsonl); ``flowzoo plot`` draws the loss and eval curves."""
    argv = ["train", *TINY, "--set", "train.steps=20", "--set", "train.steps_per_call=5"]
    argv += ["--set", "train.eval_every=10", "--set", "train.tensorboard=true"]
    rc, _, err = run_cli(*argv, "--workdir", tmp_path)
    assert rc == 0, err
    run_dir = tmp_path / NAME
    scalars = _tensorboard_scalars(run_dir / "tensorboard")
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    want_loss = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [s for s, _ in scalars["loss"]] == [5, 10, 15, 20]
    np.testing.assert_allclose([v for _, v in scalars["loss"]], [v for _, v in want_loss])
    assert [s for s, _ in scalars["eval/test_nll"]] == [10, 20]

    rc, _, err = run_cli("plot", run_dir)
    assert rc == 0 and "loss, eval/test_nll curves" in err, err
    png = (run_dir / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    rc, _, err = run_cli("plot", tmp_path / "nowhere")
    assert_error(rc, err, 2, "no metrics.jsonl")
