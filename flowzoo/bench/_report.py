"""``flowzoo bench samplers``: run the cells, keep results, write the leaderboard and plots.

``results.json`` holds the environment (versions, CPU count, load average before and after),
the settings, the noise floors and one record per cell (target, sampler, budget, seed); a
rerun with the same ``--out`` skips the cells it already holds. Each target runs at its
three default budgets (:func:`default_budgets`) over :data:`DEFAULT_SEEDS`.
``leaderboard.md`` (:func:`flowzoo.bench.leaderboard`) reports means and standard deviations
over the seeds and names a winner only beyond the seed-to-seed spread; ``<target>.png`` plots
energy distance against NFE and against steady-state wall time.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from .. import zoo as _zoo  # noqa: F401  (importing zoo registers the flow samplers)
from ..samplers import SAMPLERS
from ._harness import Settings, budgets_for, kind_of, noise_floor, run_cell
from ._leaderboard import leaderboard, plot_target
from ._learned import learned_target
from ._peers import PEERS, available
from ._targets import TARGETS

DEFAULT_NFE = (16, 128, 1024)
"""The default gradient (NFE) budgets of the 2-D targets and of learned targets."""
LITERATURE_NFE = (64, 512, 4096)
"""The default budgets of the higher-dimensional and the sampling literature's targets,
where tuned chains need a warm-up and SMC a fine temperature ladder."""
_LITERATURE = (
    "funnel",
    "ill_gaussian",
    "gmm32",
    "mog40",
    "many_well32",
    "blr_diabetes",
    "logreg_breast_cancer",
    "lgcp_synthetic",
)
DEFAULT_SEEDS = (0, 1, 2)
"""Every cell runs once per seed; the leaderboard reports mean ± sd over them."""
QUICK_TARGETS = ("mog40", "many_well32", "blr_diabetes")
QUICK_NFE = (LITERATURE_NFE[0],)
"""``--quick``: the smallest default budget of its three targets."""
QUICK_SETTINGS = Settings(n=500, repeats=1, warmup=False, rtols=(1e-2,))
"""``--quick``: fewer and smaller cells, one timed run without warm-up (timings indicative
only), one tolerance for the adaptive solvers."""


def default_budgets(target: str) -> tuple[int, ...]:
    """The three NFE budgets ``target`` runs at unless ``--nfe`` says otherwise."""
    return LITERATURE_NFE if target in _LITERATURE else DEFAULT_NFE


def _check_names(kind: str, names: list[str], choices) -> list[str]:
    bad = [n for n in names if n not in choices]
    if bad:
        raise ValueError(
            f"unknown {kind} {', '.join(bad)}; choose from {', '.join(sorted(choices))}"
        )
    return names


def environment() -> dict[str, Any]:
    import jax

    versions = {}
    for pkg in ("flowzoo", "jax", "jaxlib", "diffrax", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "devices": [str(d) for d in jax.devices()],
        "versions": versions,
        "load_average_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _key(cell: dict) -> str:
    return f"{cell['target']}|{cell['sampler']}|{cell['budget']}|{cell['seed']}|{cell['n']}"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not readable JSON ({err}); move it away to start over"
        ) from err


def _save(path: Path, results: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float))
    os.replace(tmp, path)


def run_benchmark(
    out: str | os.PathLike,
    *,
    targets: list[str] | None = None,
    samplers: list[str] | None = None,
    nfe: list[int] | None = None,
    seeds: list[int] | None = None,
    quick: bool = False,
    progress: bool = True,
    runs: list[str] | None = None,
    reference: str = "data",
    n: int | None = None,
) -> dict[str, Any]:
    """Run every missing cell, then write ``results.json``, ``leaderboard.md`` and plots.

    ``nfe``: budgets for every target (default: each target's :func:`default_budgets`;
    ``--quick``: :data:`QUICK_NFE`). ``seeds``: default :data:`DEFAULT_SEEDS`. ``runs``: run
    directories whose trained fields become learned targets
    (:func:`flowzoo.bench.learned_target` with ``reference``); without ``targets`` only
    those are benchmarked. ``n``: samples per cell (default: the settings').
    """
    if n is not None and n < 2:
        raise ValueError(f"--n must be at least 2, got {n}")
    learned = {}
    for run_dir in runs or []:
        target = learned_target(run_dir, reference)
        learned[target.name] = target
    default = [] if learned else list(QUICK_TARGETS if quick else TARGETS)
    targets = _check_names("target", targets or default, TARGETS) + list(learned)
    installed = [p for p in sorted(PEERS) if available(PEERS[p])]
    samplers = _check_names(
        "sampler", samplers or sorted(SAMPLERS) + installed, {**SAMPLERS, **PEERS}
    )
    missing = [s for s in samplers if s in PEERS and not available(PEERS[s])]
    if missing:
        raise ValueError(
            f"peer row(s) {', '.join(missing)} need(s) "
            f"{', '.join(sorted({PEERS[s].package for s in missing}))}; install the bench "
            "extra: pip install -e '.[bench]'"
        )
    if nfe is not None and any(int(b) < 1 for b in nfe):
        raise ValueError(f"--nfe budgets must be >= 1, got {nfe}")
    seeds = [int(k) for k in (seeds if seeds is not None else DEFAULT_SEEDS)]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers, got {seeds}")

    def budgets(t: str) -> list[int]:
        return [int(b) for b in (nfe or (QUICK_NFE if quick else default_budgets(t)))]

    settings = QUICK_SETTINGS if quick else Settings()
    if n is not None:
        settings = settings._replace(n=int(n))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = _load(path) or {"cells": [], "noise_floor": {}}
    results.update(environment=environment(), settings=settings._asdict())
    done = {_key(c) for c in results["cells"]}
    todo = [
        (t, s, b, seed)
        for t in targets
        for s in samplers
        for b in budgets_for(s, budgets(t), settings)
        for seed in seeds
        if f"{t}|{s}|{b}|{seed}|{settings.n}" not in done
    ]
    bar = _bar(len(todo), progress)
    built = {name: learned[name] if name in learned else TARGETS[name]() for name in targets}
    t_start = time.perf_counter()
    added: list[dict] = []
    for t, s, b, seed in todo:
        floor_key = f"{t}|{seed}|{settings.n}"
        if floor_key not in results["noise_floor"]:
            results["noise_floor"][floor_key] = noise_floor(built[t], seed, settings)
        try:
            cell = run_cell(built[t], s, b, seed, settings)
        except Exception as err:  # one failing cell (a solver that hits max_steps) is a row
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            cell = {
                "target": t,
                "sampler": s,
                "budget": b,
                "seed": seed,
                "n": settings.n,
                "kind": kind_of(s),
                "nfe": None,
                "num_steps": None,
                "diverged": True,
                "error": f"{type(err).__name__}: {first}"[:300],
            }
        if cell is not None:
            results["cells"].append(cell)
            added.append(cell)
            _save(path, results)
        if bar is not None:
            bar.set_postfix_str(f"{t} {s} {b:g}")
            bar.update(1)
    if bar is not None:
        bar.close()
    results["environment"]["load_average_end"] = os.getloadavg()
    results["environment"]["run_seconds"] = run_s = time.perf_counter() - t_start
    new = [c for c in added if "cell_seconds" in c]
    if new:  # what the harness costs beyond the samplers (compile + runs): scoring, bookkeeping
        sampler_s = sum(c["sampler_seconds"] for c in new)
        scoring_s = sum(c["scoring_seconds"] for c in new)
        results["overhead"] = {
            "sampler_seconds": sampler_s,
            "scoring_seconds": scoring_s,
            "bookkeeping_seconds": run_s - sum(c["cell_seconds"] for c in new),
            "scoring_fraction": scoring_s / sampler_s,
            "harness_fraction": (run_s - sampler_s - scoring_s) / sampler_s,
        }
    _save(path, results)
    cells = [
        c
        for c in results["cells"]
        if c["target"] in targets and c["seed"] in seeds and c["n"] == settings.n
    ]
    (out / "leaderboard.md").write_text(leaderboard(cells, results["noise_floor"]))
    for t in targets:
        floors = [results["noise_floor"].get(f"{t}|{k}|{settings.n}", {}) for k in seeds]
        floor = float(np.mean([f.get("energy_distance", np.nan) for f in floors]))
        plot_target(out / f"{t}.png", [c for c in cells if c["target"] == t], floor)
    return results


def _bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="cell", dynamic_ncols=True, file=sys.stderr)
