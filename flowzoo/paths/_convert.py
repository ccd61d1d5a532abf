"""Converters between velocity, data (x1) and noise (epsilon = x0) predictions.

For an affine path ``x_t = sigma_t x0 + alpha_t x1`` (t=0 noise, t=1 data) with velocity
``u = sigma_t' x0 + alpha_t' x1``, any one of ``(u, x1, x0)`` determines the other two given
``x_t``. Solving the 2x2 system ``[[sigma, alpha], [sigma', alpha']] [x0, x1] = [x, u]``:

* ``x1 = (sigma u - sigma' x) / det``, ``x0 = (alpha' x - alpha u) / det`` with
  ``det = sigma alpha' - alpha sigma'`` (> 0 on every path in this package for t in (0, 1)).

``t`` is a scalar or ``(batch,)``; ``x`` and predictions are ``(batch, *event)``. Applied to a
network's output these convert parametrisations; applied to the posterior mean
``E[x1 | x_t = x]`` they give the marginal velocity (see :func:`marginal_velocity`).
"""

from __future__ import annotations

from .._types import ArrayLike, Batch
from ._affine import Path, expand_time


def _coeffs(path: Path, t: ArrayLike, x: Batch):
    tt = expand_time(t, x)
    alpha, sigma = path.schedule(tt)
    d_alpha, d_sigma = path.schedule_dt(tt)
    return alpha, sigma, d_alpha, d_sigma


def velocity_from_x1(path: Path, t: ArrayLike, x: Batch, x1: Batch) -> Batch:
    """``u = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) x1`` (singular where sigma_t = 0)."""
    alpha, sigma, d_alpha, d_sigma = _coeffs(path, t, x)
    return (d_sigma / sigma) * x + (d_alpha - alpha * d_sigma / sigma) * x1


def velocity_from_eps(path: Path, t: ArrayLike, x: Batch, eps: Batch) -> Batch:
    """``u = (alpha'/alpha) x + (sigma' - sigma alpha'/alpha) eps`` (singular where alpha_t = 0)."""
    alpha, sigma, d_alpha, d_sigma = _coeffs(path, t, x)
    return (d_alpha / alpha) * x + (d_sigma - sigma * d_alpha / alpha) * eps


def x1_from_velocity(path: Path, t: ArrayLike, x: Batch, u: Batch) -> Batch:
    """Data prediction from a velocity: ``(sigma u - sigma' x) / (sigma alpha' - alpha sigma')``."""
    alpha, sigma, d_alpha, d_sigma = _coeffs(path, t, x)
    return (sigma * u - d_sigma * x) / (sigma * d_alpha - alpha * d_sigma)


def eps_from_velocity(path: Path, t: ArrayLike, x: Batch, u: Batch) -> Batch:
    """Noise prediction from a velocity: ``(alpha' x - alpha u) / (sigma alpha' - alpha sigma')``."""
    alpha, sigma, d_alpha, d_sigma = _coeffs(path, t, x)
    return (d_alpha * x - alpha * u) / (sigma * d_alpha - alpha * d_sigma)


def x1_from_eps(path: Path, t: ArrayLike, x: Batch, eps: Batch) -> Batch:
    """``x1 = (x - sigma_t eps) / alpha_t``."""
    alpha, sigma, _, _ = _coeffs(path, t, x)
    return (x - sigma * eps) / alpha


def eps_from_x1(path: Path, t: ArrayLike, x: Batch, x1: Batch) -> Batch:
    """``eps = (x - alpha_t x1) / sigma_t``."""
    alpha, sigma, _, _ = _coeffs(path, t, x)
    return (x - alpha * x1) / sigma


def score_from_eps(path: Path, t: ArrayLike, x: Batch, eps: Batch) -> Batch:
    """Score of the marginal ``p_t`` from the posterior-mean noise: ``-E[x0 | x_t] / sigma_t``."""
    _, sigma, _, _ = _coeffs(path, t, x)
    return -eps / sigma
