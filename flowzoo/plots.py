"""Plots written by training runs (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _limits(data: np.ndarray, pad: float = 0.1) -> tuple[tuple[float, float], tuple[float, float]]:
    lo = np.quantile(data[:, :2], 0.001, axis=0)
    hi = np.quantile(data[:, :2], 0.999, axis=0)
    span = hi - lo
    lo, hi = lo - pad * span, hi + pad * span
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def plot_samples(path: str | Path, data: np.ndarray, samples: np.ndarray, title: str = "") -> None:
    """Side-by-side scatter of held-out data and model samples (first two coordinates)."""
    plt = _pyplot()
    (x0, x1), (y0, y1) = _limits(data)
    aspect = (y1 - y0) / max(x1 - x0, 1e-9)
    fig, axes = plt.subplots(
        1, 2, figsize=(9, min(max(4.5 * aspect + 0.8, 2.5), 6)), sharex=True, sharey=True
    )
    for ax, pts, name in ((axes[0], data, "held-out data"), (axes[1], samples, "model samples")):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5, lw=0, color="k")
        ax.set_title(f"{name} (n={len(pts)})")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def density_grid(
    log_prob: Callable[[np.ndarray], np.ndarray], data: np.ndarray, grid: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a 2-D log-density on a ``grid x grid`` lattice covering ``data``.

    Returns ``(xs, ys, logp)`` with ``logp`` of shape ``(grid, grid)`` indexed ``[iy, ix]``.
    """
    (x0, x1), (y0, y1) = _limits(data)
    xs, ys = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
    xx, yy = np.meshgrid(xs, ys)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=-1).astype(np.float32)
    return xs, ys, np.asarray(log_prob(pts)).reshape(grid, grid)


def plot_density(
    path: str | Path, xs: np.ndarray, ys: np.ndarray, logp: np.ndarray, title: str = ""
) -> None:
    """Heat map of ``exp(logp)`` on the lattice from :func:`density_grid`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    dens = np.exp(np.clip(logp, -50.0, 50.0))
    ax.imshow(
        dens, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="magma", aspect="equal"
    )
    ax.set_title(title or "model density")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _tile(images: np.ndarray, cols: int) -> np.ndarray:
    """``(n, H, W, C)`` -> one ``(rows * (H + 1) - 1, cols * (W + 1) - 1, C)`` mosaic."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = img
    return out


def plot_image_grid(
    path: str | Path,
    samples: np.ndarray,
    levels: int,
    title: str = "",
    data: np.ndarray | None = None,
    max_images: int = 64,
) -> None:
    """A grid of model samples (and held-out images beside them) as a PNG.

    Args:
      path: output file.
      samples: ``(n, H, W, C)`` grey levels ``0 .. levels - 1`` (the first ``max_images``
        are shown; ``C`` is 1 or 3).
      levels: number of grey levels (the colour scale maps ``levels - 1`` to white).
      title: figure title.
      data: optional ``(m, H, W, C)`` held-out images for comparison, same scale.
      max_images: images per grid (a square-ish grid, white separators).
    """
    plt = _pyplot()
    panels = [("model samples", samples)] if data is None else [("held-out data", data)]
    if data is not None:
        panels.append(("model samples", samples))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, imgs) in zip(axes[0], panels, strict=True):
        imgs = np.clip(np.asarray(imgs, np.float32)[:max_images] / (levels - 1), 0.0, 1.0)
        cols = int(np.ceil(np.sqrt(len(imgs))))
        grid = _tile(imgs, cols)
        if grid.shape[-1] == 1:
            ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(grid, interpolation="nearest")
        ax.set_title(f"{name} ({len(imgs)})")
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (lines cut short by a kill are skipped)."""
    import json

    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def plot_curves(path, records: list[dict], title: str = "") -> list[str]:
    """Training and evaluation curves of a run's ``metrics.jsonl`` records, one panel each:
    the training loss (means over each logged call) and every ``eval/*`` metric, against
    the step. Missing (``null``) values are left out. ``path``: a file name or a binary
    file object (PNG). Returns the plotted metric names."""
    train = [r for r in records if r.get("loss") is not None]
    names = sorted({k for r in records for k in r if k.startswith("eval/")})
    panels = [("loss", train)] + [(n, [r for r in records if r.get(n) is not None]) for n in names]
    panels = [(n, rs) for n, rs in panels if rs]
    if not panels:
        raise ValueError("no training or evaluation records to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, rs) in zip(axes[0], panels, strict=True):
        ax.plot([r["step"] for r in rs], [r[name] for r in rs], marker="." if len(rs) < 50 else "")
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
    return [n for n, _ in panels]
