"""MALA with dual-averaging step-size adaptation, one step size per chain (under ``vmap``).

The first ``warmup`` steps adapt each chain's step ``h`` (proposal ``x + h grad log p(x) +
sqrt(2h) z``, the kernel of :func:`flowzoo.samplers.mala`) with the dual averaging of
Hoffman & Gelman (2014, section 3.2.1, after Nesterov 2009) towards the acceptance rate
0.574, optimal for MALA (Roberts & Rosenthal 1998); the remaining steps sample at the
averaged step the adaptation ends with. The dual averaging is blackjax's
(``blackjax/adaptation/step_size.py``, ``dual_averaging_adaptation``: ``t0 = 10``,
``gamma = 0.05``, ``kappa = 0.75``, shrinking towards ``log(10 h0)``).

Also the step split shared by the adapted chains (:func:`split_steps`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Key
from ._base import Sampler, run_chain
from ._mala import mala


def split_steps(num_steps: int, warmup_fraction: float, trace: int) -> tuple[int, int, int]:
    """``(warmup, sampling, thin)``: the first ``floor(warmup_fraction * num_steps)`` steps
    adapt, the rest (at least one) sample; ``thin = num_steps // trace`` keeps ``trace``
    positions over the whole run, so it must divide both phases (e.g. ``trace`` even and
    ``num_steps`` a multiple of it at the default half); ``thin`` is 0 without a trace."""
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    warmup = int(warmup_fraction * num_steps)
    thin = num_steps // trace if trace else 0
    if trace and (num_steps % trace or warmup % thin):
        raise ValueError(
            f"trace={trace} must divide num_steps={num_steps} and the {warmup} warm-up steps "
            f"into blocks of num_steps // trace"
        )
    return warmup, num_steps - warmup, thin


class AdaptedResult(NamedTuple):
    """An adapted chain run: ``position`` ``(n, *event)`` after the last step; ``grads``
    ``(n,)`` int32, gradient evaluations per chain, warm-up and the initial one included;
    ``acceptance`` the mean acceptance probability over the sampling steps and chains;
    ``step_size`` ``(n,)`` the adapted steps; ``trace`` ``(trace, n, *event)`` or ``None``."""

    position: Batch
    grads: Array
    acceptance: Array
    step_size: Array
    trace: Array | None


class _State(NamedTuple):
    position: Batch  # (n, *event)
    log_prob: Array  # (n,)
    score: Batch  # (n, *event)
    da: Any  # blackjax's DualAveragingAdaptationState, one per chain


class _Info(NamedTuple):
    acceptance_rate: Array  # (n,)


def _chain(log_prob_fn: Callable[[Batch], Array], target: float, adapt: bool) -> Sampler:
    """The batch as ``n`` one-chain MALA kernels under ``vmap``, each at its own step; with
    ``adapt`` the step follows the dual averaging, else it stays at the averaged step."""
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    _, da_update, _ = dual_averaging_adaptation(target)

    def one(key, x, lp, s, da):
        h = jnp.exp(da.log_step_size if adapt else da.log_step_size_avg)
        state, info = mala(log_prob_fn, h).step(key, (x[None], lp[None], s[None]))
        da = da_update(da, info.acceptance_rate[0]) if adapt else da
        return (state.position[0], state.log_prob[0], state.score[0], da), info.acceptance_rate[0]

    def step(key: Key, state: _State) -> tuple[_State, _Info]:
        keys = jax.random.split(key, state.position.shape[0])
        out, accept = jax.vmap(one)(keys, *state)
        return _State(*out), _Info(accept)

    return Sampler(lambda state: state, step)


def mala_adapted_sample(
    log_prob_fn: Callable[[Batch], Array],
    key: Key,
    positions: Batch,
    num_steps: int,
    *,
    initial_step_size: float = 0.1,
    target_acceptance: float = 0.574,
    warmup_fraction: float = 0.5,
    trace: int = 0,
) -> AdaptedResult:
    """Run ``num_steps`` MALA steps per chain from ``positions`` ``(n, *event)``, the first
    ``floor(warmup_fraction * num_steps)`` of them adapting each chain's step.

    ``log_prob_fn(x) -> (batch,)``: unnormalised log-density. Step ``i`` of the warm-up
    uses ``fold_in(k_warm, i)``, of the sampling ``fold_in(k_run, i)`` with ``k_warm, k_run
    = split(key)``; each split over chains. Gradient evaluations per chain: one at the start
    and one per step (``num_steps + 1``).
    """
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    warmup, sampling, thin = split_steps(num_steps, warmup_fraction, trace)
    n = positions.shape[0]
    da_init = dual_averaging_adaptation(target_acceptance)[0]
    start = mala(log_prob_fn, initial_step_size).init(positions)
    da = jax.vmap(lambda _: da_init(jnp.asarray(initial_step_size, jnp.float32)))(jnp.arange(n))
    state = _State(start.position, start.log_prob, start.score, da)
    k_warm, k_run = jax.random.split(key)
    kept = []
    if warmup:
        res = run_chain(
            _chain(log_prob_fn, target_acceptance, True), k_warm, state, warmup, thin or warmup
        )
        state, kept = res.state, [res.positions]
    if not warmup:  # no adaptation: the average is the initial step
        state = state._replace(da=state.da._replace(log_step_size_avg=state.da.log_step_size))
    chain = _chain(log_prob_fn, target_acceptance, False)
    res = run_chain(chain, k_run, state, sampling, thin or sampling)
    return AdaptedResult(
        res.state.position,
        jnp.full((n,), num_steps + 1, jnp.int32),
        jnp.mean(res.mean_info.acceptance_rate),
        jnp.exp(res.state.da.log_step_size_avg),
        jnp.concatenate([*kept, res.positions]) if trace else None,
    )
