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
