"""What the fast diffusion solvers share: an SDE's coefficients, the denoiser, time grids.

SDE time (t=0 data, t=T noise). The marginal is ``x_t = a(t) x_0 + s(t) z`` (VP, sub-VP:
``a < 1``; VE: ``a = 1``), so the score ``grad log p_t`` gives the noise prediction
``eps = -s score`` and the data prediction (Tweedie) ``x0_hat = (x + s^2 score) / a``. The
EDM noise level is ``sigma(t) = s(t) / a(t)`` and the log signal-to-noise ratio is
``lambda(t) = -log sigma(t)``; both are monotone in t, so a grid uniform in ``log sigma``
(uniform in lambda: DPM-Solver, the Karras schedule) maps back to times by bisection.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._types import Array, Batch
from ..paths import SDE

ScoreFn = Callable[[Array, Batch], Batch]


def coefficients(sde: SDE, t: Array) -> tuple[Array, Array]:
    """``(a(t), s(t))`` of the marginal ``x_t = a x_0 + s z``; scalars for scalar ``t``."""
    a, s = sde.marginal(jnp.ones((), jnp.float32), jnp.asarray(t, jnp.float32))
    return jnp.asarray(a, jnp.float32), jnp.asarray(s, jnp.float32)


def edm_sigma(sde: SDE, t: Array) -> Array:
    """The EDM noise level ``sigma(t) = s(t) / a(t)`` (``exp(-lambda(t))``)."""
    a, s = coefficients(sde, t)
    return s / a


def denoiser(sde: SDE, score_fn: ScoreFn) -> Callable[[Array, Batch], Batch]:
    """``x0_hat(t, x) = (x + s(t)^2 score(t, x)) / a(t)``: the posterior mean of ``x_0``."""

    def x0_hat(t: Array, x: Batch) -> Batch:
        a, s = coefficients(sde, t)
        return (x + s**2 * score_fn(t, x)) / a

    return x0_hat


def time_of_sigma(sde: SDE, sigma: Array, t_min: float, iterations: int = 60) -> Array:
    """Invert ``sigma(t)`` on ``[t_min, T]`` by bisection (``sigma`` any shape)."""
    lo = jnp.full(jnp.shape(sigma), t_min, jnp.float32)
    hi = jnp.full(jnp.shape(sigma), sde.T, jnp.float32)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = edm_sigma(sde, mid) < sigma
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, body, (lo, hi))
    return 0.5 * (lo + hi)


def time_grid(sde: SDE, num: int, t_min: float, spacing: str) -> Array:
    """``num + 1`` decreasing times from ``T`` to ``t_min``.

    ``spacing``: ``"time"`` (uniform in t), ``"logsnr"`` (uniform in ``lambda = -log sigma``,
    DPM-Solver's default) or ``"karras"`` (``sigma_i^(1/7)`` uniform, Karras et al. 2022).
    """
    if spacing == "time":
        return jnp.linspace(sde.T, t_min, num + 1)
    hi, lo = edm_sigma(sde, sde.T), edm_sigma(sde, t_min)
    if spacing == "logsnr":
        sigmas = jnp.exp(jnp.linspace(jnp.log(hi), jnp.log(lo), num + 1))
    elif spacing == "karras":
        rho = 7.0
        ramp = jnp.linspace(0.0, 1.0, num + 1)
        sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    else:
        raise ValueError(f"spacing must be 'time', 'logsnr' or 'karras', got {spacing!r}")
    ts = time_of_sigma(sde, sigmas, t_min)
    return ts.at[0].set(sde.T).at[-1].set(t_min)
