"""The Sampler protocol and ``run_chain`` (a ``lax.scan`` driver with thinning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Key


class Sampler(NamedTuple):
    """A batched Markov chain as two pure functions (the blackjax ``(init, step)`` pattern).

    * ``init(positions) -> state`` with ``positions`` of shape ``(chains, *event)``; every
      state has a ``position`` field of that shape.
    * ``step(key, state) -> (state, info)``; ``info`` holds per-step diagnostics (never fed
      back into the chain).
    """

    init: Callable[[Batch], Any]
    step: Callable[[Key, Any], tuple[Any, Any]]


class ChainResult(NamedTuple):
    """Output of :func:`run_chain`.

    Attributes:
      state: final state.
      positions: kept positions ``(num_steps // thin, chains, *event)``.
      info: the ``info`` of every kept step (the last step of each block of ``thin``),
        stacked on a leading axis.
      mean_info: every ``info`` leaf averaged over all ``num_steps`` steps, kept or not
        (booleans as fractions; e.g. MALA's mean acceptance rate per chain).
    """

    state: Any
    positions: Array
    info: Any
    mean_info: Any


def run_chain(
    sampler: Sampler, key: Key, positions: Batch, num_steps: int, thin: int = 1
) -> ChainResult:
    """Run ``num_steps`` steps of ``sampler`` from ``positions`` ``(chains, *event)``.

    Step ``i`` uses ``fold_in(key, i)``. Every ``thin``-th state is kept (``num_steps`` must be
    a multiple of ``thin``), so memory is ``num_steps // thin`` snapshots. The info of every
    step is summed as the chain runs (one running total per info leaf, not a stored
    history), so ``mean_info`` averages all steps whatever ``thin`` is. Use it under
    ``jax.jit`` (``sampler``, ``num_steps`` and ``thin`` static).
    """
    if thin < 1 or num_steps % thin:
        raise ValueError(f"num_steps ({num_steps}) must be a positive multiple of thin ({thin})")
    state0 = sampler.init(positions)
    info_shape = jax.eval_shape(sampler.step, key, state0)[1]
    total0 = jax.tree.map(
        lambda a: jnp.zeros(a.shape, jnp.promote_types(a.dtype, jnp.float32)), info_shape
    )

    def one(carry, i):
        state, total = carry
        state, info = sampler.step(jax.random.fold_in(key, i), state)
        total = jax.tree.map(lambda t, a: t + a.astype(t.dtype), total, info)
        return (state, total), info

    def block(carry, j):
        carry, info = jax.lax.scan(one, carry, j * thin + jnp.arange(thin))
        return carry, (carry[0].position, jax.tree.map(lambda a: a[-1], info))

    (state, total), (kept, info) = jax.lax.scan(
        block, (state0, total0), jnp.arange(num_steps // thin)
    )
    mean_info = jax.tree.map(lambda t: t / num_steps, total)
    return ChainResult(state, kept, info, mean_info)
