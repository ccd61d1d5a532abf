"""Conditional flow matching train-step throughput: flowzoo vs torchcfm (CPU).

Model (both libraries): an MLP on the concatenation ``[x, t]`` (input dim + 1) with 3 hidden
layers of width 256 and SiLU, linear output of the data dimension (torchcfm's toy ``MLP``
shape with SiLU in place of SELU); float32; 2-D two-moons data (a fixed array of 20,000
points, a random minibatch drawn inside each step); conditional OT path with sigma = 0 and
uniform t (I-CFM) or the exact minibatch OT coupling (OT-CFM); loss = mean squared error;
one step = sample batch, noise, t, (coupling), forward, backward, Adam(1e-3) update.

* flowzoo: ``flow_matching.cfm_loss(apply, cond_ot_path(0), coupling=...)`` with
  ``nets.mlp`` (t passed as context), the step ``flowzoo.train.apply_update`` under
  ``jax.jit`` (one dispatch per step), and the same in a ``lax.scan`` of 100 steps per call
  (how ``flowzoo.train.fit`` runs; reported per step; independent coupling only). Exact OT: ``exact_ot_coupling``
  (POT's network simplex ``ot.emd`` through ``jax.pure_callback``, the same solver torchcfm uses).
  ``flowzoo_pipelined`` (exact OT only): the same step on pairs from
  ``flow_matching.ot_paired_batches(data, batch, workers=--ot-workers)`` with
  ``cfm_loss(..., source="paired")``, one jitted step per call; its thread pool pairs the
  next steps' batches (POT, GIL released) while the current step runs.
* torchcfm (optional peer): ``ConditionalFlowMatcher(sigma=0)`` /
  ``ExactOptimalTransportConditionalFlowMatcher(sigma=0)`` (POT's ``emd``), ``torch.optim.Adam``,
  ``torch.set_num_threads(--torch-threads)`` (default 1: on the shared, overloaded 2-core
  machine torch with 2 threads ran 15x slower, 0.73 s vs 0.046 s per batch-256 step, from
  OpenMP threads contending for cores).

Measured: compile time of the flowzoo step (trace + lower + XLA compile, see
``_common.measure_compile``), XLA's memory analysis of the compiled step (``_common.memory``)
and steady-state samples/s (median over interleaved repeats). For the independent coupling,
also the step's FLOP/s as a fraction of the machine's matmul rate: XLA's operation count of
one compiled step (``_common.compiled_flops``) over the step time, divided by the measured
float32 rate of chained ``(batch, 256) @ (256, 256)`` products, the step's own GEMM shape
(``_common.matmul_rate``, XLA and torch on the same threads). torchcfm's fraction uses the
same operation count (its step does the same arithmetic).

Run: ``python benchmarks/cfm_train.py [--quick] [--batches 256,1024] [--out PATH]``.

Measured 2026-11-30 (``python benchmarks/cfm_train.py --torch-threads 2``; jax 0.10.2,
torch 2.14.1, torchcfm 1.0.7, POT 0.9.7; 2 CPU cores, otherwise idle: load average 1.46 at
the start, from the previous job; both libraries on 2 threads)::

    batch  coupling     compile  flowzoo step  flowzoo scan  torchcfm   flowzoo / torchcfm
    256    independent  1.27 s   120.1k/s      138.9k/s      92.3k/s    1.30x
    256    exact_ot     1.33 s    31.9k/s           -        31.5k/s    1.02x
    1024   independent  1.31 s   184.2k/s      190.4k/s     158.1k/s    1.17x
    1024   exact_ot     1.41 s     8.1k/s           -         7.9k/s    1.03x

(samples/s). Exact OT is host bound in both libraries by the same network simplex (4.3 ms
at n=256, 96 ms at n=1024 here); with scipy's assignment flowzoo was at 0.75x / 0.39x.
The 2026-11-22 figures (3.8x / 2.2x) were taken under heavy load with torch on one thread
and are withdrawn.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.cfm_train
    from benchmarks import _common as common

from flowzoo import data as fzdata
from flowzoo import flow_matching as fm
from flowzoo import nets, paths
from flowzoo.train import apply_update, init_train_state

# the peer, imported on first use: importing this module to render its docs table needs none
torch = common.LazyImport("torch")
torchcfm = common.LazyImport("torchcfm.conditional_flow_matching")


def have_torchcfm() -> bool:
    return bool(torch and torchcfm)


HIDDEN = (256, 256, 256)
LR = 1e-3
SCAN = 100
COUPLINGS = ("independent", "exact_ot")


def moons(n: int = 20_000) -> np.ndarray:
    return np.asarray(fzdata.toy("two_moons", jax.random.key(0), n))


# --------------------------------------------------------------------------- flowzoo


def flowzoo_pipelined_case(batch: int, workers: int | None):
    """Exact OT paired ahead: ``ot_paired_batches`` + ``cfm_loss(source="paired")``, one
    jitted step per call; the pool pairs the next steps' batches while a step runs.
    Returns ``(step, state, close)``."""
    data = moons()
    net = nets.mlp(2, HIDDEN, "silu")

    def apply(params, t, x, context=None):
        return net.apply(params, x, jnp.broadcast_to(t, x.shape[:1])[:, None])

    loss = fm.cfm_loss(apply, paths.cond_ot_path(0.0), source="paired")
    pipe = fm.ot_paired_batches(data, batch, workers=workers)
    opt = optax.adam(LR)
    params = net.init(jax.random.key(1), data[:2], data[:2, :1])
    key, data_key = jax.random.key(2), jax.random.key(3)

    def one(state):
        pairs = pipe.batch_fn(data_key, state.step)
        return apply_update(loss, opt, state, key, pairs)[0]

    return jax.jit(one), init_train_state(params, opt), pipe.close


def flowzoo_case(batch: int, coupling: str, scan: bool):
    """``(step, carry, make_for_compile)`` of a flowzoo CFM train step."""
    data = jnp.asarray(moons())
    net = nets.mlp(2, HIDDEN, "silu")

    def apply(params, t, x, context=None):
        return net.apply(params, x, jnp.broadcast_to(t, x.shape[:1])[:, None])

    loss = fm.cfm_loss(apply, paths.cond_ot_path(0.0), coupling=fm.get_coupling(coupling))
    opt = optax.adam(LR)
    params = net.init(jax.random.key(1), data[:2], data[:2, :1])
    state = init_train_state(params, opt)
    key = jax.random.key(2)

    def one(state):
        batch_key = jax.random.fold_in(jax.random.key(3), state.step)
        x1 = data[jax.random.randint(batch_key, (batch,), 0, data.shape[0])]
        return apply_update(loss, opt, state, key, x1)[0]

    if scan:

        def fn(state):
            return jax.lax.scan(lambda s, _: (one(s), None), state, None, length=SCAN)[0]

    else:
        fn = one
    return jax.jit(fn), state


# --------------------------------------------------------------------------- torchcfm


def torchcfm_case(batch: int, coupling: str, threads: int):
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    data = torch.from_numpy(moons().copy())
    layers, width_in = [], 3
    for w in HIDDEN:
        layers += [torch.nn.Linear(width_in, w), torch.nn.SiLU()]
        width_in = w
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width_in, 2))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    matcher = (
        torchcfm.ConditionalFlowMatcher(sigma=0.0)
        if coupling == "independent"
        else torchcfm.ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    )

    def step(carry):
        x1 = data[torch.randint(0, data.shape[0], (batch,))]
        x0 = torch.randn_like(x1)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        opt.zero_grad()
        vt = model(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        loss.backward()
        opt.step()
        return carry + 1

    return step, 0


# --------------------------------------------------------------------------- docs table


def render(d: dict) -> str:
    """The docs block: samples/s of flowzoo and torchcfm per batch and coupling, with the fractions
    of matmul peak."""
    rows = [
        [
            r["batch"],
            r["coupling"],
            common.fmt_rate(r.get("flowzoo_samples_per_s")),
            common.fmt_rate(r.get("flowzoo_scan_samples_per_s")),
            common.fmt_rate(r.get("torchcfm_samples_per_s")),
            common.fmt_x(r.get("speedup_vs_torchcfm")),
            common.fmt_rate(r.get("flowzoo_pipelined_samples_per_s")),
            common.fmt_x(
                r["flowzoo_pipelined_samples_per_s"] / r["torchcfm_samples_per_s"]
                if r.get("flowzoo_pipelined_samples_per_s") and r.get("torchcfm_samples_per_s")
                else None
            ),
            common.fmt_seconds(r.get("compile_s")),
            common.fmt_mem(r),
            common.fmt_pct(r.get("flowzoo_scan_fraction_of_xla_matmul")),
            common.fmt_pct(r.get("torchcfm_fraction_of_xla_matmul")),
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
        + common.md_table(
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


# --------------------------------------------------------------------------- main


def _with_args(case):
    step, state = case
    return step, (state,)


def run(
    batches, repeats: int, target_block_s: float, torch_threads: int = 1, ot_workers=None
) -> dict:
    results = []
    for batch in batches:
        for coupling in COUPLINGS:
            cases, close = {}, None
            step1, state = flowzoo_case(batch, coupling, scan=False)
            cases["flowzoo"] = (step1, state)
            if coupling == "independent":  # a 100-step scan of host-bound OT steps adds nothing
                cases["flowzoo_scan"] = flowzoo_case(batch, coupling, scan=True)
            else:
                step_p, state_p, close = flowzoo_pipelined_case(batch, ot_workers)
                cases["flowzoo_pipelined"] = (step_p, state_p)
            if have_torchcfm():
                cases["torchcfm"] = torchcfm_case(batch, coupling, torch_threads)
            compile_ = common.measure_compile(
                lambda b=batch, c=coupling: _with_args(flowzoo_case(b, c, scan=False)),
                repeats=2,
                keep_compiled=True,
            )
            try:
                timing = common.interleaved_steady(
                    cases, repeats=repeats, target_block_s=target_block_s
                )
            finally:
                if close is not None:
                    close()
            row = {
                "batch": batch,
                "coupling": coupling,
                "compile_s": compile_["total_s"]["median"],
                "memory": compile_["memory"],  # XLA buffers of the jitted flowzoo step
                # XLA's count for one step (forward, backward, Adam; sampling and coupling)
                "step_flops": common.compiled_flops(compile_["compiled"]),
            }
            for name, tm in timing.items():
                per_step = tm["step_s"]["median"] / (SCAN if name == "flowzoo_scan" else 1)
                row[f"{name}_step_s"] = per_step
                row[f"{name}_samples_per_s"] = batch / per_step
            if have_torchcfm():
                row["speedup_vs_torchcfm"] = (
                    row["flowzoo_samples_per_s"] / row["torchcfm_samples_per_s"]
                )
                for name in ("flowzoo", "flowzoo_pipelined"):  # median of per-round ratios
                    if name in timing and "torchcfm" in timing:
                        ratios = np.asarray(timing["torchcfm"]["step_s"]["values"]) / np.asarray(
                            timing[name]["step_s"]["values"]
                        )
                        row[f"{name}_vs_torchcfm_rounds"] = common.summarize(ratios.tolist())
            if row["step_flops"] and coupling == "independent":
                # the step's FLOP/s as a fraction of this machine's matmul rate at the step's
                # own GEMM shape (batch x 256 x 256), both libraries on the same threads
                peak = common.matmul_rate(batch, HIDDEN[1], torch_threads=torch_threads)
                row["matmul_rate"] = peak
                for name in ("flowzoo", "flowzoo_scan", "torchcfm"):
                    if f"{name}_step_s" in row:
                        rate = row["step_flops"] / row[f"{name}_step_s"]
                        row[f"{name}_flops_per_s"] = rate
                        row[f"{name}_fraction_of_xla_matmul"] = rate / peak["xla_flops_per_s"]
            results.append(row)
            print(row, flush=True)
    return {"results": results}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="256,1024")
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    p.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument(
        "--ot-workers", type=int, default=None, help="ot_paired_batches threads (default: CPUs)"
    )
    p.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "cfm_train.json")
    )
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    env = common.env_info(("torch", "torchcfm", "pot", "scipy"))  # load average before the run
    t0 = time.perf_counter()
    out = run(
        batches,
        repeats=5 if args.quick else 11,
        target_block_s=0.2 if args.quick else 0.4,
        torch_threads=args.torch_threads,
        ot_workers=args.ot_workers,
    )
    headers = [
        "batch",
        "coupling",
        "compile",
        "flowzoo/s",
        "flowzoo scan/s",
        "paired ahead/s",
        "torchcfm/s",
        "speedup",
        "scan / matmul peak",
        "XLA mem",
    ]
    rows = [
        [
            r["batch"],
            r["coupling"],
            common.fmt_seconds(r["compile_s"]),
            common.fmt_rate(r["flowzoo_samples_per_s"]),
            common.fmt_rate(r.get("flowzoo_scan_samples_per_s")),
            common.fmt_rate(r.get("flowzoo_pipelined_samples_per_s")),
            common.fmt_rate(r.get("torchcfm_samples_per_s")),
            None if "speedup_vs_torchcfm" not in r else f"{r['speedup_vs_torchcfm']:.2f}x",
            None
            if "flowzoo_scan_fraction_of_xla_matmul" not in r
            else f"{r['flowzoo_scan_fraction_of_xla_matmul']:.0%}",
            common.fmt_bytes(r["memory"]["xla_step_bytes"]),
        ]
        for r in out["results"]
    ]
    print(common.format_table(headers, rows))
    payload = {
        "benchmark": "cfm_train",
        "model": {"mlp": list(HIDDEN), "activation": "silu", "input": "[x, t]", "lr": LR},
        "peer": "torchcfm" if have_torchcfm() else None,
        "torch_threads": args.torch_threads,
        "ot_workers": args.ot_workers or os.cpu_count(),
        "quick": args.quick,
        "env": env,
        "load_average_after": common.load_average(),
        "wall_s": time.perf_counter() - t0,
        **out,
    }
    print("wrote", common.write_json(args.out, payload))


if __name__ == "__main__":
    sys.exit(main())
