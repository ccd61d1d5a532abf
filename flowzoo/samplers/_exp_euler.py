"""Exponential-integrator Euler for the reverse SDE (SDE-DPM-Solver++1, Lu et al. 2022b).

SDE time: t=0 data, t=T noise. Freezing the data prediction ``D = x0_hat(t, x)`` over a step
``t -> t'`` and solving the rest of the reverse SDE exactly (its drift is linear in x and
its noise Gaussian) gives, with ``h = lambda' - lambda``, ``lambda = log(a / s)``,

    x' = (s' / s) exp(-h) x + a' (1 - exp(-2h)) D + s' sqrt(1 - exp(-2h)) z,

eq. (18) of "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models". Unlike Euler-Maruyama it is exact for a Gaussian with a frozen ``D`` and stable at
any step size. The last step omits the noise. One evaluation per step; the default grid is
uniform in t (at 10 NFE on the 8-Gaussian ring: energy distance 0.0074, against 0.0197
uniform in lambda).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._types import Batch, Key
from ..paths import SDE
from ._denoise import ScoreFn, coefficients, denoiser, time_grid


def exp_euler_sample(
    sde: SDE,
    score_fn: ScoreFn,
    key: Key,
    shape: tuple[int, ...],
    num_steps: int,
    *,
    t_min: float = 1e-3,
    spacing: str = "time",
) -> Batch:
    """Samples ``shape = (n, *event)`` at ``t_min``; ``score_fn(t, x)`` the score of ``p_t``."""
    num_steps = int(num_steps)
    k_prior, k_noise = jax.random.split(key)
    ts = time_grid(sde, num_steps, t_min, spacing)
    x0_hat = denoiser(sde, score_fn)

    def step(x, i):
        t, t_next = ts[i], ts[i + 1]
        (a, s), (a2, s2) = coefficients(sde, t), coefficients(sde, t_next)
        h = (jnp.log(a2) - jnp.log(s2)) - (jnp.log(a) - jnp.log(s))
        decay = jnp.exp(-h)
        noise = jnp.where(i == num_steps - 1, 0.0, s2 * jnp.sqrt(-jnp.expm1(-2.0 * h)))
        z = jax.random.normal(jax.random.fold_in(k_noise, i), x.shape, x.dtype)
        x = (s2 / s) * decay * x - a2 * jnp.expm1(-2.0 * h) * x0_hat(t, x) + noise * z
        return x, None

    x, _ = jax.lax.scan(step, sde.prior_sample(k_prior, tuple(shape)), jnp.arange(num_steps))
    return x
