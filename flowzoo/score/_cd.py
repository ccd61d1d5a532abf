"""Contrastive divergence for energy models with short-run Langevin and a replay buffer.

The gradient of the negative log-likelihood of ``p(x) ∝ exp(-E(x))`` is
``E_data[grad E] - E_model[grad E]``; model samples come from ``num_steps`` of ULA on
``-E`` (gradients stopped). Loss ``mean E(x_data) - mean E(x_neg) + alpha * mean(E^2)``
(the energy-magnitude regulariser of Du & Mordatch 2019).

Where the persistent buffer lives (the pure ``loss(params, key, batch)`` signature has no
state): a **persistent** chain needs state that survives the step, so it is carried
explicitly by a separate train step, :func:`persistent_cd`, whose state is
``PCDState(train_state, buffer)``; each step reinitialises a fraction of the drawn buffer
rows from noise, runs short-run Langevin from them, updates the parameters and writes the
negatives back. :func:`cd_loss` is the stateless form that fits ``flowzoo.train.fit``:
``batch`` is either the data (negatives start from uniform noise — short-run MCMC,
Nijkamp et al. 2019) or a tuple ``(data, negative_init)`` (e.g. rows of a buffer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._types import Array, Batch, Key, Params
from ..samplers._base import run_chain
from ..samplers._ula import ula
from ..train._step import TrainState, apply_update, init_train_state
from ._energy import score_from_energy

EnergyApply = Callable[[Params, Batch], Array]


def short_run_langevin(energy_apply: EnergyApply, num_steps: int, step_size: float):
    """``(params, key, x_init) -> x_neg``: ``num_steps`` ULA steps on ``exp(-E)``, no gradient."""
    score = score_from_energy(energy_apply)

    def run(params: Params, key: Key, x_init: Batch) -> Batch:
        params = jax.lax.stop_gradient(params)
        sampler = ula(lambda x: score(params, x), step_size)
        res = run_chain(sampler, key, x_init, num_steps, thin=num_steps)
        return jax.lax.stop_gradient(res.state.position)

    return run


def _objective(energy_apply: EnergyApply, alpha: float):
    def objective(params: Params, x: Batch, neg: Batch) -> tuple[Array, dict[str, Array]]:
        e_pos, e_neg = energy_apply(params, x), energy_apply(params, neg)
        cd = jnp.mean(e_pos) - jnp.mean(e_neg)
        val = cd + alpha * (jnp.mean(e_pos**2) + jnp.mean(e_neg**2))
        return val, {"loss": val, "cd": cd, "e_data": jnp.mean(e_pos), "e_model": jnp.mean(e_neg)}

    return objective


def uniform_init(key: Key, shape: tuple[int, ...], scale: float) -> Batch:
    """Uniform noise on ``[-scale, scale]^event`` (the usual short-run/buffer initialisation)."""
    return jax.random.uniform(key, shape, minval=-scale, maxval=scale)


def cd_loss(
    energy_apply: EnergyApply,
    *,
    num_steps: int = 50,
    step_size: float = 0.01,
    alpha: float = 0.1,
    init_scale: float = 3.0,
):
    """Stateless CD loss ``(params, key, batch) -> (loss, metrics)``.

    ``energy_apply(params, x) -> (batch,)``. ``batch`` is ``x`` (negatives from uniform noise
    on ``[-init_scale, init_scale]``) or ``(x, negative_init)``.
    """
    sample = short_run_langevin(energy_apply, num_steps, step_size)
    objective = _objective(energy_apply, alpha)

    def loss(params: Params, key: Key, batch: Any) -> tuple[Array, dict[str, Array]]:
        x, init = batch if isinstance(batch, tuple) else (batch, None)
        if init is None:
            key, k0 = jax.random.split(key)
            init = uniform_init(k0, x.shape, init_scale)
        return objective(params, x, sample(params, key, init))

    return loss


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
    objective = _objective(energy_apply, alpha)
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
