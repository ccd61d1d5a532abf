"""The shipped pretrained models: export them from trained runs, and reproduce every card.

``python benchmarks/pretrained.py`` loads every shipped model (``flowzoo.zoo.pretrained``),
measures its card's figures again (``flowzoo.zoo.card_figures``: held-out NLL or bits/dim
with its standard error; energy distance, or FD and legibility, over three sampling draws)
and checks them against the card: a likelihood within three standard errors of the card's,
each sample figure within the card's spread widened on both sides by its range or 10% of
its mean, whichever is larger (another CPU draws other samples: three draws span about 1.7
standard deviations of a figure's sampling noise). The JSON (``--out``,
default ``benchmarks/results/pretrained.json``) holds both and the verdicts.

``python benchmarks/pretrained.py cards`` renders every card into ``docs/pretrained.md``
(between its ``cards:begin``/``cards:end`` markers); ``export`` does it too.

``python benchmarks/pretrained.py export --runs DIR --commit HASH [--times FILE]`` writes
``flowzoo/zoo/pretrained/NAME.{safetensors,json}`` for every run ``DIR/NAME`` of
:data:`SHIPPED` (each trained by ``flowzoo train NAME`` at commit ``HASH``): the weights,
then the card with the figures measured on the written file. ``--times`` is the training
driver's log (``== NAME rc=0 wall=S s ...`` lines with the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _common as common  # noqa: E402

SHIPPED = (
    "moons_realnvp",
    "moons_spline",
    "moons_maf",
    "eight_gaussians_realnvp",
    "checkerboard_realnvp",
    "checkerboard_spline",
    "fm_moons",
    "fm_8gaussians",
    "si_moons",
    "sbcfm_8gaussians",
    "ncsn_moons",
    "ebm_8gaussians",
    "realnvp_digits",
    "glow_digits",
    "sde_digits",
    "fm_digits",
    "glow_mnist",
    "fm_mnist",
)
"""The experiments whose weights ship with flowzoo (their recipes train on 2 CPU cores)."""

SUMMARY_KEYS = ("test_nll", "test_bpd", "energy_distance", "fd", "legibility", "steps")


def _data_text(config: dict[str, Any], n_test: int | None = None) -> str:
    """The card's data line; ``n_test``: the test images the figures used (the split can
    be smaller than ``data.n_test``)."""
    d = config["data"]
    if d["name"] in ("digits", "mnist"):
        n = n_test if n_test is not None else min(int(d["n_test"]), 5000)
        return (
            f"{d['name']} (flowzoo.data.image_dataset), fixed split: training split; held-out "
            f"figures on the first {n} test images"
        )
    return (
        f"{d['name']} (flowzoo.data.toy), seed {config['seed']}: {d['n_train']} training "
        f"points, {d['n_test']} held-out points"
    )


def _times(path: str | None) -> dict[str, dict[str, Any]]:
    """``{name: {"wall_seconds", "load_start", "load_end"}}`` from the driver's log."""
    if path is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        start = re.match(r"== (\S+) start \S+ load ([\d.]+)", line)
        end = re.match(r"== (\S+) rc=0 wall=(\d+) s end load ([\d.]+)", line)
        if start:
            out.setdefault(start[1], {})["load_start"] = float(start[2])
        if end:
            out.setdefault(end[1], {}).update(wall_seconds=int(end[2]), load_end=float(end[3]))
    return out


def export(args) -> None:
    from flowzoo import zoo

    out_dir = Path(zoo.PRETRAINED_DIR)
    times = _times(args.times)
    machine = {"cpu": common.cpu_id(), "cores": os.cpu_count()}
    for name in args.names or SHIPPED:
        run_dir = Path(args.runs) / name
        summary = json.loads((run_dir / "summary.json").read_text())
        config = json.loads((run_dir / "run.json").read_text())["config"]
        card = {
            "experiment": name,
            "command": f"flowzoo train {name}",
            "commit": args.commit,
            "data": _data_text(zoo.complete_config(config)),
            "training": {
                "steps": summary["steps"],
                "train_seconds": round(summary["train_seconds"], 1),
                "guide_train_seconds": summary.get("guide_train_seconds"),
                "run_wall_seconds": round(summary["wall_seconds"], 1),
                "machine": machine,
                "load_average": times.get(name),
                "note": "trained one after another on a shared 2-core machine: the times "
                "are not benchmarks",
            },
            "run_summary": {k: summary[k] for k in SUMMARY_KEYS if k in summary},
        }
        path = zoo.export_pretrained(run_dir, out_dir, card, name=name)
        t = time.perf_counter()
        figures = zoo.card_figures(zoo.pretrained(name))
        full = json.loads(path.read_text())
        full["figures"] = {**figures, "seconds": round(time.perf_counter() - t, 1)}
        full["data"] = _data_text(zoo.complete_config(config), figures.get("n_test"))
        path.write_text(json.dumps(full, indent=2) + "\n")
        print(f"{name}: {full['bytes']:,} bytes, {json.dumps(figures)[:200]}", flush=True)


CARDS_BEGIN, CARDS_END = "<!-- cards:begin -->", "<!-- cards:end -->"


def _card_figures(f: dict[str, Any]) -> str:
    parts = []
    if "test_bpd" in f:
        parts.append(f"test bits/dim {_fig(f, 'test_bpd')} (n = {f['n_test']})")
    if "test_nll" in f:
        parts.append(f"test NLL {_fig(f, 'test_nll')} nats (n = {f['n_test']})")
    if "energy_distance" in f:
        parts.append(f"energy distance {_fig(f, 'energy_distance')} (n = {f['n_samples']})")
    if "fd" in f:
        parts.append(
            f"FD {_fig(f, 'fd')}, legibility {_fig(f, 'legibility')} (n = {f['n_samples']}; "
            f"real-image floor {f['fd_floor']:.2f}, {f['legibility_floor']:.3f})"
        )
    return "; ".join(parts)


def _load_text(load: dict[str, Any] | None) -> str:
    if not load:
        return "load not recorded"
    return (
        f"load average {load.get('load_start')} at the start, {load.get('load_end')} at the "
        f"end; {load.get('wall_seconds')} s for the whole command"
    )


def render_cards() -> str:
    """The markdown of every shipped model card (one table row and one details block each)."""
    from flowzoo import zoo

    rows, blocks = [], []
    for name in zoo.pretrained_names():
        c = zoo.model_card(name)
        t = c["training"]
        guide = f" + {t['guide_train_seconds']:.0f} s guide" if t.get("guide_train_seconds") else ""
        rows.append(
            [
                f"`{name}`",
                f"{c['parameters']:,}",
                f"{c['bytes'] / 2**20:.2f} MB {c['dtype']}",
                f"{t['steps']:,} steps, {t['train_seconds']:.0f} s{guide}",
                _card_figures(c["figures"]),
            ]
        )
        blocks.append(
            f"### {name}\n\n* command: `{c['command']}` at commit `{c['commit']}`\n"
            f"* data: {c['data']}\n* machine: {t['machine']['cpu']}, {t['machine']['cores']} "
            f"cores, shared ({_load_text(t.get('load_average'))})\n"
            f"* file: `{c['file']}`, SHA-256 `{c['sha256']}`\n"
        )
    table = common.md_table(
        ["model", "parameters", "on disk", "training", "figures (mean [min, max] over 3 draws)"],
        rows,
    )
    return table + "\n\n" + "\n".join(blocks)


def write_cards(path: Path = ROOT / "docs" / "pretrained.md") -> None:
    text = path.read_text()
    head, rest = text.split(CARDS_BEGIN)
    _, tail = rest.split(CARDS_END)
    path.write_text(f"{head}{CARDS_BEGIN}\n{render_cards()}\n{CARDS_END}{tail}")


def _within_spread(measured: dict, card: dict) -> bool:
    lo, hi, mean = card["min"], card["max"], card["mean"]
    slack = max(hi - lo, 0.1 * abs(mean))
    return all(lo - slack <= v <= hi + slack for v in measured["draws"])


def verdicts(measured: dict[str, Any], card: dict[str, Any]) -> dict[str, bool]:
    """Which of the card's figures ``measured`` reproduces (see the module docstring)."""
    out = {}
    for key in ("test_nll", "test_bpd"):
        if key in card:
            out[key] = abs(measured[key] - card[key]) <= 3 * card[f"{key}_se"]
    for key in ("energy_distance", "fd", "legibility"):
        if key in card:
            out[key] = _within_spread(measured[key], card[key])
    return out


def reproduce(args) -> dict[str, Any]:
    from flowzoo import zoo

    rows = {}
    for name in args.names or zoo.pretrained_names():
        card = zoo.model_card(name)
        t = time.perf_counter()
        measured = zoo.card_figures(zoo.pretrained(name))
        rows[name] = {
            "card": card["figures"],
            "measured": measured,
            "seconds": round(time.perf_counter() - t, 1),
            "reproduced": verdicts(measured, card["figures"]),
        }
        print(name, rows[name]["reproduced"], flush=True)
    payload = {"env": common.env_info(), "models": rows}
    common.write_json(args.out, payload)
    return payload


def _fig(f: dict[str, Any], key: str) -> str:
    if key in ("test_nll", "test_bpd"):
        return f"{f[key]:.3f} ± {f[key + '_se']:.3f}" if key in f else "-"
    if key not in f:
        return "-"
    digits = 3 if key == "legibility" else 4 if key == "energy_distance" else 2
    return f"{f[key]['mean']:.{digits}f} [{f[key]['min']:.{digits}f}, {f[key]['max']:.{digits}f}]"


def render(d: dict[str, Any]) -> str:
    """The docs table: card and measured figures of every shipped model."""
    rows = []
    for name, r in d["models"].items():
        for key in ("test_nll", "test_bpd", "energy_distance", "fd", "legibility"):
            if key in r["card"]:
                ok = r["reproduced"].get(key)
                rows.append([name, key, _fig(r["card"], key), _fig(r["measured"], key), ok])
    return common.md_table(["model", "figure", "card", "measured", "reproduced"], rows)


def check(d: dict[str, Any]) -> list[dict[str, Any]]:
    """One target per shipped model: every figure of its card reproduced."""
    return [
        {"target": f"{name} reproduces its card", "met": all(r["reproduced"].values())}
        for name, r in d["models"].items()
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "command", nargs="?", choices=("reproduce", "export", "cards"), default="reproduce"
    )
    ap.add_argument("--names", type=lambda s: [n for n in s.split(",") if n], default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "pretrained.json"))
    ap.add_argument("--quick", action="store_true", help="(run_all) the same run")
    ap.add_argument("--runs", help="export: the folder of the trained runs")
    ap.add_argument("--commit", help="export: the commit the runs were trained at")
    ap.add_argument("--times", help="export: the training driver's log")
    args = ap.parse_args(argv)
    if args.command == "export":
        if not (args.runs and args.commit):
            ap.error("export needs --runs and --commit")
        export(args)
        write_cards()
    elif args.command == "cards":
        write_cards()
    else:
        reproduce(args)


if __name__ == "__main__":
    main()
