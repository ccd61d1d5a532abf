"""DDIM (Song, Meng & Ermon, ICLR 2021, eq. 12), deterministic (``eta = 0``) or stochastic.

SDE time: t=0 data, t=T noise; the chain runs on a grid from ``T`` down to ``t_min``. With
``x_t = a x_0 + s z`` and the denoiser ``x0_hat`` and noise ``eps_hat = (x - a x0_hat) / s``
of :mod:`._denoise`, one step ``t -> t'`` is

    x' = a' x0_hat + sqrt(s'^2 - c^2) eps_hat + c z,
    c = eta * s' * sqrt(1 - (a s')^2 / (a' s)^2),

which for the VP SDE is DDIM's ``sigma_t(eta)`` (``1 - abar = s^2``) and for VE its
variance-exploding form. ``eta = 0`` is the exponential-integrator Euler step of the
probability-flow ODE (Zhang & Chen 2023; DPM-Solver-1), ``eta = 1`` the DDPM ancestral
step. One score evaluation per step (NFE = ``num_steps``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._types import Batch, Key
from ..paths import SDE
from ._denoise import ScoreFn, coefficients, denoiser, time_grid


def ddim_sample(
    sde: SDE,
    score_fn: ScoreFn,
    key: Key,
    shape: tuple[int, ...],
    num_steps: int,
    *,
    eta: float = 0.0,
    t_min: float = 1e-3,
    spacing: str = "time",
) -> Batch:
    """DDIM samples ``shape = (n, *event)`` at ``t_min`` from a prior draw at ``T``.

    ``score_fn(t, x)``: the score of ``p_t`` (scalar ``t``). ``eta`` in ``[0, 1]``;
    ``spacing``: the time grid (see :func:`._denoise.time_grid`).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    k_prior, k_noise = jax.random.split(key)
    ts = time_grid(sde, int(num_steps), t_min, spacing)
    x0_hat = denoiser(sde, score_fn)

    def step(x, i):
        t, t_next = ts[i], ts[i + 1]
        (a, s), (a2, s2) = coefficients(sde, t), coefficients(sde, t_next)
        d = x0_hat(t, x)
        eps = (x - a * d) / s
        c = eta * s2 * jnp.sqrt(jnp.clip(1.0 - (a * s2) ** 2 / (a2 * s) ** 2, 0.0, 1.0))
        z = jax.random.normal(jax.random.fold_in(k_noise, i), x.shape, x.dtype)
        return a2 * d + jnp.sqrt(jnp.maximum(s2**2 - c**2, 0.0)) * eps + c * z, None

    x, _ = jax.lax.scan(step, sde.prior_sample(k_prior, tuple(shape)), jnp.arange(num_steps))
    return x
