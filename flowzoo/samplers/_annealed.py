"""Annealed Langevin dynamics over a decreasing noise schedule (NCSN, Song & Ermon 2019).

For each level ``sigma_i`` (largest first), ``steps_per_level`` Langevin steps
``x' = x + a_i/2 s(sigma_i, x) + sqrt(a_i) z`` with ``a_i = step_size * sigma_i^2 / sigma_L^2``
(i.e. ULA, :func:`flowzoo.integrate.em_step`, with ``h = a_i / 2``). As a :class:`Sampler`
the state carries the step counter; run ``len(sigmas) * steps_per_level`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key
from ..integrate import em_step
from ._base import Sampler

_SQRT2 = float(np.sqrt(2.0))


class AnnealedState(NamedTuple):
    position: Batch  # (chains, *event)
    step: Array  # int32, steps taken so far


class AnnealedInfo(NamedTuple):
    sigma: Array  # noise level used by this step
    step_size: Array


def annealed_langevin(
    score_fn: Callable[[Array, Batch], Batch],
    sigmas: Array,
    steps_per_level: int,
    step_size: float = 2e-5,
) -> Sampler:
    """Annealed Langevin with ``score_fn(sigma, x)`` and ``sigmas`` in decreasing order.

    ``step_size`` is the step size at the smallest level (Song & Ermon's ``epsilon``). Steps past
    the last level keep using the smallest ``sigma``.
    """
    sigmas = jnp.asarray(sigmas, jnp.float32)
    last = sigmas.shape[0] - 1

    def init(positions: Batch) -> AnnealedState:
        return AnnealedState(jnp.asarray(positions), jnp.zeros((), jnp.int32))

    def step(key: Key, state: AnnealedState) -> tuple[AnnealedState, AnnealedInfo]:
        sigma = sigmas[jnp.minimum(state.step // steps_per_level, last)]
        a = step_size * (sigma / sigmas[-1]) ** 2
        drift = lambda t, x: score_fn(sigma, x)
        x = em_step(drift, lambda t, x: _SQRT2, key, 0.0, state.position, a / 2)
        return AnnealedState(x, state.step + 1), AnnealedInfo(sigma, a)

    return Sampler(init, step)


def denoise(score_fn: Callable[[Array, Batch], Batch], sigma: float, x: Batch) -> Batch:
    """Tweedie's final denoising step ``x + sigma^2 s(sigma, x)`` (Jolicoeur-Martineau 2021)."""
    return x + sigma**2 * score_fn(jnp.asarray(sigma, jnp.float32), x)
