"""The Sampler protocol and ``run_chain`` (a ``lax.scan`` driver with thinning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

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
      info: the ``info`` of every kept step, stacked on a leading axis.
    """

    state: Any
    positions: Array
    info: Any


def run_chain(
    sampler: Sampler, key: Key, positions: Batch, num_steps: int, thin: int = 1
) -> ChainResult:
    """Run ``num_steps`` steps of ``sampler`` from ``positions`` ``(chains, *event)``.

    Step ``i`` uses ``fold_in(key, i)``. Every ``thin``-th state is kept (``num_steps`` must be
    a multiple of ``thin``), so memory is ``num_steps // thin`` snapshots. Use it under
    ``jax.jit`` (``sampler``, ``num_steps`` and ``thin`` static).
    """
    if thin < 1 or num_steps % thin:
        raise ValueError(f"num_steps ({num_steps}) must be a positive multiple of thin ({thin})")

    def one(state, i):
        return sampler.step(jax.random.fold_in(key, i), state)

    def block(state, j):
        state, info = jax.lax.scan(one, state, j * thin + jax.numpy.arange(thin))
        return state, (state.position, jax.tree.map(lambda a: a[-1], info))

    state, (kept, info) = jax.lax.scan(
        block, sampler.init(positions), jax.numpy.arange(num_steps // thin)
    )
    return ChainResult(state, kept, info)
