"""Exact assignment solvers for minibatch OT: time per solve and optimality, one process.

The problem is the one ``flowzoo.flow_matching.exact_assignment`` solves for the exact-OT
coupling: a square squared-Euclidean cost between two batches of ``n`` standard-normal
points (noise against noise-like data; float64 cost), ``n`` in ``--sizes`` and event
dimension in ``--dims``. Contenders (each skipped when its package is missing):

* ``pot``: POT's network simplex ``ot.emd`` with uniform weights (a vertex of the Birkhoff
  polytope, a permutation), ``numThreads=1``; ``pot_threads``: the same with
  ``numThreads=os.cpu_count()`` (only has an effect if POT was built with OpenMP);
* ``lap``: ``lap.lapjv`` (PyPI ``lap``, Jonker-Volgenant, shortest augmenting paths);
* ``lapjv``: ``lapjv.lapjv`` (PyPI ``lapjv``, Jonker-Volgenant with AVX2);
* ``scipy``: ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant, Crouse's variant);
* ``flowzoo``: ``flowzoo.flow_matching.host_assignment(cost, event_size=dim)``, the
  library's own choice (``solver="auto"``).

The solvers are interleaved (round ``r`` solves a fresh problem with every contender, in an
order rotated each round) and the median time per solve is reported, with the largest
relative gap of each contender's total cost to POT's (an optimal solver: round-off only,
below 1e-6). ``--gil`` also checks, for each contender, whether the GIL is released during
a solve: the longest gap between the ticks of a thread that sleeps 1 ms per tick, while
the solver runs on the main thread (a solve-long gap: the solver holds the GIL). Unlike a
throughput test with two solver threads, this does not need an idle second core.

Run: ``python benchmarks/assignment_solvers.py [--sizes 256,1024] [--dims 2,64]
[--repeats 15] [--gil] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.assignment_solvers
    from benchmarks import _common as common

from flowzoo.flow_matching import host_assignment

ot = common.optional_import("ot")
lap = common.optional_import("lap")
lapjv = common.optional_import("lapjv")
scipy_opt = common.optional_import("scipy.optimize")

Solver = Callable[[np.ndarray], np.ndarray]


def _pot(threads: int) -> Solver:
    def solve(cost):
        n = cost.shape[0]
        w = np.full(n, 1.0 / n)
        plan = ot.emd(w, w, cost, numItermax=max(100_000, 20 * n * n), numThreads=threads)
        return np.argmax(plan, axis=1)

    return solve


def solvers(dim: int | None = None) -> dict[str, Solver]:
    """The contenders whose packages are installed (``flowzoo``'s choice for ``dim``)."""
    out: dict[str, Solver] = {}
    if ot is not None:
        out["pot"] = _pot(1)
        out["pot_threads"] = _pot(os.cpu_count() or 1)
    if lap is not None:
        out["lap"] = lambda c: lap.lapjv(c, extend_cost=False)[1]
    if lapjv is not None:
        out["lapjv"] = lambda c: lapjv.lapjv(c)[0]
    if scipy_opt is not None:
        out["scipy"] = lambda c: scipy_opt.linear_sum_assignment(c)[1]
    out["flowzoo"] = lambda c: host_assignment(c, event_size=dim)
    return out


def problem(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    a, b = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
    return np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def compare(n: int, dim: int, repeats: int, seed: int = 0) -> dict:
    """Interleaved rounds: times per solve and cost gaps to POT for every contender."""
    contenders = solvers(dim)
    names = list(contenders)
    rng = np.random.default_rng(seed)
    times = {k: [] for k in names}
    gaps = {k: [] for k in names}
    for r in range(repeats + 1):  # round 0 warms up (imports, allocations)
        cost = np.ascontiguousarray(problem(rng, n, dim))
        ref = None
        order = names[r % len(names) :] + names[: r % len(names)]
        totals = {}
        for name in order:
            t0 = time.perf_counter()
            perm = np.asarray(contenders[name](cost))
            elapsed = time.perf_counter() - t0
            if np.unique(perm).size != n:
                raise RuntimeError(f"{name} did not return a permutation at n={n}")
            totals[name] = float(cost[np.arange(n), perm].sum())
            if r:
                times[name].append(elapsed)
        ref = totals.get("pot", min(totals.values()))
        for name in names:
            gaps[name].append(abs(totals[name] - ref) / ref)
    return {
        name: {
            "median_s": float(np.median(times[name])),
            "min_s": float(np.min(times[name])),
            "max_rel_gap_to_pot": float(np.max(gaps[name])),
        }
        for name in names
    }


def gil_gap(solve: Solver, cost: np.ndarray) -> dict[str, float]:
    """The solve time and the longest gap between ticks of a 1 ms ticker thread meanwhile
    (close to the solve time: the solver holds the GIL; a few ms: it releases it)."""
    solve(cost)  # warm up
    stop, gaps = threading.Event(), []

    def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    solve(cost)
    solve_s = time.perf_counter() - t0
    stop.set()
    ticker.join()
    return {"solve_s": solve_s, "longest_tick_gap_s": max(gaps)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,1024")
    p.add_argument("--dims", default="2,64")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--gil", action="store_true", help="check which solvers release the GIL")
    p.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "results", "assignment_solvers.json"),
    )
    args = p.parse_args(argv)
    env = common.env_info(("pot", "lap", "lapjv", "scipy"))
    results = []
    for dim in [int(d) for d in args.dims.split(",")]:
        for n in [int(s) for s in args.sizes.split(",")]:
            res = compare(n, dim, args.repeats)
            results.append({"n": n, "dim": dim, "solvers": res})
            print(f"n={n} dim={dim}", {k: f"{v['median_s'] * 1e3:.2f} ms" for k, v in res.items()})
    gil = None
    if args.gil:
        cost = problem(np.random.default_rng(1), 1024, 2)
        gil = {name: gil_gap(solve, cost) for name, solve in solvers(2).items()}
        print("solve time and longest GIL-free tick gap during it:", gil)
    headers = ["n", "dim", *solvers(), "max gap to POT"]  # times: median per solve
    rows = [
        [
            r["n"],
            r["dim"],
            *[common.fmt_seconds(v["median_s"]) for v in r["solvers"].values()],
            f"{max(v['max_rel_gap_to_pot'] for v in r['solvers'].values()):.1e}",
        ]
        for r in results
    ]
    print(common.format_table(headers, rows))
    payload = {
        "benchmark": "assignment_solvers",
        "env": env,
        "load_average_after": common.load_average(),
        "repeats": args.repeats,
        "results": results,
        "gil_progress": gil,
    }
    print("wrote", common.write_json(args.out, payload))
    return payload


if __name__ == "__main__":
    sys.exit(main() and None)
