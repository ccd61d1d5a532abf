"""Persistent contrastive divergence: a train step that carries a replay buffer.

Energy models ``p(x) ∝ exp(-E(x))`` trained with negatives from a persistent buffer (Du &
Mordatch 2019): each step reinitialises a fraction of the drawn buffer rows from noise, runs
short-run Langevin from them (:func:`flowzoo.score.short_run_langevin`), updates the
parameters with :func:`apply_update` and writes the negatives back. The stateless loss is
:func:`flowzoo.score.cd_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._types import Array, Batch, Key, Params
from ..score import cd_objective, short_run_langevin, uniform_init
from ._step import TrainState, apply_update, init_train_state

EnergyApply = Callable[[Params, Batch], Array]


class PCDState(NamedTuple):
    """``train_state`` (:class:`flowzoo.train.TrainState`) and ``buffer`` ``(size, *event)``."""

    train_state: TrainState
    buffer: Batch


class PCD(NamedTuple):
    """Persistent CD: ``init(params, key, buffer_size, event_shape) -> PCDState`` and
    ``step(state, key, x) -> (state, metrics)`` (jit it)."""

    init: Callable[..., PCDState]
    step: Callable[[PCDState, Key, Batch], tuple[PCDState, dict[str, Array]]]


def persistent_cd(
    energy_apply: EnergyApply,
    optimizer: optax.GradientTransformation,
    *,
    num_steps: int = 20,
    step_size: float = 0.01,
    alpha: float = 0.1,
    init_scale: float = 3.0,
    reinit_prob: float = 0.05,
) -> PCD:
    """CD with a persistent replay buffer (Du & Mordatch 2019), state carried explicitly."""
    sample = short_run_langevin(energy_apply, num_steps, step_size)
    objective = cd_objective(energy_apply, alpha)
    loss = lambda params, key, b: objective(params, b[0], b[1])

    def init(params: Params, key: Key, buffer_size: int, event_shape) -> PCDState:
        buf = uniform_init(key, (buffer_size, *tuple(event_shape)), init_scale)
        return PCDState(init_train_state(params, optimizer), buf)

    def step(state: PCDState, key: Key, x: Batch) -> tuple[PCDState, dict[str, Array]]:
        k_idx, k_re, k_noise, k_run, k_upd = jax.random.split(key, 5)
        n = x.shape[0]
        idx = jax.random.randint(k_idx, (n,), 0, state.buffer.shape[0])
        rows = state.buffer[idx]
        fresh = uniform_init(k_noise, rows.shape, init_scale)
        re = jax.random.bernoulli(k_re, reinit_prob, (n,)).reshape((n,) + (1,) * (x.ndim - 1))
        neg = sample(state.train_state.params, k_run, jnp.where(re, fresh, rows))
        ts, metrics = apply_update(loss, optimizer, state.train_state, k_upd, (x, neg))
        return PCDState(ts, state.buffer.at[idx].set(neg)), metrics

    return PCD(init, step)
