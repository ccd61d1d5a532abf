"""Data-parallel overhead: train steps/s on 1, 2, 4, 8 simulated CPU devices, fixed global batch.

Each device count runs in its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the flag must be set before JAX
starts). The simulated devices share this machine's cores, so the *work* per step is the
same for every N: the numbers measure what sharding costs (partitioned programs, the
cross-device gradient all-reduce, per-device dispatch), not a speed-up. For what to
expect on real accelerators see ``docs/scaling.md``.

Model: ``flowzoo.realnvp(16, num_layers=4, hidden=(128, 128))``, Adam(1e-3), global batch
1024 of standard-normal data (float32). Cases per device count N:

* ``mesh``: the path ``fit(parallel=DataParallel(mesh))`` uses: ``make_sharded_multi_step``
  (jit with NamedSharding in/out shardings, state replicated, batch split along ``data``),
  10 steps per call as a ``lax.scan`` over pre-sharded batches; time per step = call time
  / 10.
* ``pmap``: ``make_pmap_train_step`` (``lax.pmean`` of gradients), one step per call.
* ``single`` (N=1 only): ``make_multi_step`` without a mesh (batches drawn inside the scan),
  the one-device baseline ``fit`` uses without a mesh.
* ``feed_s``: host time to build one call's global batch with
  ``jax.make_array_from_process_local_data`` (what ``fit`` does per call on a mesh).

Compile time (trace + lower + XLA compile of a fresh ``mesh`` step, ``jax.clear_caches()``
first) is reported separately from steady-state step time (median of interleaved blocks
of chained calls; see ``_common.py``).

Run ``python benchmarks/scaling.py [--quick] [--devices 1,2,4,8] [--out PATH]``; JSON goes
to ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.scaling
    from benchmarks import _common as common

DIM, LAYERS, HIDDEN, BATCH, LR, SCAN = 16, 4, (128, 128), 1024, 1e-3, 10


# --------------------------------------------------------------------------- worker


def _problem():
    import jax
    import optax

    import flowzoo
    from flowzoo.flows import nll_loss

    model = flowzoo.realnvp(DIM, num_layers=LAYERS, hidden=HIDDEN)
    x = jax.random.normal(jax.random.key(0), (BATCH, DIM))
    params = model.init(jax.random.key(1), x)
    return nll_loss(model), optax.adam(LR), params, x


def worker(quick: bool, repeats: int, block_s: float, compile_repeats: int) -> dict[str, Any]:
    """Measure one device count (this process's ``jax.device_count()``)."""
    import jax
    import jax.numpy as jnp

    from flowzoo import train

    n = jax.device_count()
    loss_fn, opt, params, x = _problem()
    key = jax.random.key(2)
    mesh = train.data_mesh()
    shard = train.batch_sharding(mesh, leading=1)

    def feed():
        local = np.broadcast_to(np.asarray(x), (SCAN, *x.shape))
        return jax.make_array_from_process_local_data(shard, local, local.shape)

    batches = feed()
    t0 = time.perf_counter()
    for _ in range(10):
        jax.block_until_ready(feed())
    feed_s = (time.perf_counter() - t0) / 10

    def make_mesh():
        run = train.make_sharded_multi_step(loss_fn, opt, mesh, key)
        state = jax.device_put(train.init_train_state(params, opt), train.replicated(mesh))
        return run, (state, batches)

    compile_stats = common.measure_compile(make_mesh, compile_repeats)

    run, (state, _) = make_mesh()
    cases = {"mesh": (lambda s: run(s, batches)[0], state)}

    pstep = train.make_pmap_train_step(loss_fn, opt)
    pbatch = train.shard_batch(x, n)
    pstate = train.replicate(train.init_train_state(params, opt))
    cases["pmap"] = (lambda s: pstep(s, key, pbatch)[0], pstate)

    if n == 1:
        multi = train.make_multi_step(loss_fn, opt, lambda k, s: x)
        cases["single"] = (
            lambda s: multi(s, key, key, SCAN)[0],
            train.init_train_state(params, opt),
        )
    steady = common.interleaved_steady(cases, repeats=repeats, target_block_s=block_s)
    out: dict[str, Any] = {"devices": n, "compile": compile_stats, "feed_s": feed_s}
    for name, res in steady.items():
        per_call = SCAN if name in ("mesh", "single") else 1
        step_s = res["step_s"]["median"] / per_call
        out[name] = {
            "step_s": step_s,
            "steps_per_s": 1.0 / step_s,
            "samples_per_s": BATCH / step_s,
            "cpu_s_per_step": res["cpu_s"]["median"] / per_call,
            "steps_per_call": per_call,
            "raw": res,
        }
    final = jax.tree.leaves(run(state, batches)[0].params)
    out["finite"] = bool(all(jnp.all(jnp.isfinite(p)) for p in final))
    out["env"] = common.env_info()
    return out


# --------------------------------------------------------------------------- driver


def run_device_count(n: int, cfg: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    args = [
        sys.executable,
        __file__,
        "--worker",
        "--repeats",
        str(cfg.repeats),
        "--block-seconds",
        str(cfg.block_seconds),
        "--compile-repeats",
        str(cfg.compile_repeats),
    ]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {n} devices failed:\n{proc.stderr[-3000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def report(results: list[dict[str, Any]]) -> str:
    base = results[0]["mesh"]["step_s"] if results and results[0]["devices"] == 1 else None
    rows = []
    for r in results:
        m, p = r["mesh"], r["pmap"]
        rows.append(
            [
                r["devices"],
                BATCH // r["devices"],
                common.fmt_seconds(r["compile"]["total_s"]["median"]),
                common.fmt_seconds(r["compile"]["total_cpu_s"]["median"]),
                f"{m['steps_per_s']:.1f}",
                common.fmt_seconds(m["step_s"]),
                common.fmt_seconds(m["cpu_s_per_step"]),
                None if base is None else f"{base / m['step_s']:.2f}",
                f"{p['steps_per_s']:.1f}",
                common.fmt_seconds(r["feed_s"]),
                f"{r['single']['steps_per_s']:.1f}" if "single" in r else None,
            ]
        )
    return common.format_table(
        [
            "devices",
            "batch/dev",
            "compile",
            "compile cpu",
            "mesh steps/s",
            "mesh step",
            "mesh cpu/step",
            "vs 1 dev",
            "pmap steps/s",
            "feed/call",
            "no-mesh steps/s",
        ],
        rows,
    )


# --------------------------------------------------------------------------- docs table


def render(d: dict) -> str:
    """The docs block: compile time and steps/s per simulated device count, sharded jit and pmap."""
    res = d["results"]
    base = common.dig(res[0], "mesh", "step_s") if res and res[0]["devices"] == 1 else None
    rows = [
        [
            r["devices"],
            common.fmt_seconds(common.dig(r, "compile", "total_s", "median")),
            f"{r['mesh']['steps_per_s']:.1f}",
            None if base is None else f"{base / r['mesh']['step_s']:.2f}",
            f"{r['pmap']['steps_per_s']:.1f}",
            common.fmt_bytes(common.dig(r, "compile", "memory", "xla_step_bytes")),
        ]
        for r in res
    ]
    return common.md_table(
        ["devices", "compile", "mesh steps/s", "vs 1 device", "pmap steps/s", "memory"], rows
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    ap.add_argument("--devices", default="1,2,4,8", help="comma list of device counts")
    ap.add_argument("--out", default="benchmarks/results/scaling.json")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--compile-repeats", type=int, default=None)
    ap.add_argument("--block-seconds", type=float, default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    cfg = ap.parse_args(argv)
    cfg.repeats = cfg.repeats or (3 if cfg.quick else 11)
    cfg.compile_repeats = cfg.compile_repeats or (1 if cfg.quick else 3)
    cfg.block_seconds = cfg.block_seconds or (0.1 if cfg.quick else 0.4)
    if cfg.worker:
        print(
            json.dumps(
                common._jsonable(
                    worker(cfg.quick, cfg.repeats, cfg.block_seconds, cfg.compile_repeats)
                )
            )
        )
        return None

    counts = [int(c) for c in cfg.devices.split(",")]
    load_before = common.load_average()
    results = []
    for n in counts:
        print(f"measuring {n} simulated device(s) ...", flush=True)
        results.append(run_device_count(n, cfg))
    table = report(results)
    load_after = common.load_average()
    cpus = os.cpu_count() or 1
    busy = [la[0] for la in (load_before, load_after) if la is not None and la[0] > cpus]
    if busy:
        table += (
            f"\nWARNING: 1-min load average reached {max(busy):.1f} on {cpus} CPUs: other "
            "processes competed for the CPU; absolute times are inflated."
        )
    print()
    print(table)
    env = results[0]["env"]
    env["load_average"] = load_before
    payload = {
        "benchmark": "scaling",
        "env": env,
        "load_average_after": load_after,
        "config": {
            "model": f"flowzoo.realnvp({DIM}, num_layers={LAYERS}, hidden={HIDDEN})",
            "optimizer": f"optax.adam({LR})",
            "global_batch": BATCH,
            "data": "fixed jax.random.normal(key(0), (batch, dim)) batch",
            "dtype": "float32",
            "devices": counts,
            "device_kind": "simulated CPU devices "
            "(XLA_FLAGS=--xla_force_host_platform_device_count=N), sharing the host's cores",
            "mesh_case": f"make_sharded_multi_step, {SCAN} steps per call (lax.scan)",
            "pmap_case": "make_pmap_train_step, 1 step per call",
            "quick": cfg.quick,
            "repeats": cfg.repeats,
            "compile_repeats": cfg.compile_repeats,
            "block_seconds": cfg.block_seconds,
            "compile_method": "jax.clear_caches(); fresh step; time jitted.lower(*args) + "
            ".compile(); median over compile_repeats",
            "step_method": "median over interleaved repeats of (time of N chained calls + "
            "block_until_ready) / (N * steps per call)",
        },
        "results": [{k: v for k, v in r.items() if k != "env"} for r in results],
        "table": table,
    }
    path = common.write_json(cfg.out, payload)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
