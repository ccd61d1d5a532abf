"""FSDP on a 2-D ``("data", "fsdp")`` mesh and checkpoints that restore onto any mesh.

The 8-device cases of the ``fit`` API run in one subprocess (``tests/train/fsdp_worker.py``,
8 simulated CPU devices); the kill -9 test runs ``flowzoo train`` on 8 devices, kills it
and resumes it on 4; this process (one device) resumes checkpoints written on 8 devices,
loads and samples runs, and trains the one-device references. References are independent
of the code under test where they can be: per-device bytes from the leaf shapes by the
ZeRO-3 rule re-implemented here, losses and parameters from runs on one device or on
another mesh.

Tolerances: FSDP reorders the cross-device sums of the gradient, so losses match the
one-device run up to float32 reassociation (measured: 1.1e-7 relative over 20 steps;
asserted 1e-5). Parameters after a resume on another mesh: asserted 1e-4 relative, as
the Euclidean norm of the difference of all parameters over theirs (Adam turns the
reassociation of a gradient near zero into differences of up to 1.6e-4 of the largest
entry of the small output kernels: a per-leaf largest-entry measure is not an error
bound here).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsdp_worker
import jax
import numpy as np
import pytest
from test_parallel import ROOT, _env, _last_json

from flowzoo import checkpoint as ckpt
from flowzoo import cli, train, zoo

WORKER = Path(__file__).with_name("fsdp_worker.py")
P = jax.sharding.PartitionSpec


def _split_dim(shape: tuple[int, ...], f: int) -> int | None:
    """The ZeRO-3 rule: the dimension a leaf is split along over ``f`` devices, or None."""
    if f == 1 or math.prod(shape) < 2**16:
        return None
    dims = [i for i, n in enumerate(shape) if n % f == 0]
    return max(dims, key=lambda i: (shape[i], -i)) if dims else None


def _device_bytes(arrays, f: int) -> int:
    """Bytes one device holds of ``arrays`` (anything with shape and dtype) split ``f`` ways."""
    total = 0
    for x in arrays:
        n = math.prod(x.shape) * np.dtype(x.dtype).itemsize
        total += n if _split_dim(tuple(x.shape), f) is None else n // f
    return total


def _rel(got, want) -> float:
    """``|got - want| / |want|`` over all parameters together (Euclidean norms)."""
    pairs = list(zip(got, want, strict=True))
    diff = sum(float(np.sum((np.float64(a) - b) ** 2)) for a, b in pairs)
    norm = sum(float(np.sum(np.float64(b) ** 2)) for _, b in pairs)
    return math.sqrt(diff / norm)


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(root)],
        env=_env(8, legacy_emitters=True),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root, _last_json(proc.stdout)


@pytest.mark.slow
def test_fsdp_splits_a_model_eight_ways_and_trains_like_one_device(eight):
    """A 1.6M-parameter RealNVP: with FSDP on 8 devices each holds the ZeRO-3 share of
    params and Adam state (<= 1.3/8 of what one device holds, i.e. of the replicated
    bytes) and the first 20 losses equal the one-device run's (1e-5 relative)."""
    big = eight[1]["big"]
    assert eight[1]["device_count"] == 8
    shapes = [tuple(s) for s in big["shapes"]]
    n = sum(math.prod(s) for s in shapes)
    assert n >= 1_500_000
    assert sum(math.prod(s) for s in shapes if _split_dim(s, 8) is not None) >= 0.99 * n
    one, run = big["one"], big["fsdp_1x8"]
    assert one["device_bytes"] == {"params": 4 * n, "opt_state": 8 * n + 4, "ema_params": 0}
    assert run["mesh_shape"] == {"data": 1, "fsdp": 8}
    want = [
        str(P()) if (d := _split_dim(s, 8)) is None else str(P(*[None] * d, "fsdp")) for s in shapes
    ]
    assert run["specs"] == want
    params = _device_bytes([np.empty(s, np.float32) for s in shapes], 8)
    # Adam: mu and nu laid out like the params, and its int32 step count replicated
    assert run["device_bytes"] == {"params": params, "opt_state": 2 * params + 4, "ema_params": 0}
    held = sum(run["device_bytes"].values()) / sum(one["device_bytes"].values())
    assert held <= 1.3 / 8, held
    losses = np.asarray(run["losses"])
    assert losses.shape == (20,) and np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, one["losses"], rtol=1e-5, atol=0)


@pytest.mark.slow
def test_fsdp_2x4_losses_and_resume_on_8x1_and_on_one_device(eight):
    """fit with FSDP on a 2x4 mesh gives the one-device run's losses (1e-5) and checkpoints
    at step 4; resumed replicated on an 8x1 mesh, and resumed on this one-device process, it
    ends within 1e-4 of the uninterrupted one-device run. make_train_step on an
    FSDP-placed state keeps its layout and steps as on one device (1e-6)."""
    root, out = eight
    c = out["chain"]
    ref = train.fit(*fsdp_worker.moons(), num_steps=8, **fsdp_worker.MOONS)
    want = fsdp_worker.leaves(ref.state.params)
    ref_losses = [r["loss"] for r in ref.history]
    np.testing.assert_allclose(c["at_4_losses"], ref_losses[:4], rtol=1e-5, atol=0)
    assert c["at_4_mesh"] == {"data": 2, "fsdp": 4}
    assert str(P("fsdp")) in c["at_4_specs"]  # the 512x512 kernels are split
    assert c["resumed_step"] == 8 and c["resumed_mesh"] == {"data": 8, "fsdp": 1}
    assert set(c["resumed_specs"]) == {str(P())}
    resumed = np.load(root / "resumed.npz")
    assert (rel := _rel([resumed[f"arr_{i}"] for i in range(len(resumed.files))], want)) <= 1e-4, (
        rel
    )

    loss_fn, opt, params, batch_fn = fsdp_worker.moons()  # make_train_step keeps FSDP
    key = fsdp_worker.MOONS["key"]
    state = train.init_train_state(params, opt)
    stepped, metrics = train.make_train_step(loss_fn, opt)(state, key, batch_fn(key, 0))
    np.testing.assert_allclose(c["step_loss"], float(metrics["loss"]), rtol=1e-6)
    assert c["step_specs"][1] == c["step_specs"][0] and str(P("fsdp")) in c["step_specs"][0]
    got = np.load(root / "stepped.npz")
    got = [got[f"arr_{i}"] for i in range(len(got.files))]
    assert (rel := _rel(got, fsdp_worker.leaves(stepped.params))) <= 1e-6, rel

    checkpointing = train.Checkpointing(root / "chain_at_4")
    one = train.fit(
        *fsdp_worker.moons(), num_steps=8, checkpointing=checkpointing, **fsdp_worker.MOONS
    )
    assert [r["step"] for r in one.history] == [5, 6, 7, 8]  # resumed at 4
    assert one.mesh_shape == {}
    assert (rel := _rel(fsdp_worker.leaves(one.state.params), want)) <= 1e-4, rel


def _ckpt_steps(run: Path) -> list[int]:
    d = run / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


@pytest.mark.slow
def test_cli_killed_on_eight_devices_resumes_on_four(tmp_path):
    """``flowzoo train --set train.param_sharding=fsdp`` on 8 devices, SIGKILLed after its
    first checkpoint, resumes with FSDP on 4 devices and ends within 1e-4 of the
    uninterrupted run (trained here on one device); summary.json records the mesh and the
    per-device bytes; ``flowzoo sample`` of the run works on one device."""
    sets = [a for kv in [*fsdp_worker.CONFIG, "train.param_sharding=fsdp"] for a in ("--set", kv)]
    cmd = [sys.executable, "-m", "flowzoo.cli", "train", "moons_realnvp", *sets]
    cmd += ["--no-progress", "--workdir", str(tmp_path)]
    run = tmp_path / "moons_realnvp"
    slow = subprocess.Popen(
        cmd, env=_env(8, True), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 180
        while not _ckpt_steps(run):
            assert slow.poll() is None, slow.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.02)
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
        slow.stderr.close()
    assert slow.returncode == -signal.SIGKILL
    assert 2 <= max(_ckpt_steps(run)) < 8

    proc = subprocess.run(
        cmd, env=_env(4, True), capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    loaded = zoo.load_run(run)  # onto this process's one device
    assert loaded.step == summary["steps"] == 8
    assert summary["mesh_shape"] == [1, 4] and summary["param_sharding"] == "fsdp"
    params = jax.tree.leaves(loaded.params)
    opt_state = jax.tree.leaves(zoo.build_optimizer(loaded.config).init(loaded.params))
    assert summary["device_bytes"] == {
        "params": _device_bytes(params, 4),
        "opt_state": _device_bytes(opt_state, 4),
        "ema_params": 0,
    }
    assert _device_bytes(params, 4) < _device_bytes(params, 1)  # some leaves are split
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6, 8]  # each step once

    uninterrupted = zoo.train_and_evaluate(fsdp_worker.config(), tmp_path / "ref", progress=False)
    assert uninterrupted["mesh_shape"] == [1, 1]
    assert uninterrupted["device_bytes"]["params"] == _device_bytes(params, 1)
    ref = fsdp_worker.leaves(zoo.load_run(tmp_path / "ref").params)
    assert (rel := _rel(fsdp_worker.leaves(loaded.params), ref)) <= 1e-4, rel

    assert cli.main(["sample", str(run), "--out", str(tmp_path / "s.npy"), "-n", "16"]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (16, 2) and np.all(np.isfinite(samples))


def test_old_layout_checkpoint_from_eight_devices_restores_on_one(eight):
    """Per-layer tuples saved split over 8 devices restore, stacked, on one device."""
    root, out = eight
    assert out["old_spec"] == str(P("fsdp"))
    target = {"kernel": np.zeros((2, 512, 256), np.float32)}
    got, step = ckpt.restore(root / "old", target)
    base = np.arange(512 * 256, dtype=np.float32).reshape(512, 256)
    assert step == 0
    np.testing.assert_array_equal(np.asarray(got["kernel"]), np.stack([base, 2 * base]))


def test_mesh_and_param_sharding_errors(tmp_path):
    """One-line errors: a mesh shape that does not hold the devices, an unknown layout,
    FSDP without a mesh or on a mesh without an ``fsdp`` axis, a bad ``train.mesh_shape``."""
    with pytest.raises(ValueError, match=r"holds 4 devices but there are 1"):
        train.make_mesh((2, 2))
    with pytest.raises(ValueError, match="param_sharding must be one of"):
        train.make_mesh(param_sharding="zero3")
    mesh = train.make_mesh()
    assert mesh.axis_names == ("data", "fsdp") and dict(mesh.shape) == {"data": 1, "fsdp": 1}
    with pytest.raises(ValueError, match="make_mesh"):
        train.param_shardings({"w": np.zeros((4, 4))}, train.data_mesh(), "fsdp")
    w = np.zeros((512, 256), np.float32)
    fit = dict(key=jax.random.key(0), num_steps=1, progress=False)
    with pytest.raises(ValueError, match="needs a mesh"):
        train.fit(None, None, w, None, parallel=train.DataParallel(param_sharding="fsdp"), **fit)
    with pytest.raises(zoo.ConfigError, match=r"train.mesh_shape=\[3\]"):
        zoo.validate_config(fsdp_worker.config("train.mesh_shape=[3]"))
    with pytest.raises(zoo.ConfigError, match=r"train.mesh_shape=\[2, 2\].*there are 1"):
        zoo.train_and_evaluate(fsdp_worker.config("train.mesh_shape=[2,2]"), tmp_path)
