"""MCMC diagnostics: kernel Stein discrepancy (IMQ kernel) and effective sample size.

Re-exported from :mod:`flowzoo.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from .._numerics import exact_matmul
from .._types import Array, ArrayLike, Scalar


def _flat(x: ArrayLike) -> Array:
    x = jnp.asarray(x, jnp.float32)
    return x.reshape(x.shape[0], -1)


def kernel_stein_discrepancy(
    x: ArrayLike,
    score: ArrayLike | Callable[[Array], Array],
    c: float = 1.0,
    beta: float = -0.5,
    unbiased: bool = True,
) -> Scalar:
    """Squared kernel Stein discrepancy of samples ``x`` against a target with a known score.

    IMQ kernel ``k(x, y) = (c^2 + |x - y|^2)^beta`` with ``-1 < beta < 0`` (Gorham & Mackey
    2017: the IMQ KSD detects non-convergence). ``x``: ``(n, *event)``; ``score``:
    ``grad log p`` at ``x`` as an array ``(n, *event)`` or a batched function. Needs no
    normalising constant. ``unbiased=True`` gives the U-statistic (mean over ``i != j``,
    zero in expectation for exact samples, can be slightly negative), else the V-statistic.
    Memory ``O(n^2)``.
    """
    s = score(jnp.asarray(x)) if callable(score) else score
    return _ksd(_flat(x), _flat(s), c, beta, unbiased)


@partial(jax.jit, static_argnums=(4,))
def _ksd(x: Array, s: Array, c: float, beta: float, unbiased: bool) -> Scalar:
    n, d = x.shape
    sq = jnp.sum(x**2, 1)
    r2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * exact_matmul(x, x.T), 0.0)
    q = c**2 + r2
    k = q**beta
    dk = 2.0 * beta * q ** (beta - 1.0)  # grad_x k = dk * (x - y)
    sx_r = jnp.sum(s * x, 1)[:, None] - exact_matmul(s, x.T)  # s_i . (x_i - x_j)
    sy_r = exact_matmul(x, s.T) - jnp.sum(s * x, 1)[None, :]  # s_j . (x_i - x_j)
    trace = -2.0 * beta * d * q ** (beta - 1.0) - 4.0 * beta * (beta - 1.0) * q ** (beta - 2.0) * r2
    u = exact_matmul(s, s.T) * k - dk * sx_r + dk * sy_r + trace
    if unbiased:
        return (jnp.sum(u) - jnp.trace(u)) / (n * (n - 1))
    return jnp.mean(u)


@jax.jit
def effective_sample_size(samples: ArrayLike) -> Array:
    """Multi-chain effective sample size per coordinate (Stan / Vehtari et al. 2021, no rank
    normalisation; Geyer's initial monotone sequence).

    ``samples``: ``(num_samples, chains, *event)`` (the layout of
    :func:`flowzoo.samplers.run_chain`). Returns ``event``-shaped ESS (total over chains).
    """
    x = jnp.asarray(samples, jnp.float32)
    n, m = x.shape[:2]
    event = x.shape[2:]
    x = x.reshape(n, m, -1)
    xc = x - jnp.mean(x, 0, keepdims=True)
    f = jnp.fft.rfft(xc, n=2 * n, axis=0)
    acov = jnp.fft.irfft(f * jnp.conj(f), n=2 * n, axis=0)[:n] / n  # (n, m, d)
    chain_var = acov[0] * n / (n - 1)
    w = jnp.mean(chain_var, 0)
    var_plus = w * (n - 1) / n + (jnp.var(jnp.mean(x, 0), 0, ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (w[None] - jnp.mean(acov, 1)) / var_plus[None]  # (n, d)
    rho = rho.at[0].set(1.0)
    half = n // 2
    pairs = rho[0 : 2 * half : 2] + rho[1 : 2 * half : 2]
    positive = jnp.cumprod(pairs > 0, axis=0)
    mono = jax.lax.cummin(jnp.where(positive > 0, pairs, 0.0), axis=0)
    tau = -1.0 + 2.0 * jnp.sum(mono * positive, 0)
    ess = n * m / jnp.maximum(tau, 1.0 / jnp.log10(float(n * m)))
    return ess.reshape(event)
