"""Reverse-time SDE sampling with Euler–Maruyama through diffrax (Song et al. 2021).

SDE time: t=0 data, t=T noise. The reverse SDE ``dx = [f - g^2 score] dt + g dW_bar`` runs
from ``T`` down to ``t_min``; it is solved forward in ``s = T - t`` by
:func:`flowzoo.integrate.solve_sde`: ``dy = -[f - g^2 score](T - s, y) ds + g(T - s) dW_s``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from .._types import Array, Batch, Key
from ..integrate import solve_sde
from ..paths import SDE, reverse_drift


def reverse_sde_sample(
    sde: SDE,
    score_fn: Callable[[Array, Batch], Batch],
    key: Key,
    shape: tuple[int, ...],
    num_steps: int = 1000,
    *,
    t_min: float = 1e-3,
    denoise: bool = True,
    brownian: str = "unsafe",
) -> Batch:
    """Samples ``(n, *event)`` at ``t = t_min``: prior draw at ``T``, ``num_steps`` EM steps.

    ``score_fn(t, x)``, ``t`` scalar. ``denoise`` ends with the noise-free step (drift
    only, Song et al.'s ``noise_removal``); ``shape = (n, *event)``.
    """
    k_prior, k_path = jax.random.split(key)
    x_T = sde.prior_sample(k_prior, shape)
    rev = reverse_drift(sde, score_fn)
    T = sde.T
    dt = (T - t_min) / num_steps
    n_noisy = num_steps - 1 if denoise else num_steps
    drift = lambda s, y: -rev(T - s, y)
    diffusion = lambda s, y: sde.diffusion(T - s)
    x = solve_sde(drift, diffusion, k_path, x_T, 0.0, n_noisy * dt, n_noisy, brownian=brownian).y1
    if denoise:
        x = x + dt * drift(n_noisy * dt, x)
    return x
