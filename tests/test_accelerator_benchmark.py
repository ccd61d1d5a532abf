"""benchmarks/accelerator.py: a reduced-size run (no torch), its targets and docs block from a
GPU-shaped JSON, and (where torch and torchcfm are installed) the torchcfm contenders with the
same network on both sides."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def accel(load_benchmark):
    return load_benchmark("accelerator")


@pytest.mark.slow
def test_reduced_size_run_without_torch(accel, tmp_path):
    """The whole script at ``--tiny`` size (fm step of a one-level UNet without attention,
    4-step Euler sampling, Glow): every part timed, the fm step's model FLOPs within a few
    percent of XLA's count (which leaves the padded taps out and counts elementwise work in;
    the count of attention's batched products is checked in closed form in
    tests/zoo/test_cifar_recipes.py), memory and the matmul peak measured, the CPU
    convolution A/B of the step and of sampling (``--cpu-conv-ab``), the JSON's checks
    those ``check`` finds (no peer: not decided), a docs block rendered."""
    out = tmp_path / "accelerator.json"
    args = ["--tiny", "--no-torch", "--batch", "2", "--nfe", "4", "--repeats", "2"]
    accel.main([*args, "--cpu-conv-ab", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["device"]["platform"] == "cpu" and d["quick"] and d["env"]["load_average"]
    assert d["matmul_peak"]["fp32-highest"]["jax"] > 1e8 and not d["skipped"]
    fz = d["fm"]["contenders"]["flowzoo fp32-highest"]
    step = fz["step_s"]["median"]
    assert 0 < step < 30 and fz["samples_per_s"] == pytest.approx(2 / step)
    assert fz["peak_bytes"] > 0 and fz["compile_s"] > 0 and fz["mfu"] is None
    flops = d["fm"]["flops"]
    assert 0.9 < flops["total"] / flops["xla_flops"] < 1.15  # padded taps: a bit above XLA's
    peak = d["matmul_peak"]["fp32-highest"]  # the faster library's (torch, where installed)
    # measured at the start and at the end of the run (a CPU's rate moves): the faster counts
    assert peak["jax"] == max(peak["start"]["jax"], peak["end"]["jax"]) > 0
    assert fz["of_matmul_peak"] == pytest.approx(
        flops["total"] / step / max(peak["jax"], peak["torch"] or 0.0)
    )
    sample = d["sample"]
    assert sample["nfe"] == 4 and sample["contenders"]["flowzoo"]["samples_per_s"] > 0
    assert sample["flops"]["total"] > 0
    # sampling compiles as flowzoo sample does (flowzoo.train.jit: Eigen convolutions);
    # --cpu-conv-ab adds the solve with XLA's defaults and their paired ratio
    rows = sample["contenders"]
    assert rows["flowzoo"]["variant"] == "jit"
    assert rows["flowzoo ynnpack-conv"]["variant"] == "jit-ynnpack"
    pair = np.asarray(rows["flowzoo ynnpack-conv"]["step_s"]["values"]) / np.asarray(
        rows["flowzoo"]["step_s"]["values"]
    )
    assert sample["cpu_conv_speedup"]["values"] == pytest.approx(pair.tolist())
    assert d["fm"]["cpu_conv_speedup"]["median"] > 0
    glow = d["glow"]["contenders"]["flowzoo"]
    assert glow["step_s"]["median"] > 0 and d["glow"]["flops"]["total"] > 0
    assert glow["peak_bytes"] > 0 and glow["mode"] == "fp32-highest"
    assert d["checks"] == accel.check(d) and [c["met"] for c in d["checks"]] == [None]
    split = d["split"]["libraries"]["flowzoo"]  # step, forward alone, update alone, rest
    assert all(len(split[k]) == 2 and min(split[k]) > 0 for k in ("step", "forward", "update"))
    rest = np.subtract(np.subtract(split["step"], split["forward"]), split["update"])
    assert split["rest"] == pytest.approx(rest.tolist())
    text = accel.render(d)
    assert text.count("\n|---") == 5 and "| flowzoo fp32-highest | fp32-highest |" in text
    assert "the time of its solve with Eigen convolutions" in text
    assert "Where the fm_cifar10 step's time goes, batch 2" in text
    assert "the faster of the measurements at the start and at the end of the run" in text


def _contender(name, library, mode, values, **extra):
    steps = {"median": sorted(values)[len(values) // 2], "values": values}
    return {"name": name, "library": library, "mode": mode, "step_s": steps,
            "samples_per_s": 128 / steps["median"], **extra}  # fmt: skip


def test_gpu_targets_take_the_faster_peer_and_the_median_round(accel):
    """On a GPU: bf16 against torchcfm's faster bf16 contender (compiled here), per-round
    ratios ``peer / flowzoo`` (1.2, 1.3, 1.25 -> median 1.25 >= 1.2), MFU >= 35%, and float32
    >= 1.0 at each precision (0.95 misses)."""
    contenders = [
        _contender("flowzoo bf16", "flowzoo", "bf16", [1.0, 1.0, 1.0], mfu=0.4),
        _contender("torchcfm eager bf16", "torchcfm", "bf16", [1.5, 1.6, 1.4]),
        _contender("torchcfm compiled bf16", "torchcfm", "bf16", [1.2, 1.3, 1.25]),
        _contender("flowzoo fp32-tf32", "flowzoo", "fp32-tf32", [2.0, 2.0, 2.0], mfu=0.2),
        _contender("torchcfm eager fp32-tf32", "torchcfm", "fp32-tf32", [1.9, 1.9, 1.9]),
    ]
    d = {
        "device": {
            "platform": "gpu",
            "kind": "NVIDIA H100 80GB HBM3",
            "peaks": accel.PEAKS["H100"],
        },  # fmt: skip
        "fm": {
            "batch": 128,
            "flops": {"total": 2.3e12},
            "contenders": {c["name"]: c for c in contenders},
        },  # fmt: skip
        "matmul_peak": {"bf16": {"shape": [8192] * 3, "jax": 7.9e14, "torch": 7.8e14}},
    }
    checks = accel.check(d)
    assert [(c["value"], c["met"]) for c in checks] == [
        (pytest.approx(1.25), True),
        (0.4, True),
        (pytest.approx(0.95), False),
    ]
    assert "torchcfm compiled bf16" in checks[0]["what"] and checks[2]["target"] == ">= 1.0"
    text = accel.render(d)
    assert "| bf16 | torchcfm compiled bf16 | 1.25x (1.23-1.27) | >= 1.2 | yes |" in text
    assert "| fp32-tf32 | torchcfm eager fp32-tf32 | 0.95x" in text and "**no**" in text
    assert "bf16 `8192x8192x8192`: jax 790, torch 780" in text


def test_cpu_conv_ab_is_a_diagnostic_not_a_contender(accel):
    """On CPU, the YNNPACK-convolution row gets its own paired ratio against flowzoo's step
    (YNNPACK time / Eigen time per round) and takes no part in the torchcfm target."""
    contenders = [
        _contender(
            "flowzoo fp32-highest", "flowzoo", "fp32-highest", [2.0, 2.2, 2.1], variant="jit"
        ),  # fmt: skip
        _contender(
            "flowzoo ynnpack-conv fp32-highest",
            "flowzoo",
            "fp32-highest",
            [2.4, 2.2, 2.31],
            variant="jit-ynnpack",
        ),  # fmt: skip
        _contender(
            "torchcfm eager fp32-highest",
            "torchcfm",
            "fp32-highest",
            [2.0, 2.0, 2.0],
            variant="eager",
        ),  # fmt: skip
    ]
    d = {
        "device": {"platform": "cpu", "kind": "cpu", "peaks": None},
        "torch_threads": 2,
        "fm": {
            "batch": 8,
            "flops": {"total": 3e11},
            "contenders": {c["name"]: c for c in contenders},
        },
        "matmul_peak": {},
    }
    accel.derive(d)
    ab = d["fm"]["cpu_conv_speedup"]
    assert ab["values"] == pytest.approx([1.2, 1.0, 1.1]) and ab["median"] == pytest.approx(1.1)
    checks = accel.check(d)
    assert len(checks) == 1 and "flowzoo / torchcfm eager" in checks[0]["what"]
    assert checks[0]["value"] == pytest.approx(2.0 / 2.1) and checks[0]["met"] is False
    assert "takes 1.10x (1.05-1.15) the time of its step with Eigen" in accel.render(d)


def test_split_ratios_pair_the_rounds(accel):
    """The split table: per part, each library's median and the median of the per-round
    ratios torchcfm / flowzoo (rounds 2/1, 3/2, 6/4 -> 1.5), ``rest`` included as stored."""
    split = {
        "batch": 8,
        "mode": "fp32-highest",
        "libraries": {
            "flowzoo": {"step": [1.0, 2.0, 4.0], "forward": [0.5] * 3, "update": [0.1] * 3,
                        "rest": [0.4, 1.4, 3.4]},
            "torchcfm": {"step": [2.0, 3.0, 6.0], "forward": [0.5] * 3, "update": [0.3] * 3,
                         "rest": [1.2, 2.2, 5.2]},
        },
    }  # fmt: skip
    rows = {r[0]: r for r in accel.split_rows(split)}
    assert list(rows) == ["forward", "rest", "update", "step"]
    assert rows["step"] == ["step", "2.00 s", "3.00 s", "1.50x (1.50-1.75)"]
    assert rows["update"][3] == "3.00x (3.00-3.00)" and rows["forward"][3].startswith("1.00x")
    only_ours = {**split, "libraries": {"flowzoo": split["libraries"]["flowzoo"]}}
    assert accel.split_rows(only_ours)[0] == ["forward", "500.00 ms"]


def test_torchcfm_contenders_run_the_same_network(accel, tmp_path):
    """With torch: torchcfm's eager step timed beside flowzoo's and checked against it, and
    the sampling part's field evaluation equal on both sides with torchcfm's weights."""
    pytest.importorskip("torch")
    pytest.importorskip("torchcfm")
    out = tmp_path / "accelerator.json"
    args = ["--quick", "--batch", "2", "--nfe", "2", "--repeats", "1"]
    args += ["--parts", "fm,sample,split"]
    accel.main([*args, "--torch-threads", "1", "--torch-compile", "", "--out", str(out)])
    d = json.loads(out.read_text())
    peer = d["fm"]["contenders"]["torchcfm eager fp32-highest"]
    assert peer["step_s"]["median"] > 0 and peer["loss"] > 0
    assert d["checks"][0]["what"].endswith("flowzoo / torchcfm eager fp32-highest")
    assert isinstance(d["checks"][0]["met"], bool)
    assert 0 < d["sample"]["velocity_max_abs_diff"] < 1e-4
    assert set(d["sample"]["contenders"]) >= {"flowzoo", "torch eager"}
    theirs = d["split"]["libraries"]["torchcfm"]  # torchcfm's forward and update alone
    assert min(theirs["forward"]) > 0 and min(theirs["update"]) > 0
