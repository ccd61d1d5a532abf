"""ODE sampling through ``flowzoo.integrate.solve_ode``: throughput at matched NFE, accuracy vs NFE.

Time convention: flow matching, t=0 noise ``z ~ N(0, I)``, t=1 data; every solve integrates a
batch of ``n`` samples (one state ``(n, dim)``, shared steps) from t=0 to t=1 in float32.

Vector fields:

* ``mlp``: a fixed random tanh MLP ``v(t, x) = W3 tanh(W2 tanh(W1 [x, t] + b1) + b2)``,
  hidden width 128, seed 0, weights scaled so the flow moves points by O(1); dims 2 and 64.
* ``oracle``: ``flowzoo.flow_matching.marginal_velocity`` of 1,000 two-moons points (noise
  0.05, standardised) under the conditional-OT path with ``sigma_min = 0.01`` (2-D); the
  exact marginal field, which transports N(0, I) onto the training points.

Measured:

1. **throughput at matched NFE** (``--nfe``, default 48): fixed-step Euler (48 steps),
   midpoint / Heun (24), RK4 (12), Tsit5 / Dopri5 at fixed steps (8 steps = 49 NFE);
   samples/s = n / (median steady-state seconds per solve; interleaved repeats,
   :func:`_common.interleaved_steady`), and compile time (trace + lower + XLA compile of a
   fresh solve, :func:`_common.measure_compile`) and XLA's memory analysis of the compiled
   solve (:func:`_common.memory`) reported separately.
2. **accuracy vs NFE**: RMS over samples of ``|x1 - x1_ref|`` where ``x1_ref`` is Dopri5 at
   ``rtol = atol = 1e-7`` from the same noise; fixed-step solvers at NFE budgets
   ``--budgets`` and adaptive Tsit5 / Dopri5 at several tolerances (their own NFE).
   For the oracle also the mean distance to the nearest training point (0 = memorised).

Run ``python benchmarks/ode_sampling.py [--quick] [--n 4096] [--out PATH]``; writes
``benchmarks/results/ode_sampling.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.ode_sampling
    from benchmarks import _common as common

from flowzoo.integrate import solve_ode, solver_stages

FIXED = ("euler", "midpoint", "heun", "rk4", "tsit5", "dopri5")
ADAPTIVE = ("tsit5", "dopri5")
REF = {"solver": "dopri5", "rtol": 1e-7, "atol": 1e-7, "max_steps": 100_000}
HIDDEN = 128


# --------------------------------------------------------------------------- fields


def mlp_field(dim: int, seed: int = 0):
    """A fixed random tanh MLP ``(t, x) -> v`` (closes over its weights)."""
    k1, k2, k3, k4, k5 = jax.random.split(jax.random.key(seed), 5)
    w1 = jax.random.normal(k1, (dim + 1, HIDDEN)) * (1.5 / np.sqrt(dim + 1))
    b1 = 0.5 * jax.random.normal(k2, (HIDDEN,))
    w2 = jax.random.normal(k3, (HIDDEN, HIDDEN)) * (1.5 / np.sqrt(HIDDEN))
    b2 = 0.5 * jax.random.normal(k4, (HIDDEN,))
    w3 = jax.random.normal(k5, (HIDDEN, dim)) * (1.0 / np.sqrt(HIDDEN))

    def field(t, x):
        tt = jnp.full((x.shape[0], 1), t, x.dtype)
        h = jnp.tanh(jnp.concatenate([x, tt], 1) @ w1 + b1[None])
        h = jnp.tanh(h @ w2 + b2[None])
        return h @ w3

    return field


def oracle_field(n_data: int = 1000):
    """``(field, data)`` for the two-moons marginal-velocity oracle, or ``None``."""
    fm = common.optional_import("flowzoo.flow_matching")
    if fm is None or not hasattr(fm, "marginal_velocity"):
        return None
    from flowzoo.data import toy
    from flowzoo.paths import cond_ot_path

    data = toy("two_moons", jax.random.key(1), n_data, noise=0.05)
    data = (data - data.mean(0)) / data.std(0)
    field = fm.marginal_velocity(cond_ot_path(sigma_min=0.01), data)
    return field, data


# --------------------------------------------------------------------------- solves


def fixed_steps(solver: str, nfe: int) -> int:
    """Steps giving (about) ``nfe`` evaluations: ``stages * n`` or ``1 + 6 n`` for FSAL."""
    stages, fsal = solver_stages(solver)
    return max(1, round((nfe - 1) / (stages - 1))) if fsal else max(1, nfe // stages)


def make_sampler(field, dim: int, n: int, **solve_kw):
    """``jit(key -> (x1, nfe))``: draw ``z ~ N(0, I)`` and integrate t=0 -> 1."""

    def run(key):
        z = jax.random.normal(key, (n, dim), jnp.float32)
        sol = solve_ode(field, z, 0.0, 1.0, **solve_kw)
        return sol.y1, sol.nfe

    return jax.jit(run)


def throughput(field, dim: int, cfg) -> list[dict[str, Any]]:
    cases, rows = {}, []
    for solver in FIXED:
        steps = fixed_steps(solver, cfg.nfe)
        fn = make_sampler(field, dim, cfg.n, solver=solver, num_steps=steps)
        _, nfe = fn(jax.random.key(0))
        compile_s = common.measure_compile(
            lambda s=solver, k=steps: (
                make_sampler(field, dim, cfg.n, solver=s, num_steps=k),
                (jax.random.key(0),),
            ),
            repeats=cfg.compile_repeats,
        )
        step = lambda c, fn=fn: (jax.random.fold_in(c[0], 1), fn(c[0])[0])
        cases[solver] = (step, (jax.random.key(0), jnp.zeros((cfg.n, dim))))
        rows.append(
            {
                "solver": solver,
                "num_steps": steps,
                "nfe": int(nfe),
                "compile_s": compile_s["total_s"]["median"],
                "memory": compile_s["memory"],  # XLA buffers of the jitted solve
            }
        )
    timing = common.interleaved_steady(
        cases, repeats=cfg.repeats, target_block_s=cfg.block_s, warmup=1
    )
    for row in rows:
        t = timing[row["solver"]]["step_s"]["median"]
        row.update(
            {"solve_s": t, "samples_per_s": cfg.n / t, "cpu_s": timing[row["solver"]]["cpu_s"]}
        )
    return rows


def accuracy(field, dim: int, cfg, data=None) -> dict[str, Any]:
    key = jax.random.key(42)
    ref, ref_nfe = make_sampler(field, dim, cfg.n_acc, **REF)(key)

    def score(x1, nfe, **info):
        row = {**info, "nfe": int(nfe), "rms_error": float(jnp.sqrt(jnp.mean((x1 - ref) ** 2)))}
        if data is not None:
            d = jnp.sum((x1[:, None, :] - data[None]) ** 2, -1)
            row["nearest_data_dist"] = float(jnp.mean(jnp.sqrt(jnp.min(d, axis=1))))
        return row

    rows = []
    for budget in cfg.budgets:
        for solver in FIXED:
            steps = fixed_steps(solver, budget)
            x1, nfe = make_sampler(field, dim, cfg.n_acc, solver=solver, num_steps=steps)(key)
            rows.append(score(x1, nfe, solver=solver, num_steps=steps, budget=budget))
    for solver in ADAPTIVE:
        for tol in cfg.tols:
            x1, nfe = make_sampler(field, dim, cfg.n_acc, solver=solver, rtol=tol, atol=tol)(key)
            rows.append(score(x1, nfe, solver=f"{solver} (adaptive)", tol=tol))
    out = {"reference": {**REF, "nfe": int(ref_nfe)}, "rows": rows}
    if data is not None:
        d = jnp.sum((ref[:, None, :] - data[None]) ** 2, -1)
        out["reference"]["nearest_data_dist"] = float(jnp.mean(jnp.sqrt(jnp.min(d, axis=1))))
    return out


# --------------------------------------------------------------------------- docs table


def render(d: dict) -> str:
    """The docs block: samples/s, compile time and memory of every solver at matched NFE."""
    rows = []
    for dim, res in d["results"]["mlp"].items():
        for r in res["throughput"]:
            rows.append(
                [
                    dim,
                    r["solver"],
                    r["num_steps"],
                    r["nfe"],
                    common.fmt_rate(r.get("samples_per_s")),
                    common.fmt_seconds(r.get("compile_s")),
                    common.fmt_mem(r),
                ]
            )
    n = common.dig(d, "config", "n")
    return f"Random tanh MLP field, {n} samples per solve, matched NFE.\n\n" + common.md_table(
        ["dim", "solver", "steps", "NFE", "samples/s", "compile", "memory"], rows
    )


# --------------------------------------------------------------------------- main


def print_tables(name: str, thr, acc) -> None:
    if thr:
        print(f"\n== {name}: throughput at matched NFE ==")
        print(
            common.format_table(
                ["solver", "steps", "NFE", "solve", "samples/s", "compile", "XLA mem"],
                [
                    [
                        r["solver"],
                        r["num_steps"],
                        r["nfe"],
                        common.fmt_seconds(r["solve_s"]),
                        common.fmt_rate(r["samples_per_s"]),
                        common.fmt_seconds(r["compile_s"]),
                        common.fmt_bytes(r["memory"]["xla_step_bytes"]),
                    ]
                    for r in thr
                ],
            )
        )
    print(
        f"\n== {name}: accuracy vs NFE (ref: dopri5 rtol=atol=1e-7, NFE {acc['reference']['nfe']}) =="
    )
    extra = "nearest_data_dist" in acc["rows"][0]
    print(
        common.format_table(
            ["solver", "steps/tol", "NFE", "RMS error", *(["dist to data"] if extra else [])],
            [
                [
                    r["solver"],
                    r.get("num_steps", r.get("tol")),
                    r["nfe"],
                    f"{r['rms_error']:.2e}",
                    *([f"{r['nearest_data_dist']:.3f}"] if extra else []),
                ]
                for r in acc["rows"]
            ],
        )
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096, help="samples per solve (throughput)")
    ap.add_argument("--n-acc", type=int, default=1024, help="samples for accuracy tables")
    ap.add_argument("--nfe", type=int, default=48, help="matched NFE for throughput")
    ap.add_argument("--budgets", type=str, default="12,24,48,96")
    ap.add_argument("--tols", type=str, default="1e-3,1e-5")
    ap.add_argument("--dims", type=str, default="2,64")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--block-s", type=float, default=0.3)
    ap.add_argument("--compile-repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small settings for a smoke run")
    ap.add_argument(
        "--out", type=str, default=str(Path(__file__).parent / "results" / "ode_sampling.json")
    )
    cfg = ap.parse_args(argv)
    if cfg.quick:
        cfg.n, cfg.n_acc, cfg.repeats, cfg.block_s, cfg.compile_repeats = 512, 256, 3, 0.1, 1
        cfg.budgets = "12,48"
    cfg.budgets = [int(b) for b in cfg.budgets.split(",")]
    cfg.tols = [float(t) for t in cfg.tols.split(",")]
    dims = [int(d) for d in cfg.dims.split(",")]

    env = common.env_info(("diffrax", "equinox"))  # load average before the run
    t_start = time.perf_counter()
    results: dict[str, Any] = {"mlp": {}, "oracle": None}
    for dim in dims:
        field = mlp_field(dim)
        thr = throughput(field, dim, cfg)
        acc = accuracy(field, dim, cfg)
        results["mlp"][str(dim)] = {"throughput": thr, "accuracy": acc}
        print_tables(f"random MLP field, dim {dim}, n {cfg.n}", thr, acc)
    oracle = oracle_field()
    if oracle is None:
        print("\nflowzoo.flow_matching.marginal_velocity not available: oracle table skipped")
    else:
        field, data = oracle
        acc = accuracy(field, 2, cfg, data=data)
        results["oracle"] = {"accuracy": acc, "n_data": int(data.shape[0])}
        print_tables("marginal-velocity oracle (two moons, cond-OT sigma_min=0.01)", None, acc)
    payload = {
        "benchmark": "ode_sampling",
        "config": {k: v for k, v in vars(cfg).items() if k != "out"},
        "env": env,
        "load_average_after": common.load_average(),
        "results": results,
        "wall_s": time.perf_counter() - t_start,
    }
    path = common.write_json(cfg.out, payload)
    print(f"\nwrote {path} ({payload['wall_s']:.0f} s)", file=sys.stderr)
    return payload


if __name__ == "__main__":
    main()
