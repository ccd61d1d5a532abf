"""HMC and NUTS from blackjax, each chain tuned by Stan's window adaptation under ``vmap``.

The kernels are blackjax's, not rewritten (``blackjax/mcmc/hmc.py``, ``blackjax/mcmc/nuts.py``:
velocity Verlet, multinomial NUTS of Betancourt 2017 with the iterative trajectory of
Phan et al. 2019), and so is the warm-up (``blackjax/adaptation/window_adaptation.py``,
``blackjax.window_adaptation``): Stan's schedule (Stan reference manual, "HMC algorithm
parameters") of a fast window adapting the step size by dual averaging (Hoffman & Gelman
2014), slow windows of doubling length that also estimate a diagonal inverse mass matrix
(the chain's variance, shrunk towards 1e-3), and a final fast window. Each chain adapts
its own step size and mass matrix from its own history: ``blackjax.window_adaptation(...)
.run`` is ``jax.vmap``-ed over chains, no information crosses chains.

Gradient evaluations are counted from blackjax's own transition records: one at the start
(``init`` evaluates the log-density and its gradient) and ``info.num_integration_steps`` per
transition, warm-up and sampling alike (one gradient per velocity-Verlet step; for NUTS the
number of states in the trajectory, rejected sub-trajectories included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Key
from ._adapt import AdaptedResult, split_steps
from ._base import Sampler, run_chain


class _Info(NamedTuple):
    acceptance_rate: Array  # (n,)
    num_integration_steps: Array  # (n,)


def _flat_log_density(log_prob_fn: Callable[[Batch], Array], event_shape: tuple[int, ...]):
    """One chain's log-density on the flattened event, as blackjax expects."""
    return lambda z: log_prob_fn(z.reshape(1, *event_shape))[0]


def _warmup(algorithm, log_density, key, z0, warmup, thin, trace, options, kernel_options):
    """``window_adaptation(...).run`` per chain under ``vmap``: the adapted states, step
    sizes ``(n,)``, inverse masses ``(n, d)``, gradients spent ``(n,)`` and the kept
    positions ``(warmup // thin, n, d)`` when tracing."""
    from blackjax import window_adaptation
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    keep = get_filter_adapt_info_fn({"position"} if trace else set(), {"num_integration_steps"})
    adapt = window_adaptation(
        algorithm, log_density, adaptation_info_fn=keep, **options, **kernel_options
    )
    run = lambda k, z: adapt.run(k, z, warmup)
    (state, params), info = jax.vmap(run)(jax.random.split(key, z0.shape[0]), z0)
    grads = jnp.sum(info.info.num_integration_steps, 1, dtype=jnp.int32)
    kept = jnp.swapaxes(info.state.position[:, thin - 1 :: thin], 0, 1) if trace else None
    return state, params["step_size"], params["inverse_mass_matrix"], grads, kept


def _sampling_chain(kernel, log_density, step_size, inverse_mass, kernel_options) -> Sampler:
    """The batch as ``n`` blackjax kernels under ``vmap``, each at its adapted parameters."""

    def one(key, state, eps, inv_mass):
        new, info = kernel(key, state, log_density, eps, inv_mass, **kernel_options)
        return new, _Info(info.acceptance_rate, info.num_integration_steps)

    def step(key: Key, state: Any) -> tuple[Any, _Info]:
        keys = jax.random.split(key, step_size.shape[0])
        return jax.vmap(one)(keys, state, step_size, inverse_mass)

    return Sampler(lambda state: state, step)


def hmc_family_sample(
    algorithm: str,
    log_prob_fn: Callable[[Batch], Array],
    key: Key,
    positions: Batch,
    num_steps: int,
    *,
    initial_step_size: float = 1.0,
    target_acceptance: float = 0.8,
    warmup_fraction: float = 0.5,
    trace: int = 0,
    **kernel_options: Any,
) -> AdaptedResult:
    """``num_steps`` transitions of blackjax's ``algorithm`` (``"hmc"`` or ``"nuts"``) per
    chain from ``positions`` ``(n, *event)``: the first ``floor(warmup_fraction *
    num_steps)`` in window adaptation, the rest at the adapted step size and diagonal mass
    matrix.

    ``log_prob_fn(x) -> (batch,)``: unnormalised log-density. ``kernel_options``: the
    kernel's own (``num_integration_steps`` for HMC, ``max_num_doublings`` for NUTS). Keys:
    ``k_warm, k_run = split(key)``; chain ``c`` adapts with ``split(k_warm, n)[c]``;
    sampling step ``i`` uses ``split(fold_in(k_run, i), n)[c]``. Without warm-up steps the
    chains sample at ``initial_step_size`` and an identity mass matrix.
    """
    import blackjax

    algo = getattr(blackjax, algorithm)
    warmup, sampling, thin = split_steps(num_steps, warmup_fraction, trace)
    n, event_shape = positions.shape[0], positions.shape[1:]
    z0 = positions.reshape(n, -1)
    log_density = _flat_log_density(log_prob_fn, event_shape)
    k_warm, k_run = jax.random.split(key)
    if warmup:
        options = dict(
            initial_step_size=initial_step_size, target_acceptance_rate=target_acceptance
        )
        state, step_size, inv_mass, grads, kept = _warmup(
            algo, log_density, k_warm, z0, warmup, thin, trace, options, kernel_options
        )
    else:
        state = jax.vmap(lambda z: algo.init(z, log_density))(z0)
        step_size = jnp.full((n,), initial_step_size, jnp.float32)
        inv_mass, grads, kept = jnp.ones_like(z0), jnp.zeros((n,), jnp.int32), None
    chain = _sampling_chain(algo.build_kernel(), log_density, step_size, inv_mass, kernel_options)
    res = run_chain(chain, k_run, state, sampling, thin or sampling)
    # run_chain averages each info leaf over the steps: back to a per-chain integer sum
    grads = grads + 1 + jnp.round(res.mean_info.num_integration_steps * sampling).astype(jnp.int32)
    positions_kept = None
    if trace:
        kept_all = res.positions if kept is None else jnp.concatenate([kept, res.positions])
        positions_kept = kept_all.reshape(kept_all.shape[:2] + event_shape)
    return AdaptedResult(
        res.state.position.reshape(positions.shape),
        grads,
        jnp.mean(res.mean_info.acceptance_rate),
        step_size,
        positions_kept,
    )
