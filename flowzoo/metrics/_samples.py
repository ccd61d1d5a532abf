"""Sample-quality metrics: two-sample distances (rows are examples), KSD and ESS.

All functions flatten trailing axes, so images ``(n, H, W, C)`` are compared as vectors.
Units follow the data (no standardisation is applied here).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._numerics import exact_matmul
from .._types import Array, ArrayLike, Key, Scalar


def _flat(x: ArrayLike) -> Array:
    x = jnp.asarray(x, jnp.float32)
    return x.reshape(x.shape[0], -1)


def _sq_dists(x: Array, y: Array) -> Array:
    d = jnp.sum(x**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * exact_matmul(x, y.T)
    return jnp.maximum(d, 0.0)


def _offdiag_mean(k: Array) -> Array:
    n = k.shape[0]
    return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1))


def mmd(x: ArrayLike, y: ArrayLike, bandwidths: Sequence[float] = (0.1, 0.3, 1.0, 3.0)) -> Scalar:
    """Unbiased squared maximum mean discrepancy with a sum of Gaussian kernels.

    ``k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))`` over ``bandwidths`` (data units).
    ``x``: ``(n, ...)``, ``y``: ``(m, ...)``, ``n, m >= 2``. Unbiased (U-statistic), so it can
    be slightly negative when the two samples come from the same distribution (Gretton et al.,
    JMLR 2012, eq. 3).
    """
    x, y = _flat(x), _flat(y)

    def kern(a, b):
        d = _sq_dists(a, b)
        return sum(jnp.exp(-d / (2.0 * h * h)) for h in bandwidths)

    return _offdiag_mean(kern(x, x)) + _offdiag_mean(kern(y, y)) - 2.0 * jnp.mean(kern(x, y))


def energy_distance(x: ArrayLike, y: ArrayLike) -> Scalar:
    """Unbiased energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Szekely & Rizzo 2013).

    Zero in expectation iff the two distributions are equal; data units. ``x``: ``(n, ...)``,
    ``y``: ``(m, ...)``.
    """
    x, y = _flat(x), _flat(y)
    dist = lambda a, b: jnp.sqrt(_sq_dists(a, b) + 1e-12)
    xy = jnp.mean(dist(x, y))
    xx = _offdiag_mean(dist(x, x) * (1 - jnp.eye(x.shape[0])))
    yy = _offdiag_mean(dist(y, y) * (1 - jnp.eye(y.shape[0])))
    return 2.0 * xy - xx - yy


def sliced_wasserstein(
    key: Key, x: ArrayLike, y: ArrayLike, num_projections: int = 256, p: int = 2
) -> Scalar:
    """Monte-Carlo sliced Wasserstein-``p`` distance between two equal-size samples.

    Projects both samples on ``num_projections`` random unit directions, sorts, and returns
    ``(mean over directions of mean |sorted x - sorted y|^p)^(1/p)`` (data units).
    """
    x, y = _flat(x), _flat(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"sliced_wasserstein needs equal sample sizes, got {x.shape[0]} and {y.shape[0]}"
        )
    dirs = jax.random.normal(key, (x.shape[1], num_projections))
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    px = jnp.sort(exact_matmul(x, dirs), axis=0)
    py = jnp.sort(exact_matmul(y, dirs), axis=0)
    return jnp.mean(jnp.abs(px - py) ** p) ** (1.0 / p)
