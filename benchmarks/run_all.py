"""Run every peer comparison in this folder, record the conditions, regenerate the docs tables.

One command produces every speed figure of ``docs/benchmarks.md``::

    python benchmarks/run_all.py --docs            # the real run (quiet machine; 16 min on 2 cores)
    python benchmarks/run_all.py --quick --out /tmp/bench   # smoke run, docs untouched
    python benchmarks/run_all.py --docs-only       # tables again from the JSON already there

Each script runs in its own subprocess, one after the other, with ``--out OUT/NAME.json``
(and ``--torch-threads N`` where it takes one: torch gets as many threads as JAX, which
uses every core; ``N = os.cpu_count()`` unless given). Around each script the runner
records the 1-minute load average, its own CPU time and the CPU time other processes took
meanwhile (``/proc/stat`` minus the script's), and flags the script as *taken under load*
when any of these holds (``--load-threshold``, default 1.5):

* the 1-minute load average at the start exceeded the threshold;
* the 1-minute load average at the end, less the script's own share of it (its average
  core use times ``1 - exp(-wall / 60 s)``), exceeded the threshold. Without the
  correction a benchmark that keeps 2 cores busy would flag itself on a 2-core machine;
* other processes used more than ``--other-threshold`` cores (default 0.5) on average.

Before each script the runner waits (up to ``--settle-max`` seconds, default 120; 0 with
``--quick``) for the 1-minute load to fall below ``--settle-load`` (default 1.0), so the
previous script's threads do not count against the next one. Flags are printed and stored
in ``OUT/run_all.json`` with the environment (versions, CPU, date, git commit) and every
script's return code, wall time and log (``OUT/logs/NAME.log``).

``--docs`` (after the run) and ``--docs-only`` (no run) replace what lies between
``<!-- run_all:NAME:begin -->`` and ``<!-- run_all:NAME:end -->`` in ``docs/benchmarks.md``
with the tables rendered from ``OUT/NAME.json`` (one small renderer per script below); the
prose outside the markers is hand-written and never touched. Every block states the date,
commit and load averages it was taken under and carries a warning when taken under load.
JSON from ``--quick`` runs is never rendered (unless ``--allow-quick``, for tests).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _common as common  # noqa: E402

# --------------------------------------------------------------------------- the scripts


class Script(NamedTuple):
    file: str
    torch_threads: bool  # takes --torch-threads
    extra: bool  # only with --extra (long, or not a peer comparison)
    args: tuple[str, ...] = ()  # fixed arguments (before --script-args)
    timed: bool = True  # False: quality figures only (NLL after fixed steps), no timings


MOONS_SEEDS = ",".join(str(s) for s in range(20))


SCRIPTS: dict[str, Script] = {
    "coupling_train": Script("coupling_train.py", False, False),
    "cfm_train": Script("cfm_train.py", True, False),
    "ode_sampling": Script("ode_sampling.py", False, False),
    "ode_meta": Script("ode_meta.py", True, False),
    "glow_train": Script("glow_train.py", False, False),
    "langevin": Script("langevin.py", False, False),
    "spline_moons": Script("spline_moons.py", False, False),
    "cnf_memory": Script("cnf_memory.py", False, False),
    "scaling": Script("scaling.py", False, True),
    "scale_study": Script("scale_study.py", False, True, timed=False),
    # the default coupling flow against flowjax on two moons over 20 seeds: the per-seed
    # differences are noise of about 0.02 nats, so the comparison is their mean and spread
    "moons_seeds": Script(
        "scale_study.py",
        False,
        False,
        (
            "--data",
            "two_moons",
            "--seeds",
            MOONS_SEEDS,
            "--configs",
            "tanh-1/density/uniform,tanh-1/density/uniform/gelu",
            "--with-flowjax",
        ),
        timed=False,
    ),
}


# --------------------------------------------------------------------------- CPU accounting


def _busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine so far (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    busy = fields[0] + fields[1] + fields[2] + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _load1() -> float | None:
    la = common.load_average()
    return None if la is None else la[0]


def settle(target: float, max_s: float, poll_s: float = 5.0) -> float:
    """Wait until the 1-minute load is below ``target`` (at most ``max_s``); seconds waited."""
    t0 = time.perf_counter()
    while max_s > 0 and time.perf_counter() - t0 < max_s:
        la = _load1()
        if la is None or la < target:
            break
        time.sleep(poll_s)
    return time.perf_counter() - t0


def load_flags(rec: dict[str, Any], threshold: float, other_threshold: float) -> list[str]:
    """Why a script's figures count as taken under load (empty: they do not)."""
    reasons = []
    start, end = rec.get("load_before"), rec.get("load_after")
    if start is not None and start > threshold:
        reasons.append(f"1-min load {start:.2f} at the start > {threshold}")
    own = rec.get("own_load_share")
    if end is not None and end - (own or 0.0) > threshold:
        mine = "" if own is None else f" (about {own:.2f} of it the script's own)"
        reasons.append(f"1-min load {end:.2f} at the end{mine} > {threshold}")
    other = rec.get("other_cpu_cores")
    if other is not None and other > other_threshold:
        reasons.append(f"other processes used {other:.2f} cores on average > {other_threshold}")
    return reasons


def run_script(name: str, cfg: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Run one script as a subprocess; returns its record (load, CPU, return code, ...)."""
    spec = SCRIPTS[name]
    out_json = out_dir / f"{name}.json"
    argv = [sys.executable, str(HERE / spec.file), "--out", str(out_json)]
    if cfg.quick:
        argv.append("--quick")
    if spec.torch_threads:
        argv += ["--torch-threads", str(cfg.torch_threads)]
    argv += list(spec.args)
    argv += shlex.split(cfg.script_args.get(name, ""))
    waited = settle(cfg.settle_load, cfg.settle_max)
    log_path = out_dir / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rec: dict[str, Any] = {
        "name": name,
        "argv": argv[1:],
        "json": str(out_json),
        "log": str(log_path),
        "settle_wait_s": round(waited, 1),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "load_before": _load1(),
    }
    print(f"\n=== {name}: {shlex.join(argv[1:])} (1-min load {rec['load_before']})", flush=True)
    busy0, child0, t0 = _busy_seconds(), _children_cpu(), time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    own_cpu = _children_cpu() - child0
    busy1 = _busy_seconds()
    rec.update(
        {
            "returncode": rc,
            "wall_s": round(wall, 2),
            "load_after": _load1(),
            "own_cpu_s": round(own_cpu, 2),
            "own_cores": round(own_cpu / wall, 3) if wall > 0 else None,
        }
    )
    rec["own_load_share"] = round((rec["own_cores"] or 0.0) * (1 - math.exp(-wall / 60)), 3)
    if busy0 is not None and busy1 is not None and wall > 0:
        rec["other_cpu_cores"] = round(max(0.0, (busy1 - busy0 - own_cpu) / wall), 3)
    else:
        rec["other_cpu_cores"] = None
    rec["load_reasons"] = load_flags(rec, cfg.load_threshold, cfg.other_threshold)
    rec["under_load"] = bool(rec["load_reasons"])
    status = "ok" if rc == 0 else f"FAILED (exit {rc}, see {log_path})"
    flag = " -- TAKEN UNDER LOAD: " + "; ".join(rec["load_reasons"]) if rec["under_load"] else ""
    print(f"=== {name}: {status}, {wall:.0f} s{flag}", flush=True)
    return rec


# --------------------------------------------------------------------------- markdown helpers


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table (``None`` shows as ``-``)."""
    cells = [["-" if c is None else str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def _get(d: Any, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def _x(v: float | None, digits: int = 2) -> str | None:
    return None if v is None else f"{v:.{digits}f}x"


def _rounds(s: dict | None) -> str | None:
    """``1.23x (1.10-1.31)``: median of per-round ratios and its IQR."""
    if not s:
        return None
    return f"{s['median']:.2f}x ({s['q1']:.2f}-{s['q3']:.2f})"


def _met(flag) -> str | None:
    return None if flag is None else ("yes" if flag else "**no**")


def _pct(v: float | None) -> str | None:
    return None if v is None else f"{v:.0%}"


def _mem(d: dict | None) -> str | None:
    return common.fmt_bytes(_get(d, "memory", "xla_step_bytes"))


def _rate(r: float | None) -> str | None:
    return common.fmt_rate(r)


def _secs(s: float | None) -> str | None:
    return common.fmt_seconds(s)


# --------------------------------------------------------------------------- renderers
# one function per script: its JSON (as the script writes it) -> markdown


def _same_program(r: dict) -> str:
    same, n = r.get("same_program_as_handwritten"), r.get("hlo_instructions")
    if same is None:
        return "-"
    if same:
        return "yes"
    if not n:
        return "no"
    return f"no ({n['flowzoo_unmatched']} of {n['flowzoo']} differ)"


def render_coupling_train(d: dict) -> str:
    rows, mem_rows = [], []
    for r in d["sizes"]:
        fz, fj, hw = r.get("flowzoo"), r.get("flowjax"), r.get("handwritten")
        rows.append(
            [
                r["dim"],
                r["batch"],
                _rate(_get(fz, "samples_per_s")),
                _rate(_get(fj, "samples_per_s")),
                _rate(_get(hw, "samples_per_s")),
                _x(r.get("throughput_ratio")),
                _rounds(r.get("throughput_ratio_rounds")),
                None if r.get("target_ratio") is None else f">= {r['target_ratio']}x",
                _met(r.get("target_met")),
                _x(r.get("handwritten_ratio")),
                _rounds(r.get("handwritten_ratio_rounds")),
                _met(r.get("handwritten_target_met")),
                _same_program(r),
            ]
        )
        ct = r.get("compile_target_ratio")
        mem_rows.append(
            [
                r["dim"],
                r["batch"],
                *[_secs(_get(m, "compile", "total_s", "median")) for m in (fz, fj, hw)],
                _x(r.get("compile_ratio")),
                "-" if ct is None else f"<= {ct}x",
                "-" if ct is None else _met(r.get("compile_target_met")),
                *[_mem(m) for m in (fz, fj, hw)],
                " / ".join("-" if m is None else str(m.get("n_params")) for m in (fz, fj, hw)),
            ]
        )
    hw_target = _get(d, "sizes", default=[{}])[0].get("handwritten_target_ratio", 1.0)
    out = [
        "Samples per second (steady state; higher is better), and the throughput ratios: the "
        "ratio of median step times, then the median and IQR of the per-round ratios (the "
        "paired, interleaved measure; targets are judged on its median). `same program`: "
        "`yes` when flowzoo's compiled step and the hand-written one hold the same "
        "instructions on the same shapes, op for op, in every computation of XLA's optimised "
        "module (fused kernels included), so that their speeds can differ only by timing "
        "noise; otherwise how many of flowzoo's instructions have no counterpart.",
        "",
        md_table(
            [
                "dim",
                "batch",
                "flowzoo",
                "flowjax",
                "handwritten",
                "flowzoo / flowjax",
                "per round",
                "target",
                "met",
                "flowzoo / handwritten",
                "per round",
                f"met (>= {hw_target}x)",
                "same program",
            ],
            rows,
        ),
        "",
        "Compile time (trace + lower + XLA compile of a fresh step, median) and XLA memory of "
        "the compiled step (arguments + outputs + temporaries - aliased buffers).",
        "",
        md_table(
            [
                "dim",
                "batch",
                "compile flowzoo",
                "compile flowjax",
                "compile handwritten",
                "flowzoo / flowjax",
                "target",
                "met",
                "memory flowzoo",
                "memory flowjax",
                "memory handwritten",
                "params fz / fj / hw",
            ],
            mem_rows,
        ),
    ]
    depth = d.get("depth_compile")
    if depth:
        drows = []
        for name in ("flowzoo", "flowjax"):
            m = depth.get(name)
            if not m:
                continue
            keys = sorted((k for k in m if k.isdigit()), key=int)
            drows.append(
                [
                    name,
                    *[_secs(_get(m, k, "total_s", "median")) for k in keys],
                    f"{m['ratio']:.2f}",
                    f"{m['cpu_ratio']:.2f}",
                    f"<= {depth['target_ratio']}" if name == "flowzoo" else "(reference)",
                    _met(depth.get("target_met")) if name == "flowzoo" else "",
                ]
            )
        keys = sorted((k for k in depth["flowzoo"] if k.isdigit()), key=int)
        out += [
            "",
            f"Compile time against depth (dim {depth['dim']}, batch {depth['batch']}):",
            "",
            md_table(
                [
                    "library",
                    *[f"{k} layers" for k in keys],
                    "ratio",
                    "cpu ratio",
                    "target",
                    "met",
                ],
                drows,
            ),
        ]
    return "\n".join(out)


def render_cfm_train(d: dict) -> str:
    rows = [
        [
            r["batch"],
            r["coupling"],
            _rate(r.get("flowzoo_samples_per_s")),
            _rate(r.get("flowzoo_scan_samples_per_s")),
            _rate(r.get("torchcfm_samples_per_s")),
            _x(r.get("speedup_vs_torchcfm")),
            _rate(r.get("flowzoo_pipelined_samples_per_s")),
            _x(
                r["flowzoo_pipelined_samples_per_s"] / r["torchcfm_samples_per_s"]
                if r.get("flowzoo_pipelined_samples_per_s") and r.get("torchcfm_samples_per_s")
                else None
            ),
            _secs(r.get("compile_s")),
            _mem(r),
            _pct(r.get("flowzoo_scan_fraction_of_xla_matmul")),
            _pct(r.get("torchcfm_fraction_of_xla_matmul")),
        ]
        for r in d["results"]
    ]
    peaks = [
        f"batch {r['batch']}: XLA {r['matmul_rate']['xla_flops_per_s'] / 1e9:.0f} GFLOP/s"
        + (
            f", torch {r['matmul_rate']['torch_flops_per_s'] / 1e9:.0f} GFLOP/s"
            if r["matmul_rate"].get("torch_flops_per_s")
            else ""
        )
        for r in d["results"]
        if r.get("matmul_rate")
    ]
    return (
        f"Samples per second, steady state; torch on {d.get('torch_threads')} thread(s)"
        + (f", OT paired ahead on {d['ot_workers']} thread(s)" if d.get("ot_workers") else "")
        + ".\n\n"
        + md_table(
            [
                "batch",
                "coupling",
                "flowzoo (jit step)",
                "flowzoo (scanned, as `fit`)",
                "torchcfm",
                "flowzoo / torchcfm",
                "flowzoo, OT paired ahead",
                "paired ahead / torchcfm",
                "compile",
                "memory (flowzoo step)",
                "flowzoo scanned, of matmul peak",
                "torchcfm, of matmul peak",
            ],
            rows,
        )
        + (
            "\n\nMatmul peak: the step's FLOP/s (XLA's operation count of one step over its "
            "time) as a fraction of the measured float32 rate of chained `(batch, 256) @ "
            "(256, 256)` products on the same threads (" + "; ".join(peaks) + ")."
            if peaks
            else ""
        )
    )


def render_ode_sampling(d: dict) -> str:
    rows = []
    for dim, res in d["results"]["mlp"].items():
        for r in res["throughput"]:
            rows.append(
                [
                    dim,
                    r["solver"],
                    r["num_steps"],
                    r["nfe"],
                    _rate(r.get("samples_per_s")),
                    _secs(r.get("compile_s")),
                    _mem(r),
                ]
            )
    n = _get(d, "config", "n")
    return f"Random tanh MLP field, {n} samples per solve, matched NFE.\n\n" + md_table(
        ["dim", "solver", "steps", "NFE", "samples/s", "compile", "memory"], rows
    )


def render_ode_meta(d: dict) -> str:
    rows = []
    for r in d["results"]:
        rows.append(
            [
                r["method"],
                r["num_steps"],
                f"{r.get('flowzoo_nfe')} / {r.get('meta_nfe', '-')}",
                _rate(_get(r, "flowzoo", "samples_per_s")),
                _rate(_get(r, "jax_scan", "samples_per_s")),
                _rate(_get(r, "meta", "samples_per_s")),
                _rounds(r.get("speedup_vs_meta")),
                f">= {r.get('target')}x",
                _met(r.get("target_met")),
                None
                if r.get("scan_over_flowzoo") is None
                else f"{r['scan_over_flowzoo']['median']:.2f}",
                None if r.get("max_abs_diff_meta") is None else f"{r['max_abs_diff_meta']:.1e}",
                _secs(_get(r, "compile", "total_s", "median")),
                _mem(r),
                _pct(r.get("flowzoo_fraction_of_own_matmul")),
                _pct(r.get("meta_fraction_of_own_matmul")),
            ]
        )
    c = d.get("config", {})
    peak = d.get("matmul_rate") or {}
    peak_note = (
        ""
        if not peak.get("xla_flops_per_s")
        else "\n\nOf matmul peak: each library's FLOP/s in the solve (XLA's operation count "
        "of one field evaluation times the NFE, over the solve time) as a fraction of its own "
        f"measured float32 rate of chained `({peak['shape'][0]}, 256) @ (256, 256)` products: "
        f"XLA {peak['xla_flops_per_s'] / 1e9:.0f} GFLOP/s"
        + (
            f", torch {peak['torch_flops_per_s'] / 1e9:.0f} GFLOP/s"
            if peak.get("torch_flops_per_s")
            else ""
        )
        + "."
    )
    return (
        f"{c.get('n')} samples in 2-D per solve; torch on {c.get('torch_threads')} thread(s). "
        "Samples per second; `flowzoo vs Meta` is the median (IQR) over rounds of Meta's "
        "time per solve over flowzoo's; `scan / flowzoo` the same for the hand-written "
        "`lax.scan` (below 1: flowzoo is faster).\n\n"
        + md_table(
            [
                "method",
                "steps",
                "NFE flowzoo / Meta",
                "flowzoo",
                "lax.scan",
                "Meta",
                "flowzoo vs Meta",
                "target",
                "met",
                "scan / flowzoo",
                "max abs diff",
                "compile",
                "memory",
                "flowzoo, of XLA matmul peak",
                "Meta, of torch matmul peak",
            ],
            rows,
        )
        + peak_note
    )


def render_glow_train(d: dict) -> str:
    rows = [
        [
            "x".join(map(str, r["image_shape"])),
            r["levels"],
            r["depth"],
            r["batch"],
            f"{r['n_params'] / 1e6:.2f}M",
            _secs(_get(r, "compile", "total_s", "median")),
            _secs(_get(r, "step_s", "median")),
            None if r.get("images_per_s") is None else f"{r['images_per_s']:.1f}",
            _mem(r),
        ]
        for r in d["sizes"]
    ]
    out = [
        md_table(
            [
                "image",
                "levels",
                "depth",
                "batch",
                "params",
                "compile",
                "step",
                "images/s",
                "memory",
            ],
            rows,
        )
    ]
    dc = d.get("depth_compile")
    if dc:
        keys = sorted((k for k in dc if k.isdigit()), key=int)
        out += [
            "",
            md_table(
                [*[f"compile, depth {k}" for k in keys], "ratio", "cpu ratio", "target", "met"],
                [
                    [
                        *[_secs(_get(dc, k, "total_s", "median")) for k in keys],
                        f"{dc['ratio']:.2f}",
                        f"{dc['cpu_ratio']:.2f}",
                        f"<= {dc['target_ratio']}",
                        _met(dc.get("target_met")),
                    ]
                ],
            ),
        ]
    return "\n".join(out)


def render_langevin(d: dict) -> str:
    rows = [
        [
            f"`{name}`",
            _rate(r.get("chain_steps_per_s")),
            _secs(_get(r, "compile", "total_s", "median")),
            common.fmt_bytes(_get(r, "memory", "xla_step_bytes"))
            or common.fmt_bytes(_get(r, "compile", "memory", "xla_step_bytes")),
            f"{_get(r, 'quality', 'ksd', default=float('nan')):.4f}",
            f"{_get(r, 'quality', 'mmd', default=float('nan')):.4f}",
        ]
        for name, r in d["results"].items()
    ]
    c = d.get("config", {})
    ratios = [
        [f"`{k.split(':', 1)[1]}`", f"{v:.2f}"]
        for k, v in d.get("ratios", {}).items()
        if k.startswith("wall:")
    ]
    return (
        f"{c.get('chains')} chains, {c.get('steps_per_call')} steps per call, step size "
        f"{c.get('step_size')}; KSD and MMD after {c.get('quality_steps')} steps.\n\n"
        + md_table(["case", "chain-steps/s", "compile", "memory", "KSD", "MMD"], rows)
        + "\n\nRatios of wall-clock time per call (`a/b`: above 1, `a` is slower; "
        "`speedup`: above 1, flowzoo is faster):\n\n" + md_table(["ratio", "value"], ratios)
    )


def render_spline_moons(d: dict) -> str:
    import numpy as np

    rows = []
    timing = d.get("step_time") or {}
    for name, per_seed in d["quality"].items():
        nll = [v["test_nll"] for v in per_seed.values() if v.get("test_nll") is not None]
        t = timing.get(name)
        rows.append(
            [
                f"`{name}`",
                len(per_seed),
                f"{np.mean(nll):.3f}" if nll else None,
                f"{max(nll):.3f}" if nll else None,
                _secs(_get(t, "step_s", "median")),
                _mem(t),
            ]
        )
    fz, fj = _get(timing, "flowzoo_spline", "step_s"), _get(timing, "flowjax_spline", "step_s")
    tail = ""
    if fz and fj:
        pairs = [b / a for a, b in zip(fz["values"], fj["values"], strict=True)]
        s = common.summarize(pairs)
        tail = f"\n\nflowzoo / flowjax spline step speed-up: {_rounds(s)} (median of rounds, IQR)."
    c = d.get("config", {})
    return (
        f"{c.get('steps')} steps, batch {c.get('batch')}; test NLL in nats (mean and worst "
        "seed); train-step time and memory of the spline flows.\n\n"
        + md_table(["model", "seeds", "test NLL", "worst", "step", "memory"], rows)
        + tail
    )


def render_cnf_memory(d: dict) -> str:
    rows = []
    for r in d["results"]:
        by = r["by_steps"]
        rows.append(
            [
                r["dim"],
                r["batch"],
                f"`{r['adjoint']}`",
                common.fmt_bytes(_get(by, "8", "train", "xla_step_bytes")),
                common.fmt_bytes(_get(by, "64", "train", "xla_step_bytes")),
                _x(r.get("ratio_64_over_8"), 3),
                f"<= {r.get('target')}x",
                _met(r.get("target_met")),
                common.fmt_bytes(_get(by, "8", "forward", "xla_step_bytes")),
                common.fmt_bytes(r.get("state_bytes")),
            ]
        )
    return (
        "XLA buffers of one compiled CNF training step (`value_and_grad` of the mean NLL, "
        "exact divergence, RK4 at 8 and 64 fixed steps); `forward` is the log-density alone "
        "at 8 steps, `state` one ODE state (sample and log-density).\n\n"
        + md_table(
            [
                "dim",
                "batch",
                "adjoint",
                "8 steps",
                "64 steps",
                "64 / 8",
                "target",
                "met",
                "forward",
                "state",
            ],
            rows,
        )
    )


def render_scaling(d: dict) -> str:
    res = d["results"]
    base = _get(res[0], "mesh", "step_s") if res and res[0]["devices"] == 1 else None
    rows = [
        [
            r["devices"],
            _secs(_get(r, "compile", "total_s", "median")),
            f"{r['mesh']['steps_per_s']:.1f}",
            None if base is None else f"{base / r['mesh']['step_s']:.2f}",
            f"{r['pmap']['steps_per_s']:.1f}",
            common.fmt_bytes(_get(r, "compile", "memory", "xla_step_bytes")),
        ]
        for r in res
    ]
    return md_table(
        ["devices", "compile", "mesh steps/s", "vs 1 device", "pmap steps/s", "memory"], rows
    )


def _versus_flowjax(res: dict, seeds: list | None) -> str:
    """Seed-by-seed differences of test NLL from flowjax's (same data and minibatches per seed,
    different initial weights): mean, its standard error, and the seeds where flowzoo is
    ahead or level (within 0.005 nats)."""
    import numpy as np

    rows = []
    for name, cells_by_kind in res.items():
        ref = [c.get("test_nll") for c in cells_by_kind["flowjax"]]
        for kind, cells in cells_by_kind.items():
            if kind == "flowjax":
                continue
            diff = np.array(
                [
                    c["test_nll"] - r
                    for c, r in zip(cells, ref, strict=True)
                    if c.get("test_nll") is not None and r is not None
                ]
            )
            if diff.size < 2:
                continue
            se = diff.std(ddof=1) / np.sqrt(diff.size)
            rows.append(
                [
                    name,
                    f"`{kind}`",
                    f"{diff.mean():+.4f} ± {se:.4f}",
                    f"{int(np.sum(diff <= 0.005))} of {diff.size}",
                    f"{diff.max():+.3f}",
                ]
            )
    return (
        f"Against flowjax, seed by seed ({len(seeds or [])} seeds: the same data and minibatches, "
        "different initial weights): flowzoo's test NLL minus flowjax's, mean ± standard "
        "error (negative: flowzoo lower), the seeds where flowzoo is ahead or within 0.005 "
        "nats, and the largest shortfall.\n\n"
        + md_table(
            ["data", "flowzoo configuration", "NLL - flowjax", "seeds ahead or level", "worst"],
            rows,
        )
    )


def render_scale_study(d: dict) -> str:
    import numpy as np

    res = d["results"]
    data = list(res)
    kinds = list(res[data[0]])
    rows = []
    for kind in kinds:
        row = [f"`{kind}`"]
        jumps = []
        for name in data:
            cells = res[name].get(kind, [])
            nll = [c["test_nll"] for c in cells if c.get("test_nll") is not None]
            bad = len(cells) - len(nll)
            txt = f"{np.mean(nll):.3f} / {max(nll):.3f}" if nll else "-"
            if bad:
                txt += f", {bad} of {len(cells)} non-finite"
            row.append(txt)
            if name != "digits":
                jumps += [c["max_loss_jump_100"] for c in cells if c.get("finite")]
        row.append(f"{max(jumps):.3f}" if jumps else "-")
        rows.append(row)
    c = d.get("config", {})
    out = (
        f"Test NLL in nats, mean / worst of seeds {c.get('seeds')}, {c.get('steps')} steps; "
        "the last column is the largest rise between consecutive 100-step means of the "
        "training loss over the 2-D sets' finite runs (a spike check).\n\n"
        + md_table(["scale / orientation / init", *data, "largest loss rise"], rows)
    )
    moons = res.get("two_moons")
    seeds = c.get("seeds") or list(range(len(next(iter(moons.values()))))) if moons else []
    if moons and len(seeds) <= 10:
        per_seed = []
        for kind, cells in moons.items():
            vals = [x["test_nll"] for x in cells]
            per_seed.append([f"`{kind}`"] + [f"{v:.3f}" if v is not None else "-" for v in vals])
        out += "\n\nTwo moons, test NLL per seed:\n\n" + md_table(
            ["scale / orientation / init", *[f"seed {s}" for s in seeds]], per_seed
        )
    return out


def render_moons_seeds(d: dict) -> str:
    """The scale study's mean / worst table, then the seed-by-seed comparison with flowjax."""
    out = render_scale_study(d)
    if "flowjax" in next(iter(d["results"].values())):
        out += "\n\n" + _versus_flowjax(d["results"], d.get("config", {}).get("seeds"))
    return out


RENDERERS: dict[str, Callable[[dict], str]] = {
    "coupling_train": render_coupling_train,
    "cfm_train": render_cfm_train,
    "ode_sampling": render_ode_sampling,
    "ode_meta": render_ode_meta,
    "glow_train": render_glow_train,
    "langevin": render_langevin,
    "spline_moons": render_spline_moons,
    "cnf_memory": render_cnf_memory,
    "scaling": render_scaling,
    "scale_study": render_scale_study,
    "moons_seeds": render_moons_seeds,
}


# --------------------------------------------------------------------------- docs


MARKER = re.compile(
    r"(<!-- run_all:(?P<name>[\w-]+):begin -->\n)(?P<body>.*?)(<!-- run_all:(?P=name):end -->)",
    re.S,
)


def caption(name: str, d: dict, rec: dict | None, threshold: float) -> str:
    """The line every generated block starts with: when, where, under what load."""
    env = d.get("env", {})
    if rec is not None:
        start, end, reasons = rec.get("load_before"), rec.get("load_after"), rec["load_reasons"]
        date = rec.get("date") or env.get("date")
    else:  # a script run by hand: its own JSON's load averages, without the corrections
        start = _get(env, "load_average", default=[None])[0]
        end = (d.get("load_average_after") or [None])[0]
        date = env.get("date")
        reasons = load_flags({"load_before": start, "load_after": end}, threshold, math.inf)
    versions = env.get("versions") or {}
    vtxt = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "numpy")
    fmt = lambda v: "?" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"_Generated by `benchmarks/run_all.py` from `benchmarks/results/{name}.json`: taken "
        f"{date or '?'} (commit {env.get('git_commit') or '?'}), {env.get('cpu_count') or '?'} "
        f"x {env.get('cpu_model') or env.get('device') or '?'}"
        + (f" ({env['cpu_id']})" if env.get("cpu_id") else "")
        + ", 1-min load average "
        f"{fmt(start)} at the start and {fmt(end)} at the end; {vtxt}._"
    ]
    if reasons and name in SCRIPTS and not SCRIPTS[name].timed:
        lines += [
            "",
            "Quality figures only (test NLL after a fixed number of steps from fixed seeds): "
            "the load (" + "; ".join(reasons) + ") slows them down but does not change them.",
        ]
    elif reasons:
        lines += [
            "",
            '!!! warning "Taken under load"',
            "    These figures were taken on a busy machine (" + "; ".join(reasons) + "); they "
            "are not published results.",
        ]
    return "\n".join(lines)


def render_block(name: str, d: dict, rec: dict | None, threshold: float) -> str:
    return caption(name, d, rec, threshold) + "\n\n" + RENDERERS[name](d)


def update_docs(
    docs_file: Path, out_dir: Path, threshold: float, allow_quick: bool = False
) -> dict[str, str]:
    """Replace every marked block whose JSON exists; returns ``name -> what happened``."""
    text = docs_file.read_text()
    records = {}
    summary = out_dir / "run_all.json"
    if summary.exists():
        records = json.loads(summary.read_text()).get("scripts", {})
    status: dict[str, str] = {}

    def replace(m: re.Match) -> str:
        name = m.group("name")
        path = out_dir / f"{name}.json"
        if name not in RENDERERS:
            status[name] = "no renderer: left as is"
            return m.group(0)
        if not path.exists():
            status[name] = f"no {path.name}: left as is"
            return m.group(0)
        d = json.loads(path.read_text())
        quick = _get(d, "config", "quick") or d.get("quick") or _get(records, name, "quick")
        if quick and not allow_quick:
            status[name] = "smoke-run (--quick) JSON: left as is"
            return m.group(0)
        rec = records.get(name)
        if rec is not None and Path(rec.get("json", "")).name != path.name:
            rec = None
        status[name] = "updated" + (" (taken under load)" if rec and rec["under_load"] else "")
        return m.group(1) + render_block(name, d, rec, threshold) + "\n" + m.group(4)

    new = MARKER.sub(replace, text)
    if new != text:
        docs_file.write_text(new)
    return status


# --------------------------------------------------------------------------- main


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(SCRIPTS)}")
    return names


def _script_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, args = item.partition("=")
        _names(name)
        out[name] = args
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script")
    ap.add_argument("--only", default="", help="comma list of benchmarks to run")
    ap.add_argument("--skip", default="", help="comma list of benchmarks to leave out")
    ap.add_argument("--extra", action="store_true", help="also run scaling and scale_study")
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--script-args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra arguments for one script, e.g. coupling_train='--sizes 2x256 --no-depth'",
    )
    ap.add_argument("--load-threshold", type=float, default=1.5)
    ap.add_argument("--other-threshold", type=float, default=0.5, help="cores used by others")
    ap.add_argument("--settle-load", type=float, default=1.0)
    ap.add_argument("--settle-max", type=float, default=None, help="s (default 120, quick 0)")
    ap.add_argument("--docs", action="store_true", help="regenerate the docs tables after")
    ap.add_argument("--docs-only", action="store_true", help="only regenerate the docs tables")
    ap.add_argument("--docs-file", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--allow-quick", action="store_true", help="render --quick JSON (tests)")
    cfg = ap.parse_args(argv)
    cfg.script_args = _script_args(cfg.script_args)
    if cfg.settle_max is None:
        cfg.settle_max = 0.0 if cfg.quick else 120.0
    out_dir = Path(cfg.out)

    payload: dict[str, Any] = {}
    if not cfg.docs_only:
        names = (
            _names(cfg.only)
            if cfg.only
            else [n for n, s in SCRIPTS.items() if cfg.extra or not s.extra]
        )
        names = [n for n in names if n not in _names(cfg.skip)]
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = out_dir / "run_all.json"
        previous = json.loads(summary.read_text()).get("scripts", {}) if summary.exists() else {}
        env = common.env_info(("torch", "flowjax", "torchcfm", "flow_matching", "diffrax"))
        t0 = time.perf_counter()
        records = {}
        for name in names:
            rec = run_script(name, cfg, out_dir)
            rec["quick"] = cfg.quick
            records[name] = rec
        payload = {
            "benchmark": "run_all",
            "env": env,
            "date_end": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else argv,
            "quick": cfg.quick,
            "torch_threads": cfg.torch_threads,
            "load_threshold": cfg.load_threshold,
            "other_threshold": cfg.other_threshold,
            "wall_s": round(time.perf_counter() - t0, 1),
            # scripts of earlier runs into the same folder stay (their JSON is still there)
            "scripts": {**previous, **records},
            "this_run": names,
            "failed": [n for n, r in records.items() if r["returncode"] != 0],
            "under_load": [n for n, r in records.items() if r["under_load"]],
        }
        common.write_json(summary, payload)
        print("\n" + "=" * 72)
        rows = [
            [
                n,
                "ok" if r["returncode"] == 0 else f"exit {r['returncode']}",
                f"{r['wall_s']:.0f} s",
                r["load_before"],
                r["load_after"],
                r["other_cpu_cores"],
                "UNDER LOAD" if r["under_load"] else "",
            ]
            for n, r in records.items()
        ]
        print(
            common.format_table(
                ["benchmark", "status", "wall", "load start", "load end", "others' cores", ""],
                rows,
            )
        )
        for n in payload["under_load"]:
            print(f"taken under load: {n}: " + "; ".join(records[n]["load_reasons"]))
        print(f"wrote {summary}")
    if cfg.docs or cfg.docs_only:
        status = update_docs(Path(cfg.docs_file), out_dir, cfg.load_threshold, cfg.allow_quick)
        for name, what in status.items():
            print(f"docs: {name}: {what}")
        payload["docs"] = status
    return payload


if __name__ == "__main__":
    main()
