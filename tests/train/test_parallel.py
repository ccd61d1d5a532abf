"""Data-parallel and multi-process training, each in fresh Python subprocesses.

The device count (``XLA_FLAGS=--xla_force_host_platform_device_count=N``) must be set
before JAX starts, so these tests run ``tests/train/parallel_worker.py`` in subprocesses
and leave this process's single CPU device alone.

Tolerances: the multi-device runs split the batch mean into per-device partial sums that
XLA adds in a different order, so results match the one-device run up to float32
reassociation. Measured (2-core CPU): one step, max |difference| of all state leaves
3.7e-9 (sharded jit and pmap, 8 devices; params of magnitude ~2); six fit steps 1.2e-7;
two processes x two devices, eight steps with a resume, ~1e-7. Asserted: 1e-6 after one
step, 1e-5 after several.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

WORKER = Path(__file__).with_name("parallel_worker.py")
ROOT = Path(__file__).resolve().parents[2]


LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
"""XLA:CPU's elemental emitters (the suite's default, tests/conftest.py): the small programs
of these workers compile in about 0.6x the time of the default fusion emitters. The same
HLO, so results agree to float32 rounding, but not bit for bit across programs."""
EXACT_EMITTERS = "--xla_cpu_use_fusion_emitters=true"
"""XLA:CPU's default fusion emitters, as users run: for workers whose results are compared
bit for bit with a run of another program (another steps_per_call, a resumed run)."""


def _env(devices: int, legacy_emitters: bool = False, exact: bool = False) -> dict[str, str]:
    """The environment of a worker on ``devices`` CPU devices, with this suite's compile
    flags (conftest), plus :data:`LEGACY_EMITTERS` when asked (unless the suite's flags
    already choose the emitters), or with :data:`EXACT_EMITTERS` instead of the suite's
    choice when ``exact``."""
    env = dict(os.environ)
    flags = os.environ.get("XLA_FLAGS", "")  # keep the suite's compile flags (conftest)
    if exact:
        kept = [f for f in flags.split() if "fusion_emitters" not in f]
        flags = " ".join([*kept, EXACT_EMITTERS])
    elif legacy_emitters and "fusion_emitters" not in flags:
        flags += f" {LEGACY_EMITTERS}"
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"worker printed no JSON:\n{stdout[-2000:]}"
    return json.loads(lines[-1])


def _worker(*args, devices: int = 1, timeout: float = 240) -> dict:
    proc = subprocess.run(
        [sys.executable, str(WORKER), *map(str, args)],
        env=_env(devices, legacy_emitters=True),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return _last_json(proc.stdout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _load_worker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("flowzoo_parallel_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_eight_devices_match_one_device():
    """One train step (with EMA) on 8 simulated CPU devices, as sharded jit
    (NamedSharding in/out shardings) and as pmap (lax.pmean of gradients), gives the
    one-device state within 1e-6; fit(parallel=DataParallel("auto")) for 6 steps within
    1e-5; params stay replicated; a global batch of 60 is refused with a clear message."""
    out = _worker("devices", devices=8)
    assert out["device_count"] == 8
    assert out["params_replicated"] and out["params_sharding"] == "P()"
    assert out["sharded_vs_one"] <= 1e-6
    assert out["pmap_vs_one"] <= 1e-6
    assert out["pmap_copies"] == 0.0  # every device holds the same state
    assert max(out["loss"]) - min(out["loss"]) <= 1e-6
    assert out["fit_steps"] == [6, 6]
    assert out["fit_mesh_vs_one"] <= 1e-5
    for msg in (out["bad_batch"], out["bad_fit"]):
        assert msg is not None and "60" in msg and "8 devices" in msg


@pytest.mark.slow
def test_two_processes_match_single_process(tmp_path):
    """Two real processes (jax.distributed.initialize on localhost, gloo collectives,
    two CPU devices each) train 6 steps data-parallel with checkpoints every 3, resume to
    8: process 0 alone logs, and the final state matches a single-process run (1e-5)."""
    port, workdir, out = _free_port(), tmp_path / "run", tmp_path / "final.npz"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "dist", f"localhost:{port}", "2", str(i), workdir, out],
            env=_env(2, legacy_emitters=True),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(2)
    ]
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=240)
            assert p.returncode == 0, stderr[-4000:]
            results.append(_last_json(stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [r["process"] for r in results] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 4 and r["step"] == 8 for r in results)
    assert [r["history"] for r in results] == [1, 0]  # only process 0 keeps/logs records
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6, 8]  # one writer: no duplicate lines
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [3, 6, 8]

    w = _load_worker()
    loss_fn, opt, params, batch_fn = w.problem()
    ref = w.train.fit(
        loss_fn,
        opt,
        params,
        batch_fn,
        key=jax.random.key(3),
        num_steps=8,
        steps_per_call=4,
        progress=False,
        ema_decay=0.9,
    )
    got = np.load(out)
    leaves = jax.tree.leaves(ref.state)
    assert len(got.files) == len(leaves)
    for i, leaf in enumerate(leaves):
        np.testing.assert_allclose(got[f"arr_{i}"], np.asarray(leaf), rtol=0, atol=1e-5)


def test_batch_must_divide_devices_in_step(key):
    """In this (one-device) process the mesh has one device: everything divides; a mesh
    without a ``data`` axis is refused."""
    from jax.sharding import Mesh

    from flowzoo import train

    with pytest.raises(ValueError, match="axis named 'data'"):
        train.batch_sharding(Mesh(np.asarray(jax.devices()), ("model",)))
    train.check_batch_divides(7, train.data_mesh())
