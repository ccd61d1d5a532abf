"""The EDM sampler: Heun's method on the Karras sigma schedule, with optional churn.

Karras, Aittala, Aila & Laine, "Elucidating the Design Space of Diffusion-Based Generative
Models" (NeurIPS 2022), Algorithms 1 (deterministic) and 2 (stochastic). In EDM's
variables ``x~ = x / a(t)`` and ``sigma = s(t) / a(t)`` every flowzoo SDE (VE, VP, sub-VP;
SDE time, t=0 data, t=T noise) is the ODE ``dx~/dsigma = (x~ - D(x~; sigma)) / sigma`` with
the denoiser ``D(x~; sigma) = x0_hat(t(sigma), a x~)``, where ``t(sigma)`` inverts
``sigma(t)`` by bisection. The schedule runs ``sigma_max = sigma(T)`` to
``sigma_min = sigma(t_min)`` with ``rho = 7`` spacing, then a last Euler step to
``sigma = 0`` (which returns ``D``); NFE = ``2 num_steps - 1``.

Churn (Algorithm 2): before step i, noise is added to raise sigma to
``sigma_hat = sigma_i (1 + gamma)``, ``gamma = min(churn / num_steps, sqrt(2) - 1)`` while
``s_tmin <= sigma_i <= s_tmax``, with noise scale ``s_noise``; ``churn = 0`` is Algorithm 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._types import Batch, Key
from ..paths import SDE
from ._denoise import ScoreFn, coefficients, denoiser, edm_sigma, time_of_sigma


def edm_heun_sample(
    sde: SDE,
    score_fn: ScoreFn,
    key: Key,
    shape: tuple[int, ...],
    num_steps: int,
    *,
    t_min: float = 1e-3,
    rho: float = 7.0,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    sigma_max: float | None = None,
) -> Batch:
    """EDM Heun samples ``shape = (n, *event)`` (the data prediction at ``sigma_min``).

    ``sigma_max``: start the schedule there instead of at ``sigma(T)`` when it is smaller
    (EDM uses 80 for every model; ``sigma(T)`` is about 152 for the default VP SDE), from
    ``x~ ~ N(0, sigma_max^2 I)`` as in EDM (the data's own spread is neglected there).
    """
    n = int(num_steps)
    if n < 2:
        raise ValueError(f"edm_heun needs num_steps >= 2, got {num_steps!r}")
    sigma_T, lo = edm_sigma(sde, sde.T), edm_sigma(sde, t_min)
    if sigma_max is not None and not float(sigma_max) > 0:
        raise ValueError(f"edm_heun: sigma_max must be > 0, got {sigma_max!r}")
    cap = jnp.inf if sigma_max is None else float(sigma_max)
    clamped = cap < sigma_T  # traced under jit: both starts are computed, one is kept
    hi = jnp.minimum(sigma_T, cap)
    ramp = jnp.linspace(0.0, 1.0, n)
    sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    x0_hat = denoiser(sde, score_fn)

    def denoise(x_tilde, sigma):
        t = time_of_sigma(sde, jnp.minimum(sigma, hi), t_min)
        a, _ = coefficients(sde, t)
        return x0_hat(t, a * x_tilde)

    k_prior, k_churn = jax.random.split(key)
    gamma_max = min(churn / n, math.sqrt(2.0) - 1.0)

    def step(x, i):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = jnp.where((sigma >= s_tmin) & (sigma <= s_tmax), gamma_max, 0.0)
        sigma_hat = sigma * (1.0 + gamma)
        z = jax.random.normal(jax.random.fold_in(k_churn, i), x.shape, x.dtype)
        x_hat = x + sigma * jnp.sqrt(gamma * (2.0 + gamma)) * s_noise * z  # sqrt(hat^2 - s^2)
        d = (x_hat - denoise(x_hat, sigma_hat)) / sigma_hat
        x_euler = x_hat + (sigma_next - sigma_hat) * d
        d2 = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
        return x_hat + (sigma_next - sigma_hat) * 0.5 * (d + d2), None

    a_T, _ = coefficients(sde, sde.T)
    prior = sde.prior_sample(k_prior, tuple(shape))
    # EDM variables x~ = x / a; with a cap, EDM's start x~ ~ N(0, sigma_max^2 I)
    x = jnp.where(clamped, hi * jax.random.normal(k_prior, prior.shape, prior.dtype), prior / a_T)
    x, _ = jax.lax.scan(step, x, jnp.arange(n - 1))
    return denoise(x, sigmas[-1])  # the Euler step to sigma = 0 returns the denoiser
