"""``flowzoo bench samplers``: run the cells, keep results, write the leaderboard and plots.

``results.json`` holds the environment (versions, CPU count, load average before and after),
the settings, the noise floors and one record per cell; a rerun with the same ``--out``
skips the cells it already holds. ``leaderboard.md`` has, per target, the best sampler at
each NFE budget and every sampler's energy distance by budget; ``<target>.png`` plots energy
distance against NFE and against steady-state wall time (log axes, one curve per sampler).
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

from ..samplers import SAMPLERS
from ._harness import Settings, budgets_for, finite, kind_of, noise_floor, run_cell
from ._learned import learned_target
from ._peers import PEERS, available
from ._targets import TARGETS

DEFAULT_NFE = (8, 16, 32, 64, 128, 256, 512, 1024)
QUICK_NFE = (16, 64, 256)
QUICK_TARGETS = ("eight_gaussians", "two_moons", "banana")
QUICK_SETTINGS = Settings(n=500, repeats=1, warmup=False, rtols=(1e-2,))
"""``--quick``: fewer and smaller cells, one timed run without warm-up (timings indicative
only), one tolerance for the adaptive solvers."""


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
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    runs: list[str] | None = None,
    reference: str = "data",
    n: int | None = None,
) -> dict[str, Any]:
    """Run every missing cell, then write ``results.json``, ``leaderboard.md`` and plots.

    ``runs``: run directories whose trained fields become learned targets
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
    nfe = [int(b) for b in (nfe or (QUICK_NFE if quick else DEFAULT_NFE))]
    if any(b < 1 for b in nfe):
        raise ValueError(f"--nfe budgets must be >= 1, got {nfe}")
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
        (t, s, b)
        for t in targets
        for s in samplers
        for b in budgets_for(s, nfe, settings)
        if f"{t}|{s}|{b}|{seed}|{settings.n}" not in done
    ]
    bar = _bar(len(todo), progress)
    built = {name: learned[name] if name in learned else TARGETS[name]() for name in targets}
    t_start = time.perf_counter()
    added: list[dict] = []
    for t, s, b in todo:
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
    cells = [c for c in results["cells"] if c["target"] in targets and c["seed"] == seed]
    (out / "leaderboard.md").write_text(leaderboard(cells, results["noise_floor"], seed))
    for t in targets:
        floor = results["noise_floor"].get(f"{t}|{seed}|{settings.n}", {}).get("energy_distance")
        plot_target(out / f"{t}.png", [c for c in cells if c["target"] == t], floor)
    return results


def _bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="cell", dynamic_ncols=True, file=sys.stderr)


def _fmt(v, floor=None) -> str:
    if not finite(v):
        return "diverged"
    at_floor = floor is not None and finite(floor) and v <= 2 * abs(floor)
    return f"{v:.4f}" + ("*" if at_floor else "")


def leaderboard(cells: list[dict], floors: dict, seed: int) -> str:
    """The Markdown leaderboard: per target, best sampler per budget and every curve."""
    lines = [
        "# Sampler leaderboard",
        "",
        "Energy distance to exact samples (lower is better). The noise floor is the mean",
        "absolute energy distance between independent exact samples of the same size; the",
        "estimate is unbiased, so it can be negative. `*`: within twice the floor,",
        "indistinguishable from exact sampling at this n.",
        "",
    ]
    for target in sorted({c["target"] for c in cells}):
        rows = [c for c in cells if c["target"] == target]
        n = rows[0]["n"]
        floor = floors.get(f"{target}|{seed}|{n}", {}).get("energy_distance")
        lines += [f"## {target}", "", f"n = {n}; noise floor {_fmt(floor)}.", ""]
        budgets = sorted({c["budget"] for c in rows if c["kind"] != "ode" or c["num_steps"]})
        best = []
        for b in budgets:
            ok = [c for c in rows if c["budget"] == b and finite(c.get("energy_distance"))]
            if ok:
                top = min(ok, key=lambda c: c["energy_distance"])
                best.append(
                    f"| {b:g} | {top['sampler']} | {top['nfe']} | {_fmt(top['energy_distance'])} |"
                )
        lines += [
            "| NFE budget | best sampler | NFE used | energy distance |",
            "|---|---|---|---|",
            *best,
            "",
        ]
        cols = sorted({c["budget"] for c in rows})
        lines += [
            "| sampler | " + " | ".join(f"{b:g}" for b in cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for s in sorted({c["sampler"] for c in rows}):
            by_b = {c["budget"]: c for c in rows if c["sampler"] == s}
            cells_txt = [
                _fmt(by_b[b].get("energy_distance"), floor) if b in by_b else "" for b in cols
            ]
            lines.append(f"| {s} | " + " | ".join(cells_txt) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_target(path: Path, rows: list[dict], floor: float | None = None) -> None:
    """Energy distance against NFE and against wall time, one curve per sampler; values
    below a tenth of the noise floor are drawn at that level, the floor as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    low = 0.1 * floor if floor and floor > 0 else 1e-5
    colors = plt.get_cmap("tab20")
    for i, s in enumerate(sorted({c["sampler"] for c in rows})):
        pts = [c for c in rows if c["sampler"] == s and finite(c.get("energy_distance"))]
        pts = sorted((c for c in pts if c.get("nfe")), key=lambda c: c["nfe"])
        if not pts:
            continue
        ed = [max(c["energy_distance"], low) for c in pts]
        style = dict(marker="os^v"[i % 4], color=colors(i % 20), label=s, ms=4)
        axes[0].plot([c["nfe"] for c in pts], ed, **style)
        axes[1].plot([c["wall_seconds"] for c in pts], ed, **style)
    for ax, xlabel in zip(axes, ("NFE", "steady-state wall time (s)"), strict=True):
        if floor and floor > 0:
            ax.axhline(
                floor, color="k", ls="--", lw=1, label="noise floor" if ax is axes[1] else None
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("energy distance to exact samples")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(rows[0]["target"] if rows else "")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
