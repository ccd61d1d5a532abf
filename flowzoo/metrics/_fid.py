"""Fréchet Inception Distance (Heusel et al. 2017) with the reference Inception-v3 features.

The features are the 2048 pool-3 activations of pytorch-fid's Inception-v3
(:func:`flowzoo.nets.fid_inception`, weights from :func:`load_fid_weights`); the distance
is :func:`gaussian_frechet_distance` between the Gaussian fits (mean, unbiased covariance)
of two feature sets, in float64 on the host. Like every Fréchet distance of finite samples
it is biased upwards, more at small ``n``: FID values are comparable only at equal sample
sizes, so label them with ``n`` (FID-10k, FID-50k).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from .._compile import jit
from .._types import ArrayLike, Float, Params, Shaped
from ..nets import fid_inception
from ._frechet import _as_features, gaussian_frechet_distance

Statistics = tuple[np.ndarray, np.ndarray]
"""``(mu, sigma)``: mean ``(2048,)`` and covariance ``(2048, 2048)`` of features, float64."""


@functools.cache
def _jitted_apply():
    return jit(fid_inception().apply)  # on CPU: Eigen convolutions (flowzoo/_compile.py)


def _check_images(images) -> int:
    shape = np.shape(images)
    if len(shape) != 4 or shape[-1] not in (1, 3) or shape[0] < 1:
        raise ValueError(f"images: expected NHWC images (n >= 1, H, W, 3 or 1), got {shape}")
    return int(shape[0])


def _feature_batches(params: Params, images, batch_size: int) -> Iterator[np.ndarray]:
    """Features of ``images`` batch by batch, as float32 NumPy ``(b, 2048)``.

    Every call to the network has ``batch_size`` rows (the last batch is zero-padded), so
    it compiles once; the next batch is dispatched before the previous one is read back.
    """
    n = _check_images(images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    size = min(batch_size, n)
    apply = _jitted_apply()
    pending = None
    for start in range(0, n, size):
        batch = np.asarray(images[start : start + size])
        if batch.shape[-1] == 1:  # grey: the RGB image with three equal channels
            batch = np.repeat(batch, 3, axis=-1)
        rows = batch.shape[0]
        if rows < size:
            batch = np.concatenate([batch, np.zeros((size - rows, *batch.shape[1:]), batch.dtype)])
        out = apply(params, batch)
        if pending is not None:
            yield np.asarray(pending[0])[: pending[1]]
        pending = (out, rows)
    yield np.asarray(pending[0])[: pending[1]]


def fid_features(
    params: Params, images: Shaped[ArrayLike, "n H W 3"], *, batch_size: int = 100
) -> Float[np.ndarray, "n 2048"]:
    """The 2048 Inception pool-3 features of each image, float32 NumPy ``(n, 2048)``.

    ``images``: NHWC RGB ``(n, H, W, 3)`` (grey ``(n, H, W, 1)`` is repeated to three
    channels), floats in ``[0, 1]`` or ``uint8`` (any array indexable by rows: NumPy, a
    memory map, a JAX array), resized to 299x299 bilinearly.
    ``params``: :func:`load_fid_weights`. Runs ``batch_size`` images per network call (one
    compilation); the host holds ``n x 2048`` floats, so for large ``n`` prefer
    :func:`fid_image_statistics`, which keeps only the running sums.
    """
    return np.concatenate(list(_feature_batches(params, images, batch_size)))


def fid_statistics(features: Float[ArrayLike, "n dim"]) -> Statistics:
    """``(mu, sigma)`` of a feature set ``(n >= 2, dim)``: mean and unbiased covariance, float64
    (``np.mean`` and ``np.cov(rowvar=False)`` as pytorch-fid computes them)."""
    x = _as_features(features, "features")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def fid_image_statistics(
    params: Params, images: Shaped[ArrayLike, "n H W 3"], *, batch_size: int = 100
) -> Statistics:
    """``(mu, sigma)`` of the Inception features of ``images`` (see :func:`fid_features`),
    accumulated batch by batch in float64 (sums of features and of their outer products,
    shifted by the first batch's mean), so memory stays ``O(2048^2)`` for any ``n >= 2``."""
    if _check_images(images) < 2:
        raise ValueError("images: the covariance needs n >= 2 images")
    shift = total = outer = None
    n = 0
    for feats in _feature_batches(params, images, batch_size):
        f = feats.astype(np.float64)
        if shift is None:
            shift = f.mean(axis=0)
            total, outer = np.zeros_like(shift), np.zeros((f.shape[1], f.shape[1]))
        d = f - shift
        total += d.sum(axis=0)
        outer += d.T @ d
        n += f.shape[0]
    mean_d = total / n
    sigma = (outer - n * np.outer(mean_d, mean_d)) / (n - 1)
    if not (np.isfinite(mean_d).all() and np.isfinite(sigma).all()):
        raise ValueError("images: the Inception features are not finite (check the weights)")
    return shift + mean_d, (sigma + sigma.T) / 2


def _as_statistics(x, what: str) -> Statistics:
    if isinstance(x, tuple | list) and len(x) == 2:
        mu, sigma = (np.asarray(v, np.float64) for v in x)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(
                f"{what}: expected (mu (dim,), sigma (dim, dim)), got {mu.shape}, {sigma.shape}"
            )
        return mu, sigma
    return fid_statistics(_as_features(x, what))


def fid(
    a: Statistics | Float[ArrayLike, "n dim"], b: Statistics | Float[ArrayLike, "m dim"]
) -> float:
    """Fréchet Inception Distance between two sets, each given as its ``(mu, sigma)``
    (:func:`fid_statistics`, :func:`fid_image_statistics`) or its features ``(n, 2048)``.

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` by
    :func:`gaussian_frechet_distance` (the matrix root through symmetric eigendecompositions;
    pytorch-fid uses ``scipy.linalg.sqrtm``, which agrees to rounding on well-conditioned
    covariances). Squared feature units; the estimate depends on the sample sizes, so state
    them (FID-10k: 10,000 generated images against the training-set statistics).
    """
    mu_a, sig_a = _as_statistics(a, "a")
    mu_b, sig_b = _as_statistics(b, "b")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dimensions differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    return gaussian_frechet_distance(mu_a, sig_a, mu_b, sig_b)
