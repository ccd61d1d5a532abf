"""Fault tolerance of flowzoo.train.fit: kill -9 and resume, SIGTERM, corrupt checkpoints,
NaN data; and mixed precision (bf16 compute, f32 params / log-dets / loss).

The kill -9 test runs ``tests/train/parallel_worker.py fit`` in a subprocess (slowed by a
sleeping eval_fn so it can be killed mid-run), restarts it, and compares the final state
bit for bit with an uninterrupted run of the same worker; all three processes compile with
XLA:CPU's default emitters, as users run (the suite's elemental emitters may round two
programs of one computation differently in the last bit: tests/conftest.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_parallel import ROOT, WORKER, _env, _last_json, _load_worker

from flowzoo import checkpoint as ckpt
from flowzoo import train


@pytest.fixture(scope="module")
def worker():
    return _load_worker()


@pytest.fixture(scope="module")
def problem(worker):
    return worker.problem()


def _fit(problem, **kwargs):
    loss_fn, opt, params, batch_fn = problem
    kw = dict(key=jax.random.key(3), num_steps=12, steps_per_call=4, progress=False)
    kw.update(kwargs)
    return train.fit(loss_fn, opt, kw.pop("params", params), kw.pop("batch_fn", batch_fn), **kw)


@pytest.fixture(scope="module")
def reference(problem, tmp_path_factory):
    """The uninterrupted 12-step run, checkpointed at 4, 8 and 12 (``.workdir``)."""
    workdir = tmp_path_factory.mktemp("reference")
    result = _fit(problem, checkpointing=train.Checkpointing(workdir, every=4, keep=None))
    return types.SimpleNamespace(state=result.state, history=result.history, workdir=workdir)


def _reference_checkpoint(problem, reference, step):
    target = train.init_train_state(problem[2], problem[1])
    return ckpt.restore(reference.workdir / "checkpoints", target, step)[0]


def _equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def _steps(ckpt_dir: Path) -> list[int]:
    """Finished checkpoints, read from the directory listing (no orbax)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())


# --------------------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_kill_9_and_restart_equals_uninterrupted(worker, tmp_path):
    """SIGKILL a training process after its step-4 checkpoint (mid-run, possibly mid-save),
    restart it on the same workdir: the final state equals an uninterrupted run exactly."""
    workdir, out = tmp_path / "run", tmp_path / "final.npz"
    cmd = [sys.executable, str(WORKER), "fit", out, workdir]
    ref_out = tmp_path / "uninterrupted.npz"
    uninterrupted = subprocess.Popen(  # beside the slow run, which mostly sleeps
        [*map(str, cmd[:3]), str(ref_out), str(tmp_path / "ref"), "0"],
        env=_env(1, exact=True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        _kill_and_resume(worker, cmd, workdir, out)
        assert uninterrupted.wait(timeout=240) == 0, uninterrupted.stderr.read().decode()[-3000:]
    finally:
        if uninterrupted.poll() is None:
            uninterrupted.kill()
        uninterrupted.stderr.close()
    got, want = np.load(out), np.load(ref_out)
    assert len(got.files) == len(want.files) > 0
    for name in want.files:
        if jax.default_backend() == "cpu":
            np.testing.assert_array_equal(got[name], want[name])
        else:  # see docs/scaling.md: on an H200 with deterministic ops, 1-ulp differences
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)


def _kill_and_resume(worker, cmd, workdir, out):
    """Start ``cmd`` slowed down, SIGKILL it after its step-4 checkpoint, restart it: each
    step is logged once and the run ends at ``worker.STEPS``."""
    slow = subprocess.Popen(
        [*map(str, cmd), "0.3"],
        env=_env(1, exact=True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(s >= 4 for s in _steps(workdir / "checkpoints")):
            assert slow.poll() is None, slow.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
        slow.stderr.close()
    assert slow.returncode == -signal.SIGKILL
    killed_at = max(_steps(workdir / "checkpoints"))
    assert 4 <= killed_at < worker.STEPS and not out.exists()
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert f'"step": {killed_at},' in "".join(lines)  # logged up to (or past) its checkpoint

    proc = subprocess.run(
        [*map(str, cmd), "0"],
        env=_env(1, exact=True),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _last_json(proc.stdout)["step"] == worker.STEPS
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == worker.STEPS
    # each step once: the killed run's records past its newest checkpoint were dropped.
    # The slow run logged every step (eval_every=1 ends a compiled call at each step), the
    # restarted one (no eval) every checkpoint_every=2 steps.
    train_steps = [r["step"] for r in records if "loss" in r]
    resumed = list(range(killed_at + 2, worker.STEPS + 1, 2))
    assert train_steps == list(range(1, killed_at + 1)) + resumed, (killed_at, train_steps)
    eval_steps = [r["step"] for r in records if "eval_seconds" in r]
    assert eval_steps == sorted(set(eval_steps)) and max(eval_steps) <= killed_at


# --------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
def test_sigterm_saves_and_resumes(problem, reference, tmp_path):
    """SIGTERM arrives during step 4's eval: the next chunk (to step 8) finishes, is
    checkpointed, and fit raises TrainingInterrupted naming SIGTERM and step 8; the
    previous SIGTERM handler is restored; the resumed run equals the uninterrupted one."""
    before = signal.getsignal(signal.SIGTERM)

    def eval_fn(state):
        if int(state.step) == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    with pytest.raises(train.TrainingInterrupted) as info:
        _fit(
            problem,
            checkpointing=train.Checkpointing(tmp_path),
            evaluation=train.Evaluation(eval_fn, 4),
        )
    assert info.value.signum == signal.SIGTERM and info.value.step == 8
    assert "SIGTERM" in str(info.value) and "step 8" in str(info.value)
    assert isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before
    assert ckpt.all_steps(tmp_path / "checkpoints") == [8]
    resumed = _fit(problem, checkpointing=train.Checkpointing(tmp_path))
    _equal(resumed.state, reference.state)


def test_sigterm_in_the_last_chunk_saves_and_skips_the_final_evaluation(problem, tmp_path):
    """SIGTERM during the eval at step 8 of 12: the last chunk still runs (to step 12), is
    checkpointed, and fit stops with TrainingInterrupted at step 12 instead of starting the
    final evaluation; the resumed run goes straight to that evaluation."""
    evaluated = []

    def eval_fn(state):
        evaluated.append(int(state.step))
        if int(state.step) == 8 and len(evaluated) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    with pytest.raises(train.TrainingInterrupted) as info:
        _fit(
            problem,
            checkpointing=train.Checkpointing(tmp_path),
            evaluation=train.Evaluation(eval_fn, 4),
        )
    assert info.value.step == 12 and evaluated == [4, 8]
    assert ckpt.all_steps(tmp_path / "checkpoints") == [12]
    _fit(
        problem,
        checkpointing=train.Checkpointing(tmp_path),
        evaluation=train.Evaluation(eval_fn, 4),
    )
    assert evaluated == [4, 8, 12]


def test_sigterm_during_the_final_evaluation_is_not_held(problem, tmp_path):
    """The final evaluation runs with the caller's SIGTERM handler back in place (here one
    that raises), so a SIGTERM there acts at once; the trained state is saved before it."""

    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop

    def eval_fn(state):
        if int(state.step) == 12:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    before = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(Stop):
            _fit(
                problem,
                checkpointing=train.Checkpointing(tmp_path),
                evaluation=train.Evaluation(eval_fn, 4),
            )
    finally:
        signal.signal(signal.SIGTERM, before)
    assert ckpt.all_steps(tmp_path / "checkpoints") == [12]


# --------------------------------------------------------------------------- corrupt


def test_corrupt_newest_checkpoint_falls_back(problem, reference, tmp_path):
    """Checkpoints 4 and 8 (copied from the reference run); 8's array files are destroyed.
    Resuming warns, restores step 4, moves 8 to checkpoints_corrupt/, re-trains 5..12 and
    equals the reference."""
    (tmp_path / "checkpoints").mkdir()
    for step in (4, 8):
        shutil.copytree(
            reference.workdir / "checkpoints" / str(step), tmp_path / "checkpoints" / str(step)
        )
    state_dir = tmp_path / "checkpoints" / "8" / "state"
    for path in state_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("_"):
            path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"step 8 .*corrupt.*trying step 4"):
        resumed = _fit(problem, checkpointing=train.Checkpointing(tmp_path, every=4))
    _equal(resumed.state, reference.state)
    assert ckpt.all_steps(tmp_path / "checkpoints") == [4, 8, 12]
    assert (tmp_path / "checkpoints_corrupt" / "8").is_dir()
    # the rewritten step 8 is readable again
    target = train.init_train_state(problem[2], problem[1])
    _, step = ckpt.restore(tmp_path / "checkpoints", target, step=8)
    assert step == 8


# --------------------------------------------------------------------------- NaN data


def test_nan_in_data_is_reported_not_trained_on(problem, reference, tmp_path):
    """A NaN in the batch of step 6: fit stops naming step 6, says the batch holds NaN/inf
    and was not trained on; the step-4 checkpoint is the reference's step 4."""
    good = problem[3]

    def batch_fn(key, step):
        batch = good(key, step)
        return jnp.where(step == 6, batch.at[3, 1].set(jnp.nan), batch)

    with pytest.raises(train.NonFiniteError) as info:
        _fit(problem, batch_fn=batch_fn, checkpointing=train.Checkpointing(tmp_path, every=4))
    err = info.value
    assert err.step == 6 and err.data_nonfinite and err.metric == "loss"
    assert "step 6" in str(err) and "NaN/inf" in str(err) and "not trained on" in str(err)
    assert ckpt.all_steps(tmp_path / "checkpoints") == [4]
    target = train.init_train_state(problem[2], problem[1])
    restored, _ = ckpt.restore(tmp_path / "checkpoints", target)
    # its batch_fn makes this run another program than the reference's: equal to float32
    # rounding under the suite's emitters (bit-exact resume is the kill -9 test's)
    _close(restored, _reference_checkpoint(problem, reference, 4))


def test_nan_in_data_with_finite_loss_is_not_trained_on(key):
    """A loss that ignores NaNs (nan_to_num) stays finite on bad data: the step is still
    skipped (state unchanged) and fit names the metric ``data``."""

    def loss_fn(params, key, batch):
        return jnp.sum((params["w"] - jnp.nan_to_num(batch)) ** 2), {}

    opt = optax.sgd(0.1)
    state = train.init_train_state({"w": jnp.ones(3)}, opt)
    new, metrics = train.apply_update(loss_fn, opt, state, key, jnp.array([0.0, jnp.nan, 1.0]))
    assert float(metrics["finite"]) == 0 and float(metrics["data_finite"]) == 0
    _equal(new, state)
    with pytest.raises(train.NonFiniteError) as info:
        train.fit(
            loss_fn,
            opt,
            {"w": jnp.ones(3)},
            lambda k, s: jnp.where(s == 3, jnp.nan, 1.0) * jnp.ones(3),
            key=key,
            num_steps=8,
            steps_per_call=8,
            progress=False,
        )
    assert info.value.metric == "data" and info.value.step == 3 and info.value.data_nonfinite


# --------------------------------------------------------------------------- bf16


def test_bf16_compute_keeps_f32_params_logdets_and_loss(problem, reference):
    """compute_dtype=bfloat16: the conditioner matmuls run in bf16 (every dot_general in the jaxpr, forward and backward),
    params / optimizer state / loss stay float32, the flow's log-density is float32, and
    12 steps land close to the float32 run (|loss difference| < 0.05 nats)."""
    loss_fn, opt, params, batch_fn = problem
    state = train.init_train_state(params, opt)
    batch = batch_fn(jax.random.key(0), 0)
    step = train.make_train_step(loss_fn, opt, compute_dtype="bfloat16", jit=False)
    jaxpr = str(jax.make_jaxpr(step)(state, jax.random.key(0), batch))
    dots = [line for line in jaxpr.splitlines() if "dot_general" in line]
    bf16_dots = [line for line in dots if "bf16[" in line.split("=")[0]]  # bf16 results
    assert dots and len(bf16_dots) == len(dots), dots[:4]  # forward and backward
    new, metrics = jax.eval_shape(step, state, jax.random.key(0), batch)
    assert metrics["loss"].dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new.params))
    model_lp = loss_fn(train.cast_floating(params, jnp.bfloat16), None, batch)[0]
    assert model_lp.dtype == jnp.float32  # the flow's density bookkeeping stays f32

    mixed = _fit(problem, compute_dtype="bfloat16")
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(mixed.state.params))
    assert math.isfinite(mixed.history[-1]["loss"])
    assert abs(mixed.history[-1]["loss"] - reference.history[-1]["loss"]) < 0.05
    with pytest.raises(ValueError, match="loss scaling"):
        _fit(problem, compute_dtype="float16")


def test_checkpoint_quarantine_keeps_files(tmp_path):
    """quarantine moves a step directory aside (numbered if the name is taken)."""
    for name in ("5", "7"):
        (tmp_path / "ck" / name).mkdir(parents=True)
    with pytest.warns(UserWarning, match="moved unreadable checkpoint"):
        moved = ckpt.quarantine(tmp_path / "ck", [7])
    (tmp_path / "ck" / "7").mkdir()
    with pytest.warns(UserWarning):
        moved += ckpt.quarantine(tmp_path / "ck", [7])
    assert [Path(m).name for m in moved] == ["7", "7-1"]
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["5"]
    shutil.rmtree(tmp_path / "ck_corrupt")
