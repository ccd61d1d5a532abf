"""benchmarks/unet_cores.py: a pinned child per core count, its programs, its docs block.

The script times the ``fm_cifar10`` UNet (and torchcfm's, where installed) in one child
process per core count, each pinned to that many CPUs before JAX starts. Here: a one-core
run of the one-level UNet without torch writes the JSON the docs render, the child really
ran on one CPU, the three elementwise programs compute what their names say, and bad core
counts are refused.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest


@pytest.fixture(scope="module")
def unet_cores(load_benchmark):
    return load_benchmark("unet_cores")


@pytest.mark.slow
def test_one_core_run_without_torch(unet_cores, tmp_path):
    out = tmp_path / "unet_cores.json"
    args = ["--tiny", "--no-torch", "--batch", "2", "--cores", "1", "--repeats", "2"]
    unet_cores.main([*args, "--out", str(out)])
    d = json.loads(out.read_text())
    (run,) = d["runs"]
    assert run["cores"] == 1 and len(run["cpus"]) == 1 and run["torch_threads"] is None
    assert set(run["network"]) == {"flowzoo fwd+bwd", "flowzoo forward"}
    for case in run["network"].values():
        assert case["step_s"]["median"] > 0 and case["cpu_s"]["median"] > 0
        # one CPU: the process cannot be busier than one core (timer granularity aside)
        assert case["cpu_s"]["median"] <= 1.1 * case["step_s"]["median"]
    assert run["torch_over_flowzoo"] == {}
    assert run["transposes"]["shape"] == [2, 32, 32, unet_cores.QUICK_CHANNELS]
    assert list(run["transposes"]["rounds"]) == list(unet_cores.PROGRAMS)
    assert d["config"]["quick"] and d["env"]["load_average"]
    text = unet_cores.render(d)
    assert text.count("\n|---") == 2 and "| 1 | fwd+bwd |" in text
    assert "| silu + transpose |" in text


def test_the_programs_are_silu_and_the_move_to_chwn(unet_cores):
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 3)).astype(np.float32)
    silu = x / (1.0 + np.exp(-x))
    chwn = np.transpose(silu, (3, 1, 2, 0))
    got = {name: np.asarray(fn(x)) for name, fn in unet_cores.PROGRAMS.items()}
    np.testing.assert_allclose(got["silu"], silu, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got["transpose"], np.transpose(x, (3, 1, 2, 0)))
    np.testing.assert_allclose(got["silu + transpose"], chwn, rtol=1e-6, atol=1e-7)


def test_bad_core_counts_are_refused(unet_cores):
    with pytest.raises(SystemExit):
        unet_cores.parse(["--cores", "0"])
    too_many = len(os.sched_getaffinity(0)) + 1
    with pytest.raises(ValueError, match=f"--cores {too_many}"):
        unet_cores.pin(too_many)
