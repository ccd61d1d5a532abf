"""The leaderboard over seeds: per (target, sampler, budget) the mean and standard deviation
of each metric over the seeds, winners that beat the runner-up beyond the seed-to-seed
spread, and the plots.

A winner is named at a budget only where the best sampler (lowest mean energy distance over
the seeds) beats the runner-up beyond the noise: the paired differences over the common
seeds, ``d_s = ED(runner-up, s) - ED(best, s)``, must have a mean above the one-sided 95%
Student-t bound ``t_{k-1} sd(d) / sqrt(k)`` and above the exact-sampling noise floor; two
samplers whose means are both within the floor tie. Otherwise the cell lists the samplers
that tie with the best, in the order of their means, down to the first one the best beats. Energy distance estimates are unbiased, so they can be negative;
plots draw them on a symmetric-log axis that is linear within the noise floor.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ._harness import finite

T95 = {2: 6.314, 3: 2.920, 4: 2.353, 5: 2.132, 6: 2.015, 7: 1.943, 8: 1.895, 9: 1.860}
"""One-sided 95% quantiles of Student's t by the number of paired seeds ``k`` (``k - 1``
degrees of freedom); 1.645 (the normal's) beyond nine."""

METRIC = "energy_distance"
"""The metric the leaderboard ranks by (lower is better)."""


def group(cells: list[dict]) -> dict[tuple, dict[int, dict]]:
    """Cells by ``(target, sampler, budget)``, then by seed."""
    out: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for c in cells:
        out[c["target"], c["sampler"], c["budget"]][c["seed"]] = c
    return out


def stat(by_seed: dict[int, dict], key: str) -> tuple[float, float, int]:
    """Mean, standard deviation (ddof 1; 0 for one seed) and count of ``key`` over seeds;
    NaN mean where any seed diverged or lacks the metric."""
    vals = [c.get(key) for c in by_seed.values()]
    if not vals or not all(finite(v) for v in vals):
        return math.nan, math.nan, len(vals)
    v = np.asarray(vals, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, v.size


OVER_BUDGET = 1.1
"""A cell whose mean reported NFE exceeds its budget by more than this factor (NUTS, whose
trajectory lengths are random and whose budget buys transitions at a nominal cost) is shown
with the NFE it used but does not compete at that budget."""


def over_budget(by_seed: dict[int, dict]) -> float | None:
    """The mean NFE used where it exceeds :data:`OVER_BUDGET` times the cells' NFE budget
    (fixed-step cells only), else ``None``."""
    cells = list(by_seed.values())
    if not all(c.get("num_steps") and c.get("nfe") for c in cells):
        return None
    used = float(np.mean([c["nfe"] for c in cells]))
    return used if used > OVER_BUDGET * float(cells[0]["budget"]) else None


def ties(runs: dict[str, dict[int, dict]], floor: float | None) -> tuple[str | None, list[str]]:
    """The best sampler of one budget and the samplers that tie with it (best first).

    Samplers are taken in the order of their means; each ties while it cannot be told from
    the best, and the first that can ends the list (a sampler with a still higher mean counts
    as beaten even when its own seeds scatter widely). So a winner is named exactly where
    the best beats the runner-up. ``runs``: sampler -> seed -> cell. Only samplers finite on
    every seed and within the budget (:func:`over_budget`) compete."""
    means = {s: stat(by, METRIC)[0] for s, by in runs.items() if over_budget(by) is None}
    ok = sorted((s for s, m in means.items() if math.isfinite(m)), key=means.get)
    if not ok:
        return None, []
    best, fl = ok[0], abs(floor) if floor is not None and finite(floor) else 0.0
    tied = [best]
    for s in ok[1:]:
        seeds = sorted(set(runs[s]) & set(runs[best]))
        d = np.array([runs[s][k][METRIC] - runs[best][k][METRIC] for k in seeds])
        bound = fl
        if d.size > 1:
            bound = max(bound, T95.get(d.size, 1.645) * d.std(ddof=1) / math.sqrt(d.size))
        both_at_floor = means[best] <= fl and means[s] <= fl
        if not (d.size == 0 or both_at_floor or d.mean() <= bound):
            break  # beaten: so is every sampler with a higher mean
        tied.append(s)
    return best, tied


def _pm(mean: float, sd: float, k: int, fmt: str = "{:.4f}") -> str:
    if not math.isfinite(mean):
        return "diverged"
    return fmt.format(mean) + (f" ± {fmt.replace('+', '').format(sd)}" if k > 1 else "")


def _winner_text(best: str | None, tied: list[str]) -> str:
    if best is None:
        return "none finite"
    if len(tied) == 1:
        return f"**{best}**"
    shown = ", ".join(tied[:4]) + (f" (+{len(tied) - 4} more)" if len(tied) > 4 else "")
    return f"tie: {shown}"


def _table(rows: dict, samplers: list[str], budgets: list, cell_text) -> list[str]:
    lines = [
        "| sampler | " + " | ".join(f"{b:g}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for s in samplers:
        txt = [cell_text(rows[s, b]) if (s, b) in rows else "" for b in budgets]
        if any(txt):
            lines.append(f"| {s} | " + " | ".join(txt) + " |")
    return lines + [""]


def _target_section(target: str, grouped: dict, floors: dict) -> list[str]:
    rows = {(s, b): by for (t, s, b), by in grouped.items() if t == target}
    any_cell = next(iter(next(iter(rows.values())).values()))
    seeds = sorted({k for by in rows.values() for k in by})
    floor = np.mean(
        [floors.get(f"{target}|{k}|{any_cell['n']}", {}).get(METRIC, math.nan) for k in seeds]
    )
    samplers = sorted({s for s, _ in rows})
    budgets = sorted({b for _, b in rows})
    fixed = sorted(
        {b for (s, b), by in rows.items() if any(c.get("num_steps") for c in by.values())}
    )
    lines = [
        f"## {target}",
        "",
        f"n = {any_cell['n']}; seeds {', '.join(map(str, seeds))}; noise floor {floor:.4f}.",
        "",
        "| NFE budget | winner | energy distance (mean ± sd) |",
        "|---|---|---|",
    ]
    for b in fixed:
        best, tied = ties({s: by for (s, bb), by in rows.items() if bb == b}, floor)
        value = _pm(*stat(rows[best, b], METRIC)) if best else ""
        lines.append(f"| {b:g} | {_winner_text(best, tied)} | {value} |")
    lines += [
        "",
        "Energy distance, mean ± sd over the seeds (`[NFE n]`: the cell spent n evaluations,",
        f"over {OVER_BUDGET:g} times its budget, and does not compete):",
        "",
    ]
    lines += _table(rows, samplers, budgets, _ed_text)
    cells = [c for by in rows.values() for c in by.values()]
    if any("mean_error_sd" in c for c in cells):
        lines += [
            "Moment errors in reference standard deviations, `mean / std`: the RMS over "
            "coordinates of the mean's error and of the marginal std's relative error "
            f"(exact sampling: {floors_text(floors, target, seeds, any_cell['n'])}):",
            "",
        ]
        lines += _table(rows, samplers, budgets, _moments_text)
    if any("log_z_error" in c or "log_z" in c for c in cells):
        key = "log_z_error" if any("log_z_error" in c for c in cells) else "log_z"
        lines += [f"`{key}` (nats) and importance ESS, mean ± sd:", ""]
        with_z = [
            s
            for s in samplers
            if any(key in c for (ss, _), by in rows.items() if ss == s for c in by.values())
        ]
        lines += _table(rows, with_z, budgets, lambda by: _logz_text(by, key))
    if any("ess_per_gradient" in c for c in cells):
        chains = [
            s
            for s in samplers
            if any(
                "ess_per_gradient" in c
                for (ss, _), by in rows.items()
                if ss == s
                for c in by.values()
            )
        ]
        lines += ["ESS per gradient evaluation (mean over coordinates, warm-up included):", ""]
        lines += _table(
            rows, chains, budgets, lambda by: _pm(*stat(by, "ess_per_gradient"), fmt="{:.2e}")
        )
    return lines


def floors_text(floors: dict, target: str, seeds: list[int], n: int) -> str:
    vals = [floors.get(f"{target}|{k}|{n}", {}) for k in seeds]
    m = np.mean([v.get("mean_error_sd", math.nan) for v in vals])
    s = np.mean([v.get("std_error_rel", math.nan) for v in vals])
    return f"{m:.3f} / {s:.3f}"


def _ed_text(by: dict) -> str:
    used = over_budget(by)
    return _pm(*stat(by, METRIC)) + (f" [NFE {used:.0f}]" if used is not None else "")


def _moments_text(by: dict) -> str:
    m, s = stat(by, "mean_error_sd"), stat(by, "std_error_rel")
    if not math.isfinite(m[0]):
        return "diverged" if not math.isfinite(stat(by, METRIC)[0]) else ""
    return f"{m[0]:.3f} / {s[0]:.3f}"


def _logz_text(by: dict, key: str) -> str:
    z = stat(by, key)
    if not math.isfinite(z[0]):
        return ""
    ess = stat(by, "importance_ess")
    return _pm(*z, fmt="{:+.3f}") + (f" (ESS {ess[0]:.0f})" if math.isfinite(ess[0]) else "")


def leaderboard(cells: list[dict], floors: dict) -> str:
    """The Markdown leaderboard of ``cells`` (any number of seeds): per target, the winner
    or the ties at each fixed NFE budget, then each sampler's metrics by budget."""
    lines = [
        "# Sampler leaderboard",
        "",
        "Energy distance to exact (or shipped reference) samples, lower is better; mean ± sd",
        "over the seeds. The noise floor is the mean absolute energy distance between",
        "independent exact samples of the same size; the estimate is unbiased, so it can be",
        "negative. A winner is named only where it beats every other sampler beyond the",
        "seed-to-seed spread (paired over the seeds: one-sided 95% t bound) and beyond the",
        "noise floor; otherwise the samplers that tie with the best are listed. Cells that",
        f"spent more than {OVER_BUDGET:g} times their NFE budget do not compete.",
        "",
    ]
    grouped = group(cells)
    for target in sorted({t for t, _, _ in grouped}):
        lines += _target_section(target, grouped, floors)
    return "\n".join(lines)


def plot_target(path: Path, cells: list[dict], floor: float | None = None) -> None:
    """Energy distance against NFE and against wall time, one curve per sampler (means over
    the seeds, sd as error bars), on a symmetric-log axis linear within the noise floor
    (drawn dashed), so negative estimates show where they are; the legend sits outside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = group(cells)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    colors = plt.get_cmap("tab20")
    lin = abs(floor) if floor and finite(floor) and floor != 0 else 1e-4
    for i, s in enumerate(sorted({s for _, s, _ in grouped})):
        pts = []
        for (_, ss, _), by in grouped.items():
            m, sd, _ = stat(by, METRIC)
            if ss == s and math.isfinite(m) and all(c.get("nfe") for c in by.values()):
                nfe = np.mean([c["nfe"] for c in by.values()])
                wall = np.mean([c["wall_seconds"] for c in by.values()])
                pts.append((nfe, wall, m, sd))
        if not pts:
            continue
        nfe, wall, m, sd = map(np.asarray, zip(*sorted(pts), strict=True))
        style = dict(marker="os^v"[i % 4], color=colors(i % 20), label=s, ms=4, capsize=2)
        axes[0].errorbar(nfe, m, yerr=sd, **style)
        axes[1].errorbar(wall, m, yerr=sd, **style)
    for ax, xlabel in zip(axes, ("NFE", "steady-state wall time (s)"), strict=True):
        ax.axhline(lin, color="k", ls="--", lw=1, label="noise floor" if ax is axes[1] else None)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=lin)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("energy distance (symlog; linear within the floor)")
    axes[1].legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(cells[0]["target"] if cells else "")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
