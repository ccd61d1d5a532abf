"""Contrastive divergence for energy models with short-run Langevin and a replay buffer.

The gradient of the negative log-likelihood of ``p(x) ∝ exp(-E(x))`` is
``E_data[grad E] - E_model[grad E]``; model samples come from ``num_steps`` of ULA on
``-E`` (gradients stopped). Loss ``mean E(x_data) - mean E(x_neg) + alpha * mean(E^2)``
(the energy-magnitude regulariser of Du & Mordatch 2019).

A **persistent** chain needs state that survives the step (the pure ``loss(params, key,
batch)`` signature has none), so it is a train step of its own,
:func:`flowzoo.train.persistent_cd`. :func:`cd_loss` is the stateless form that fits
``flowzoo.train.fit``:
``batch`` is either the data (negatives start from uniform noise — short-run MCMC,
Nijkamp et al. 2019) or a tuple ``(data, negative_init)`` (e.g. rows of a buffer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Key, Params
from ..samplers import run_chain, ula
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


def cd_objective(energy_apply: EnergyApply, alpha: float):
    """``(params, x, negatives) -> (loss, metrics)``: ``mean E(x) - mean E(neg)`` plus
    ``alpha`` times the mean squared energies (Du & Mordatch 2019)."""

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
    objective = cd_objective(energy_apply, alpha)

    def loss(params: Params, key: Key, batch: Any) -> tuple[Array, dict[str, Array]]:
        x, init = batch if isinstance(batch, tuple) else (batch, None)
        if init is None:
            key, k0 = jax.random.split(key)
            init = uniform_init(k0, x.shape, init_scale)
        return objective(params, x, sample(params, key, init))

    return loss
