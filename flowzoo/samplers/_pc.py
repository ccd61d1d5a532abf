"""Predictor-corrector sampling (Song et al. 2021, Algorithms 4-5), t=0 data, t=T noise.

Predictor: one reverse-time Euler–Maruyama step (diffrax, :func:`flowzoo.integrate.em_step`).
Corrector: ``num_corrector`` Langevin steps at the new time with the signal-to-noise step
size ``h = 2 (snr |z| / |s|)^2`` (norms averaged over the chains, as in Song et al.'s code) (Song et al. take ``alpha_i = 1`` for VE; we use
1 throughout). The corrector is a :class:`Sampler` (:func:`langevin_corrector`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Key
from ..integrate import em_step
from ..paths import SDE, reverse_drift
from ._base import Sampler


class CorrectorState(NamedTuple):
    position: Batch


class CorrectorInfo(NamedTuple):
    step_size: Array  # scalar, shared by the chains


def _norm(x: Array) -> Array:
    return jnp.sqrt(jnp.sum(x.reshape(x.shape[0], -1) ** 2, 1))


def langevin_corrector(score_fn: Callable[[Batch], Batch], snr: float) -> Sampler:
    """Langevin corrector for a fixed time: ``x + h s(x) + sqrt(2h) z``, ``h`` from ``snr``."""

    def init(positions: Batch) -> CorrectorState:
        return CorrectorState(jnp.asarray(positions))

    def step(key: Key, state: CorrectorState) -> tuple[CorrectorState, CorrectorInfo]:
        x = state.position
        s = score_fn(x)
        z = jax.random.normal(key, x.shape, x.dtype)
        h = 2.0 * (snr * jnp.mean(_norm(z)) / (jnp.mean(_norm(s)) + 1e-12)) ** 2
        return CorrectorState(x + h * s + jnp.sqrt(2.0 * h) * z), CorrectorInfo(h)

    return Sampler(init, step)


def pc_sample(
    sde: SDE,
    score_fn: Callable[[Array, Batch], Batch],
    key: Key,
    shape: tuple[int, ...],
    num_steps: int = 1000,
    *,
    num_corrector: int = 1,
    snr: float = 0.16,
    t_min: float = 1e-3,
) -> Batch:
    """Predictor-corrector samples ``(n, *event)`` at ``t = t_min`` (last step noise-free).

    ``score_fn(t, x)`` with scalar ``t``; ``shape = (n, *event)``.
    """
    k_prior, k_loop = jax.random.split(key)
    T = sde.T
    dt = (T - t_min) / num_steps
    rev = reverse_drift(sde, score_fn)
    drift = lambda s, y: -rev(T - s, y)
    diffusion = lambda s, y: sde.diffusion(T - s)

    def body(x, i):
        k_pred, k_corr = jax.random.split(jax.random.fold_in(k_loop, i))
        s = i * dt
        last = i == num_steps - 1
        x_noisy = em_step(drift, diffusion, k_pred, s, x, dt)
        x = jnp.where(last, x + dt * drift(s, x), x_noisy)
        corr = langevin_corrector(lambda y: score_fn(T - s - dt, y), snr)
        cs = corr.init(x)
        for j in range(num_corrector):
            cs, _ = corr.step(jax.random.fold_in(k_corr, j), cs)
        return jnp.where(last, x, cs.position), None

    x, _ = jax.lax.scan(body, sde.prior_sample(k_prior, shape), jnp.arange(num_steps))
    return x
