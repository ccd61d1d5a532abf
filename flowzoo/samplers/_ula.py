"""Unadjusted Langevin algorithm: Euler–Maruyama of ``dx = grad log p(x) dt + sqrt(2) dW``.

Each step is one diffrax Euler–Maruyama step (:func:`flowzoo.integrate.em_step`):
``x' = x + h score(x) + sqrt(2h) z``. ULA is biased: on ``N(0, s^2)`` its stationary
variance is ``s^2 / (1 - h / (2 s^2))``. :func:`ula_sample` runs the same chain as one
:func:`flowzoo.integrate.solve_sde` call (fastest when only the final state is needed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .._types import Batch, Key
from ..integrate import em_step, solve_sde
from ._base import Sampler

_SQRT2 = float(np.sqrt(2.0))


class ULAState(NamedTuple):
    position: Batch  # (chains, *event)


class ULAInfo(NamedTuple):
    pass


def ula(score_fn: Callable[[Batch], Batch], step_size: float) -> Sampler:
    """ULA with ``score_fn(x) -> (chains, *event)`` (``grad log p``) and step ``h``."""

    def init(positions: Batch) -> ULAState:
        return ULAState(jnp.asarray(positions))

    def step(key: Key, state: ULAState) -> tuple[ULAState, ULAInfo]:
        drift = lambda t, x: score_fn(x)
        x = em_step(drift, lambda t, x: _SQRT2, key, 0.0, state.position, step_size)
        return ULAState(x), ULAInfo()

    return Sampler(init, step)


def ula_sample(
    score_fn: Callable[[Batch], Batch],
    key: Key,
    positions: Batch,
    step_size: float,
    num_steps: int,
    *,
    brownian: str = "unsafe",
) -> Batch:
    """Final positions of ``num_steps`` ULA steps, as one diffrax SDE solve.

    ``brownian="unsafe"`` (batched path, fast) or ``"virtual_tree"`` (per chain).
    """
    sol = solve_sde(
        lambda t, x: score_fn(x),
        lambda t, x: _SQRT2,
        key,
        positions,
        0.0,
        step_size * num_steps,
        num_steps,
        brownian=brownian,
    )
    return sol.y1
