"""The memory allocator under the ``fm_cifar10`` train step on a CPU: glibc's ``malloc``
against the allocators the ``flowzoo`` command preloads (``flowzoo.malloc``).

XLA:CPU takes every call's temporary buffer from ``malloc``; glibc maps an allocation that
large afresh each time, so each step page-faults on all of it again. torch's eager step
allocates its activations one tensor at a time and faults too. An allocator can only be
chosen when a process starts, so each allocator runs in its own child process
(``FLOWZOO_MALLOC=...`` and ``flowzoo.malloc.relaunch``, as ``flowzoo train`` does), which
times flowzoo's step and torchcfm's eager step in interleaved rounds
(``_common.interleaved_steady``) and counts each step's minor page faults. The children run
one allocator after another, the order reversed every round; the figures are medians over
rounds: each library's step time per allocator, its time on glibc over its time on the
allocator (paired by round), and torchcfm's time over flowzoo's within each child (the
ratio ``accelerator.py`` reports). A shared persistent compilation cache keeps flowzoo's
compile out of every child but the first.

``python benchmarks/malloc.py --torch-threads 2`` (the ``fm_cifar10`` step at batch 8,
3 rounds: about 8 minutes on 2 cores); ``--quick`` a small UNet, one round.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ALLOCATORS = ("system", "mimalloc", "tcmalloc")


def _faults_per_step(step, carry, n: int = 3):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        carry = step(carry)
    import jax

    jax.block_until_ready(carry)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / n, carry


def child(args) -> dict[str, Any]:
    """One allocator: flowzoo's and torchcfm's steps in one process (already relaunched)."""
    import _common as common
    import accelerator as acc

    from flowzoo import malloc

    over = [f"train.batch_size={args.batch}", "train.compute_dtype=float32"]
    cfg = acc.recipe("fm_cifar10", over + (acc.QUICK_FM if args.quick else []))
    (fstep, fcarry), rec, _ = acc.train_step_case(cfg, args.batch, "highest", False)
    cases = {"flowzoo": (fstep, fcarry)}
    torch_on = not args.no_torch and bool(acc.torch) and bool(acc.tcfm_unet)
    if torch_on:
        acc.torch.set_num_threads(args.torch_threads)
        cases["torchcfm"], _ = acc.torch_train_case(
            cfg, args.batch, "float32", "highest", False, "cpu"
        )
    faults = {}
    for name, (step, carry) in list(cases.items()):
        faults[name], carry = _faults_per_step(step, carry)
        cases[name] = (step, carry)
    timed = common.interleaved_steady(cases, args.repeats, args.block_s)
    out = {
        "allocator": malloc.loaded_allocator(),
        "env_allocator": os.environ.get(malloc.ENV),
        "compile_s": rec["compile_s"],
        "load_average": common.load_average(),
    }
    for name, tm in timed.items():
        out[name] = {"step_s": tm["step_s"]["median"], "cpu_s": tm["cpu_s"]["median"],
                     "faults_per_step": faults[name]}  # fmt: skip
    if torch_on:
        pairs = zip(timed["torchcfm"]["step_s"]["values"], timed["flowzoo"]["step_s"]["values"],
                    strict=True)  # fmt: skip
        out["torch_over_flowzoo"] = statistics.median(t / f for t, f in pairs)
    return out


def available() -> list[str]:
    from flowzoo import malloc

    names = []
    for choice in ALLOCATORS:
        try:
            name, path = malloc.find_allocator(choice)
        except ValueError:
            continue
        if name == choice and (path or choice == "system"):
            names.append(choice)
    return names


def run_child(choice: str, args, cache: str) -> dict[str, Any]:
    argv = [sys.executable, str(HERE / "malloc.py"), "--child", "--batch", str(args.batch),
            "--torch-threads", str(args.torch_threads), "--repeats", str(args.repeats),
            "--block-s", str(args.block_s)] + (["--quick"] if args.quick else []) + (
            ["--no-torch"] if args.no_torch else [])  # fmt: skip
    env = {**os.environ, "FLOWZOO_MALLOC": choice, "JAX_COMPILATION_CACHE_DIR": cache}
    env.pop("FLOWZOO_MALLOC_RELAUNCHED", None)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=HERE)
    if proc.returncode:
        raise RuntimeError(f"child {choice} failed:\n{proc.stderr[-3000:]}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["wall_s"] = time.perf_counter() - t0
    if rec["allocator"] != choice:
        raise RuntimeError(f"asked for {choice}, the child ran on {rec['allocator']}")
    print(choice, {k: v for k, v in rec.items() if k not in ("env_allocator",)}, flush=True)
    return rec


def summarise(runs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Medians over rounds per allocator, and each library's glibc/allocator ratio paired
    by round."""
    by = {n: [r for r in runs if r["allocator"] == n] for n in names}
    out: dict[str, Any] = {}
    for n, recs in by.items():
        row: dict[str, Any] = {"rounds": len(recs)}
        for lib in ("flowzoo", "torchcfm"):
            if all(lib in r for r in recs):
                row[lib] = {k: statistics.median(r[lib][k] for r in recs)
                            for k in ("step_s", "cpu_s", "faults_per_step")}  # fmt: skip
                row[lib]["system_over_this"] = statistics.median(
                    s[lib]["step_s"] / r[lib]["step_s"]
                    for s, r in zip(by["system"], recs, strict=True)
                )
        if all("torch_over_flowzoo" in r for r in recs):
            row["torch_over_flowzoo"] = statistics.median(r["torch_over_flowzoo"] for r in recs)
        out[n] = row
    return out


def render(d: dict[str, Any]) -> str:
    """The docs table: one row per allocator (renders the JSON; imports nothing)."""
    import _common as common

    head = ["allocator", "flowzoo step", "faults / step", "torchcfm step", "faults / step",
            "torchcfm / flowzoo", "flowzoo: glibc / this", "torchcfm: glibc / this"]  # fmt: skip
    rows = []
    for name, row in d["summary"].items():
        f, t = row.get("flowzoo", {}), row.get("torchcfm", {})
        rows.append([
            name,
            f"{f['step_s']:.3f} s" if f else None,
            f"{f['faults_per_step']:,.0f}" if f else None,
            f"{t['step_s']:.3f} s" if t else None,
            f"{t['faults_per_step']:,.0f}" if t else None,
            common.fmt_x(row.get("torch_over_flowzoo"), 3),
            common.fmt_x(f.get("system_over_this"), 3),
            common.fmt_x(t.get("system_over_this"), 3),
        ])  # fmt: skip
    c = d["config"]
    return "\n".join([
        common.md_table(head, rows),
        "",
        f"`fm_cifar10` train step, batch {c['batch']}, float32: medians over {c['rounds']} "
        f"rounds, each allocator in its own process, torch on {c['torch_threads']} threads. "
        "Faults: minor page faults per step (`getrusage`). In a ratio above 1 the "
        "denominator is the faster.",
    ])  # fmt: skip


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a small UNet, one round")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=None, help="default 3, quick 1")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks per child")
    ap.add_argument("--block-s", type=float, default=1.0)
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--allocators", default=",".join(ALLOCATORS))
    ap.add_argument("--out", default=str(HERE / "results" / "malloc.json"))
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def main(argv=None) -> dict[str, Any]:
    args = parse(argv)
    if args.child:
        from flowzoo import malloc

        malloc.relaunch([str(HERE / "malloc.py"), *(argv if argv is not None else sys.argv[1:])])
        print(json.dumps(child(args)))
        return {}
    import _common as common

    names = [n for n in available() if n in args.allocators.split(",")]
    if "system" not in names:
        raise SystemExit("the comparison needs --allocators to include system")
    env, runs = common.env_info(("torch", "torchcfm")), []  # the load before the children
    with tempfile.TemporaryDirectory() as cache:
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                runs.append(run_child(name, args, cache))
    d = {
        "benchmark": "malloc",
        "env": env,
        "load_average_after": common.load_average(),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "child")},
        "allocators": names,
        "runs": runs,
        "summary": summarise(runs, names),
    }
    common.write_json(args.out, d)
    print(render(d))
    print("wrote", args.out)
    return d


if __name__ == "__main__":
    main()
