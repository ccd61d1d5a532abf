"""The exact marginal velocity field of a finite data set under an affine Gaussian path."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._numerics import exact_matmul
from .._types import ArrayLike, Batch
from ..paths import Path, expand_time, gaussian_schedule


def posterior_mean(
    path: Path, data: Batch, t: ArrayLike, x: Batch, min_sigma: float = 1e-12
) -> Batch:
    """``E[x1 | x_t = x]`` when ``x1`` is uniform on ``data`` (t=0 noise, t=1 data).

    ``p(x1 = d_i | x) ∝ N(x; alpha_t d_i, sigma_t^2 I)``: a softmax over the data of logits
    ``(alpha_t <x, d_i> - alpha_t^2 |d_i|^2 / 2) / sigma_t^2`` (the ``|x|^2`` term cancels),
    evaluated with ``logsumexp`` so it stays finite as ``sigma_t -> 0`` (t -> 1), where the
    weights collapse onto the nearest data point. ``x``: ``(batch, *event)``; ``t``: scalar
    or ``(batch,)``. Cost ``O(batch * n * D)`` time and ``O(batch * n)`` memory.
    """
    d = data.reshape(data.shape[0], -1).astype(x.dtype)
    xf = x.reshape(x.shape[0], -1)
    tt = expand_time(t, xf)
    alpha, sigma, _, _ = gaussian_schedule(path, tt)
    var = jnp.maximum(sigma**2, min_sigma**2)
    logits = (
        alpha * exact_matmul(xf, d.T) - 0.5 * alpha**2 * jnp.sum(d**2, axis=-1)[None, :]
    ) / var
    weights = jax.nn.softmax(logits, axis=-1)
    return exact_matmul(weights, d).reshape(x.shape)


def marginal_velocity(
    path: Path, data: Batch, min_sigma: float = 1e-12
) -> Callable[[ArrayLike, Batch], Batch]:
    """The exact marginal field ``u_t(x) = E[u_t(x0, x1) | x_t = x]`` of the empirical data.

    ``u_t(x) = sum_i w_i(x) u_t(x | d_i)`` with softmax weights ``w_i`` (see
    :func:`posterior_mean`); for an affine path this is the velocity of the posterior-mean data
    prediction, ``(sigma'/sigma) x + (alpha' - alpha sigma'/sigma) E[x1 | x]``. Integrated
    from noise (t=0) to t=1 it transports ``N(0, I)`` onto the data set itself (it memorises).
    For a stochastic interpolant path (``path.noise``) it is the field of the Gaussian
    marginal with ``s_t^2 = sigma_t^2 + gamma_t^2`` (:func:`flowzoo.paths.gaussian_schedule`).

    Returns:
      ``fn(t, x) -> (batch, *event)``; ``t`` scalar or ``(batch,)``, ``x``: ``(batch, *event)``.
      At ``sigma_t = 0`` (t=1 on paths with ``sigma_min = 0``) the field is singular; ``sigma``
      is floored at ``min_sigma`` there.
    """
    data = jnp.asarray(data)

    def fn(t: ArrayLike, x: Batch) -> Batch:
        x1_hat = posterior_mean(path, data, t, x, min_sigma)
        tt = expand_time(t, x)
        alpha, sigma, d_alpha, d_sigma = gaussian_schedule(path, tt)
        sigma = jnp.maximum(sigma, min_sigma)
        return (d_sigma / sigma) * (x - alpha * x1_hat) + d_alpha * x1_hat

    return fn
