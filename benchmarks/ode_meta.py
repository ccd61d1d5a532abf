"""Flow-matching ODE sampling: flowzoo vs Meta's ``flow_matching`` (torch), equal NFE, CPU.

The velocity field, the same in both libraries: an MLP on ``[x, t]`` (2-D data, so input 3)
with 3 hidden layers of width 256 and SiLU, linear output of width 2 (the network of
``cfm_train.py``); flowzoo's ``nets.mlp(2, (256, 256, 256), "silu")`` with random weights
(seed 0), copied into a ``torch.nn.Sequential`` (``weight = kernel.T``). Untrained weights
are enough: the cost of a solve does not depend on them, and the samples still move by O(1).

Every solve integrates one batch of ``--n`` samples (default 10,000, float32) from t=0 to
t=1 on an equal time grid, starting from the same standard-normal ``x_init`` in both
libraries:

* ``euler``, 100 steps, and ``midpoint``, 50 steps: 100 evaluations of the field each.
* flowzoo: :func:`flowzoo.integrate.solve_ode` (``solver=..., num_steps=...``) under
  ``jax.jit``, the call that ``flow_matching.distribution(...).sample`` makes after drawing
  its base samples. A fixed-step Euler or midpoint solve is one ``lax.scan`` over the
  precomputed grid (before commit d4de45e it was a ``diffrax.diffeqsolve`` with
  ``ConstantStepSize``, a bounded while loop of diffrax steps).
* jax_scan: the same two solvers written as a ``lax.scan`` over
  ``jnp.linspace(0, 1, steps + 1)``, a hand-written reference for flowzoo's loop overhead.
* meta: ``flow_matching.solver.ODESolver(velocity_model=...).sample(x_init,
  step_size=None, method=..., time_grid=torch.linspace(0, 1, steps + 1))`` (torchdiffeq's
  fixed-grid solvers on exactly the grid above; ``step_size=1/steps`` makes torchdiffeq
  build its own grid from a float32 division, which can add a step), with
  ``torch.set_num_threads(--torch-threads)`` (default: the CPU count, as JAX uses) under
  ``torch.no_grad`` (``ODESolver`` disables gradients itself).

Each library's speed is also given as a fraction of its own float32 matmul rate at the
field's GEMM shape (``_common.matmul_rate``: chained ``(n, 256) @ (256, 256)`` products, XLA and
torch on the same threads), with the solve's FLOPs taken as XLA's operation count of one field
evaluation times the NFE. Both near 1 means the ratio between the libraries is set by their
GEMM kernels, not by solver overhead.

Measured: compile time and XLA memory of the flowzoo sampler (``_common.measure_compile``);
steady-state seconds per solve of the three cases timed in interleaved rounds
(``_common.interleaved_steady``); the speed-up ``meta / flowzoo`` as the median of per-round
ratios (target >= 1.5x), with its IQR; the NFE each library made (counted); and the largest
absolute difference between flowzoo's and Meta's samples (float32, expected ~1e-3 or less).

Run ``python benchmarks/ode_meta.py [--quick] [--n 10000] [--torch-threads 2] [--out PATH]``;
writes ``benchmarks/results/ode_meta.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.ode_meta
    from benchmarks import _common as common

from flowzoo import nets
from flowzoo.integrate import solve_ode

# the peer, imported on first use: importing this module to render its docs table needs none
torch = common.LazyImport("torch")
fm_solver = common.LazyImport("flow_matching.solver")


def have_meta() -> bool:
    return bool(torch and fm_solver)


HIDDEN = (256, 256, 256)
DIM = 2
METHODS = {"euler": 100, "midpoint": 50}  # steps: 100 evaluations of the field each
TARGET = 1.5  # meta / flowzoo seconds per solve


# --------------------------------------------------------------------------- the field


def velocity_params(seed: int = 0):
    net = nets.mlp(DIM, HIDDEN, "silu")
    x = jnp.zeros((2, DIM), jnp.float32)
    return net, net.init(jax.random.key(seed), x, jnp.zeros((2, 1), jnp.float32))


def jax_field(net, params):
    def field(t, x):
        return net.apply(params, x, jnp.broadcast_to(t, (x.shape[0], 1)).astype(x.dtype))

    return field


def torch_field(params):
    """The same MLP as a ``torch.nn.Sequential`` with the flax weights copied in."""
    dense = params["params"]
    names = sorted(dense, key=lambda k: int(k.split("_")[-1]))  # Dense_0, Dense_1, ...
    layers: list = []
    for i, name in enumerate(names):
        kernel = np.asarray(dense[name]["kernel"])
        lin = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(kernel.T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(dense[name]["bias"]).copy()))
        layers.append(lin)
        if i < len(names) - 1:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers).eval()


def meta_wrapper(model):
    """A ``flow_matching.utils.ModelWrapper`` taking ``(x, t)``; counts its calls."""
    from flow_matching.utils import ModelWrapper

    class Velocity(ModelWrapper):
        calls = 0

        def forward(self, x, t, **extras):
            Velocity.calls += 1
            tt = torch.as_tensor(t, dtype=x.dtype).reshape(1, 1).expand(x.shape[0], 1)
            return self.model(torch.cat([x, tt], dim=1))

    return Velocity(model)


# --------------------------------------------------------------------------- samplers


def flowzoo_sampler(field, method: str, steps: int):
    """``jit(x_init -> (x1, nfe))`` through ``flowzoo.integrate.solve_ode``."""

    def run(x0):
        sol = solve_ode(field, x0, 0.0, 1.0, solver=method, num_steps=steps)
        return sol.y1, sol.nfe

    return jax.jit(run)


def scan_sampler(field, method: str, steps: int):
    """``jit(x_init -> x1)``: the same solver as a ``lax.scan`` over a precomputed grid."""

    def run(x0):
        ts = jnp.linspace(0.0, 1.0, steps + 1, dtype=x0.dtype)

        def body(x, i):
            t, dt = ts[i], ts[i + 1] - ts[i]
            if method == "euler":
                return x + dt * field(t, x), None
            mid = x + 0.5 * dt * field(t, x)
            return x + dt * field(t + 0.5 * dt, mid), None

        return jax.lax.scan(body, x0, jnp.arange(steps))[0]

    return jax.jit(run)


def meta_sampler(velocity, method: str, steps: int):
    solver = fm_solver.ODESolver(velocity_model=velocity)
    grid = torch.linspace(0.0, 1.0, steps + 1)

    def run(x0):
        return solver.sample(x0, step_size=None, method=method, time_grid=grid)

    return run


# --------------------------------------------------------------------------- measurement


def measure_method(
    method: str, steps: int, cfg, net, params, velocity, peak: dict | None
) -> dict[str, Any]:
    field = jax_field(net, params)
    x0_np = np.asarray(jax.random.normal(jax.random.key(1), (cfg.n, DIM), jnp.float32))
    x0 = jnp.asarray(x0_np)
    fz = flowzoo_sampler(field, method, steps)
    sc = scan_sampler(field, method, steps)
    comp = common.measure_compile(
        lambda: (flowzoo_sampler(field, method, steps), (x0,)), cfg.compile_repeats
    )
    y_fz, nfe = fz(x0)
    y_sc = sc(x0)
    row: dict[str, Any] = {
        "method": method,
        "num_steps": steps,
        "n": cfg.n,
        "flowzoo_nfe": int(nfe),
        "memory": comp.pop("memory"),
        "compile": comp,
        "scan_memory": common.step_memory(sc, x0),
        "max_abs_diff_scan": float(jnp.max(jnp.abs(y_fz - y_sc))),
        "mean_displacement": float(jnp.mean(jnp.linalg.norm(y_fz - x0, axis=1))),
    }
    cases = {
        "flowzoo": (lambda c: fz(x0)[0], jnp.zeros_like(x0)),
        "jax_scan": (lambda c: sc(x0), jnp.zeros_like(x0)),
    }
    if velocity is not None:
        run = meta_sampler(velocity, method, steps)
        x0_t = torch.from_numpy(x0_np.copy())
        type(velocity).calls = 0
        y_meta = run(x0_t).numpy()
        row["meta_nfe"] = type(velocity).calls
        row["max_abs_diff_meta"] = float(np.max(np.abs(np.asarray(y_fz) - y_meta)))
        cases["meta"] = (lambda c: (run(x0_t), c + 1)[1], 0)
    timing = common.interleaved_steady(
        cases, repeats=cfg.repeats, target_block_s=cfg.block_s, warmup=1
    )
    for name, tm in timing.items():
        row[name] = {**tm, "samples_per_s": cfg.n / tm["step_s"]["median"]}
    # FLOP/s against this machine's matmul rate at the field's GEMM shape (n x 256 x 256):
    # XLA's operation count of one field evaluation times the NFE, over the solve time
    field_flops = common.compiled_flops(jax.jit(field).lower(0.0, x0).compile())
    if field_flops and peak is not None:
        row["field_flops"] = field_flops
        for name, nfe_key, rate_key in (
            ("flowzoo", "flowzoo_nfe", "xla_flops_per_s"),
            ("jax_scan", "flowzoo_nfe", "xla_flops_per_s"),
            ("meta", "meta_nfe", "torch_flops_per_s"),
        ):
            own = peak.get(rate_key)
            if name in timing and row.get(nfe_key) and own:
                rate = field_flops * row[nfe_key] / timing[name]["step_s"]["median"]
                row[f"{name}_fraction_of_own_matmul"] = rate / own
    fz_s = timing["flowzoo"]["step_s"]["values"]

    def rounds(other: str) -> dict[str, Any]:
        vals = timing[other]["step_s"]["values"]
        return common.summarize([b / a for a, b in zip(fz_s, vals, strict=True)])

    row["scan_over_flowzoo"] = rounds("jax_scan")  # < 1: flowzoo slower than a plain scan
    if "meta" in timing:
        row["speedup_vs_meta"] = rounds("meta")  # headline: its median
        row["target"] = TARGET
        row["target_met"] = bool(row["speedup_vs_meta"]["median"] >= TARGET)
    else:
        row["speedup_vs_meta"], row["target"], row["target_met"] = None, TARGET, None
    return row


def report(rows) -> str:
    def rate(r, name):
        return common.fmt_rate(r[name]["samples_per_s"]) if name in r else None

    table = []
    for r in rows:
        sp = r["speedup_vs_meta"]
        table.append(
            [
                r["method"],
                r["num_steps"],
                r["flowzoo_nfe"],
                r.get("meta_nfe"),
                rate(r, "flowzoo"),
                rate(r, "jax_scan"),
                rate(r, "meta"),
                None if sp is None else f"{sp['median']:.2f}x ({sp['q1']:.2f}-{sp['q3']:.2f})",
                f">= {TARGET}x",
                "-" if r["target_met"] is None else ("met" if r["target_met"] else "MISSED"),
                f"{r['scan_over_flowzoo']['median']:.2f}",
                None if "max_abs_diff_meta" not in r else f"{r['max_abs_diff_meta']:.1e}",
                common.fmt_seconds(r["compile"]["total_s"]["median"]),
                common.fmt_bytes(r["memory"]["xla_step_bytes"]),
            ]
        )
    return common.format_table(
        [
            "method",
            "steps",
            "NFE fz",
            "NFE meta",
            "flowzoo/s",
            "scan/s",
            "meta/s",
            "fz vs meta (IQR)",
            "target",
            "",
            "scan/fz",
            "max|diff|",
            "compile",
            "XLA mem",
        ],
        table,
    )


# --------------------------------------------------------------------------- targets and docs table


def check(d: dict) -> list[dict[str, Any]]:
    """flowzoo's speed-up over Meta per method: ``[{"what", "value", "target", "met"}]``."""
    return [
        {
            "what": f"flowzoo vs meta {r['method']}",
            "value": common.dig(r, "speedup_vs_meta", "median"),
            "target": f">= {TARGET}",
            "met": r["target_met"],
        }
        for r in d["results"]
    ]


def render(d: dict) -> str:
    """The docs block: samples/s of flowzoo, a hand-written scan and Meta per method, the speed-up
    against its target."""
    rows = []
    for r in d["results"]:
        rows.append(
            [
                r["method"],
                r["num_steps"],
                f"{r.get('flowzoo_nfe')} / {r.get('meta_nfe', '-')}",
                common.fmt_rate(common.dig(r, "flowzoo", "samples_per_s")),
                common.fmt_rate(common.dig(r, "jax_scan", "samples_per_s")),
                common.fmt_rate(common.dig(r, "meta", "samples_per_s")),
                common.fmt_rounds(r.get("speedup_vs_meta")),
                f">= {r.get('target')}x",
                common.fmt_met(r.get("target_met")),
                None
                if r.get("scan_over_flowzoo") is None
                else f"{r['scan_over_flowzoo']['median']:.2f}",
                None if r.get("max_abs_diff_meta") is None else f"{r['max_abs_diff_meta']:.1e}",
                common.fmt_seconds(common.dig(r, "compile", "total_s", "median")),
                common.fmt_mem(r),
                common.fmt_pct(r.get("flowzoo_fraction_of_own_matmul")),
                common.fmt_pct(r.get("meta_fraction_of_own_matmul")),
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
        + common.md_table(
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="samples per solve (default 10000)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list: euler,midpoint")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 9)")
    ap.add_argument("--block-s", type=float, default=None, help="length of a timed block")
    ap.add_argument("--compile-repeats", type=int, default=None)
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-peer", action="store_true", help="skip Meta's flow_matching")
    ap.add_argument("--quick", action="store_true", help="n 1000, 3 short rounds (smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ode_meta.json"))
    cfg = ap.parse_args(argv)
    cfg.n = cfg.n or (1000 if cfg.quick else 10_000)
    cfg.repeats = cfg.repeats or (3 if cfg.quick else 9)
    cfg.block_s = cfg.block_s or (0.1 if cfg.quick else 1.0)
    cfg.compile_repeats = cfg.compile_repeats or (1 if cfg.quick else 2)
    use_meta = have_meta() and not cfg.no_peer
    if not have_meta():
        print("flow_matching (or torch) not installed: measuring flowzoo only")

    env = common.env_info(("torch", "flow_matching", "torchdiffeq", "diffrax", "equinox"))
    t_start = time.perf_counter()
    net, params = velocity_params()
    velocity = None
    if use_meta:
        torch.set_num_threads(cfg.torch_threads)
        velocity = meta_wrapper(torch_field(params))
    # the machine's float32 GEMM rate at the field's shape, XLA and (with Meta) torch
    peak = (
        None
        if cfg.quick
        else common.matmul_rate(
            cfg.n, HIDDEN[1], torch_threads=cfg.torch_threads if use_meta else None
        )
    )
    rows = []
    for method in cfg.methods.split(","):
        print(f"measuring {method} ({METHODS[method]} steps, n={cfg.n}) ...", flush=True)
        rows.append(measure_method(method, METHODS[method], cfg, net, params, velocity, peak))
    table = report(rows)
    load_after = common.load_average()
    print()
    print(table)
    payload = {
        "benchmark": "ode_meta",
        "env": env,
        "load_average_after": load_after,
        "config": {
            "field": "MLP [x, t] -> 3x256 SiLU -> 2, random weights (seed 0), float32",
            "n": cfg.n,
            "dim": DIM,
            "methods": {m: METHODS[m] for m in cfg.methods.split(",")},
            "time_grid": "linspace(0, 1, steps + 1)",
            "torch_threads": cfg.torch_threads if use_meta else None,
            "peer": "flow_matching.solver.ODESolver.sample" if use_meta else None,
            "quick": cfg.quick,
            "repeats": cfg.repeats,
            "block_s": cfg.block_s,
            "compile_repeats": cfg.compile_repeats,
            "ratio_method": "median over interleaved rounds of (meta seconds per solve / "
            "flowzoo seconds per solve) in the same round",
        },
        "matmul_rate": peak,
        "results": rows,
        "checks": check({"results": rows}),
        "table": table,
        "wall_s": time.perf_counter() - t_start,
    }
    path = common.write_json(cfg.out, payload)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
