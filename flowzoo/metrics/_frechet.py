"""Fréchet distance between Gaussian fits of features, and classifier-based legibility.

These are the pieces of the image sample-quality metric (FID-style, Heusel et al. 2017, with
a small classifier trained on the data set itself in place of Inception): the features and
class probabilities come from :func:`flowzoo.zoo.image_classifier`; here they are only
compared. Computed in float64 NumPy on the host (the matrix square root needs the
precision; the arrays are at most a few thousand by a few hundred).
"""

from __future__ import annotations

import numpy as np

from .._types import ArrayLike, Float


def _as_features(x: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{what}: expected features of shape (n >= 2, dim), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: {int((~np.isfinite(arr)).sum())} non-finite feature value(s)")
    return arr


def gaussian_frechet_distance(
    mean1: ArrayLike, cov1: ArrayLike, mean2: ArrayLike, cov2: ArrayLike
) -> float:
    """Squared 2-Wasserstein distance between ``N(mean1, cov1)`` and ``N(mean2, cov2)``.

    ``|m1 - m2|^2 + tr(C1) + tr(C2) - 2 tr((C1^{1/2} C2 C1^{1/2})^{1/2})`` (Dowson & Landau
    1982), in squared feature units. The cross term is computed from symmetric
    eigendecompositions (``C1^{1/2}`` by ``eigh``, then the eigenvalues of the symmetric PSD
    ``C1^{1/2} C2 C1^{1/2}``), so it stays real and stable for singular covariances.
    """
    m1, m2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
    c1, c2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    w, v = np.linalg.eigh((c1 + c1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = root1 @ c2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    fd = float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * cross)
    return max(fd, 0.0)


def frechet_distance(x: Float[ArrayLike, "n dim"], y: Float[ArrayLike, "m dim"]) -> float:
    """Fréchet distance between the Gaussian fits (mean, unbiased covariance) of two feature sets.

    ``x``: ``(n, dim)``, ``y``: ``(m, dim)`` features (e.g. a classifier's penultimate layer).
    The estimate is biased upwards at finite ``n`` (Chong & Forsyth 2020), so compare values
    only at equal sample sizes, and report the floor (real vs real at the same ``n``) beside.
    """
    x, y = _as_features(x, "x"), _as_features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")
    return gaussian_frechet_distance(
        x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    )


def class_confidence(
    probs: Float[ArrayLike, "n classes"], threshold: float = 0.9
) -> tuple[float, np.ndarray]:
    """Legibility and class histogram of classified samples.

    ``probs``: ``(n, classes)`` class probabilities. Returns ``(legibility, histogram)``:
    the fraction of rows whose largest probability is at least ``threshold``, and the
    fraction of rows assigned to each class (arg-max; ``(classes,)``, sums to 1). A
    generator that covers every mode of a balanced data set has a flat histogram.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"probs: expected shape (n >= 1, classes), got {p.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    legible = float(np.mean(p.max(axis=1) >= threshold))
    hist = np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / p.shape[0]
    return legible, hist
