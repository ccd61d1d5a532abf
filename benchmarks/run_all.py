"""Run every benchmark of this folder, record the load around each, regenerate the docs tables.

``python benchmarks/run_all.py --docs`` is the real run (a quiet machine; 16 min on 2 cores),
``--quick --out /tmp/bench`` a smoke run, ``--docs-only`` the tables again from the JSON there.
Each script of :data:`SCRIPTS` runs in its own subprocess once the load has settled; the load
and CPU time around it decide whether its figures count as taken under load
(``_common.run_accounted``). ``OUT/run_all.json`` keeps these records, the environment and
the targets (each module's ``check``). The blocks between ``<!-- run_all:NAME:begin/end -->``
in ``docs/benchmarks.md`` are a caption (date, commit, load) and the tables that the
benchmark's module renders from ``OUT/NAME.json``: importing it runs nothing, imports no peer.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import importlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _common as common  # noqa: E402


class Script(NamedTuple):
    name: str  # the JSON OUT/NAME.json and the docs block run_all:NAME
    file: str  # the benchmark's module in this folder: measures, checks, renders
    default: bool = True  # run without --only / --extra (False: long, or not a comparison)
    torch_threads: bool = False  # takes --torch-threads (a torch peer)
    args: tuple[str, ...] = ()  # fixed arguments (before --script-args)
    timed: bool = True  # False: quality figures only (NLL after fixed steps), no timings
    render: str = "render"  # the module's function that renders the docs block


SCRIPTS: dict[str, Script] = {
    s.name: s
    for s in (
        Script("coupling_train", "coupling_train.py"),
        Script("cfm_train", "cfm_train.py", torch_threads=True),
        Script("ode_sampling", "ode_sampling.py"),
        Script("ode_meta", "ode_meta.py", torch_threads=True),
        Script("glow_train", "glow_train.py"),
        Script("langevin", "langevin.py"),
        Script("spline_moons", "spline_moons.py"),
        Script("cnf_memory", "cnf_memory.py"),
        Script("remat", "remat.py"),
        Script("input_pipeline", "input_pipeline.py"),
        Script("fsdp_memory", "fsdp_memory.py"),
        # the fused dropout of flowzoo.nets against jax.random.bernoulli's and torch's, and
        # the fm_cifar10 step with each of the two JAX draws
        Script("dropout", "dropout.py", torch_threads=True),
        # the UNet's GroupNorm and attention against their direct formulations (flax's
        # GroupNorm, q/k/v sliced from the interleaved projection) and torch's layers
        Script("adm_layers", "adm_layers.py", torch_threads=True),
        # the UNet's forward and backward pass in a process pinned to 1 core and to 2, against
        # torchcfm's (torch threads = cores): whether a gap is in the work or in its spread
        Script("unet_cores", "unet_cores.py", default=False),
        Script("scaling", "scaling.py", default=False),
        Script("scale_study", "scale_study.py", default=False, timed=False),
        # the fm_cifar10 / glow_cifar10 steps and sampling against torchcfm: minutes per
        # compile on a CPU; the GPU run is benchmarks/device_run.sh
        Script("accelerator", "accelerator.py", default=False, torch_threads=True),
        # the same fm_cifar10 step on glibc's malloc and on each preloadable allocator
        # (flowzoo.malloc), one child process per allocator
        Script("malloc", "malloc.py", default=False, torch_threads=True),
        # every shipped model's card measured again on the installed weights (minutes)
        Script("pretrained", "pretrained.py", default=False, timed=False),
        # one velocity network written with flowzoo.nets, linen, nnx, equinox and haiku (the
        # adapters), trained on two moons over five seeds: test NLL and resume from a checkpoint
        Script("adapters", "adapters.py", default=False, timed=False),
        # the default coupling flow against flowjax on two moons over 20 seeds: the per-seed
        # differences are noise of about 0.02 nats, so the comparison is their mean and spread
        Script(
            "moons_seeds",
            "scale_study.py",
            args=("--data", "two_moons", "--seeds", ",".join(map(str, range(20))), "--configs")
            + ("tanh-1/density/uniform,tanh-1/density/uniform/gelu", "--with-flowjax"),
            timed=False,
            render="render_moons_seeds",
        ),
    )
}


def module(name: str):
    """The benchmark module of ``name`` (imported: nothing runs, no peer is imported)."""
    return importlib.import_module(Path(SCRIPTS[name].file).stem)


def run_script(name: str, cfg: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Run one script as a subprocess; returns its record (load, CPU, return code, ...)."""
    spec = SCRIPTS[name]
    out_json = out_dir / f"{name}.json"
    argv = [sys.executable, str(HERE / spec.file), "--out", str(out_json)]
    argv += ["--quick"] if cfg.quick else []
    argv += ["--torch-threads", str(cfg.torch_threads)] if spec.torch_threads else []
    argv += [*spec.args, *shlex.split(cfg.script_args.get(name, ""))]
    waited = common.settle(cfg.settle_load, cfg.settle_max)
    log_path = out_dir / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "name": name,
        "argv": argv[1:],
        "json": str(out_json),
        "log": str(log_path),
        "settle_wait_s": round(waited, 1),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **common.run_accounted(name, argv, log_path, ROOT, cfg.load_threshold, cfg.other_threshold),
        "quick": cfg.quick,
    }


def render_block(name: str, threshold: float, d: dict, rec: dict | None) -> str:
    """The docs block of ``name``: the caption, then the tables its module renders."""
    caption = common.caption(name, d, rec, threshold, SCRIPTS[name].timed)
    return caption + "\n\n" + getattr(module(name), SCRIPTS[name].render)(d)


def targets(name: str, out_dir: Path) -> list[dict[str, Any]] | None:
    """The module's ``check`` of ``OUT/NAME.json`` (``None``: no targets or no JSON)."""
    check, path = getattr(module(name), "check", None), out_dir / f"{name}.json"
    return check(json.loads(path.read_text())) if check and path.exists() else None


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if unknown := [n for n in names if n not in SCRIPTS]:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(SCRIPTS)}")
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script")
    ap.add_argument("--only", default="", help="comma list of benchmarks to run")
    ap.add_argument("--skip", default="", help="comma list of benchmarks to leave out")
    ap.add_argument("--extra", action="store_true", help="also run scaling and scale_study")
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--script-args", action="append", default=[], metavar="NAME=ARGS", help="more of its args"
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
    pairs = [item.partition("=") for item in cfg.script_args]
    cfg.script_args = {_names(n)[0]: a for n, _, a in pairs}
    if cfg.settle_max is None:
        cfg.settle_max = 0.0 if cfg.quick else 120.0
    out_dir = Path(cfg.out)

    payload: dict[str, Any] = {}
    if not cfg.docs_only:
        names = [n for n, s in SCRIPTS.items() if cfg.extra or s.default]
        names = [n for n in _names(cfg.only) or names if n not in _names(cfg.skip)]
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = out_dir / "run_all.json"
        previous = json.loads(summary.read_text()).get("scripts", {}) if summary.exists() else {}
        env = common.env_info(("torch", "flowjax", "torchcfm", "flow_matching", "diffrax"))
        t0 = time.perf_counter()
        records = {n: run_script(n, cfg, out_dir) for n in names}
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
            "targets": {n: targets(n, out_dir) for n, r in records.items() if r["returncode"] == 0},
        }
        common.write_json(summary, payload)
        headers = ["benchmark", "status", "wall", "load start", "load end", "others' cores", ""]
        rows = [
            [n, "ok" if r["returncode"] == 0 else f"exit {r['returncode']}", f"{r['wall_s']:.0f} s"]
            + [r["load_before"], r["load_after"], r["other_cpu_cores"]]
            + ["UNDER LOAD" if r["under_load"] else ""]
            for n, r in records.items()
        ]
        print("\n" + "=" * 72 + "\n" + common.format_table(headers, rows))
        for n in payload["under_load"]:
            print(f"taken under load: {n}: " + "; ".join(records[n]["load_reasons"]))
        for name, c in [(n, c) for n, cs in payload["targets"].items() for c in cs or ()]:
            if c["met"] is False:
                print(f"target missed: {name}: {c['what']}: {c['value']}, target {c['target']}")
        print(f"wrote {summary}")
    if cfg.docs or cfg.docs_only:
        blocks = {n: functools.partial(render_block, n, cfg.load_threshold) for n in SCRIPTS}
        status = common.update_docs(Path(cfg.docs_file), out_dir, blocks, cfg.allow_quick)
        for name, what in status.items():
            print(f"docs: {name}: {what}")
        payload["docs"] = status
    return payload


if __name__ == "__main__":
    main()
