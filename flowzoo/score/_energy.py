"""Energies to scores: ``score = grad_x log p = -grad_x E`` (one function for every energy)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._types import Array, Batch


def score_from_energy(energy_fn: Callable[..., Array]) -> Callable[..., Batch]:
    """``score(*args, x) = -grad_x sum_i E(*args, x)_i`` for a batched energy.

    ``energy_fn(*args, x) -> (batch,)`` where ``x`` is the **last** argument, ``(batch,
    *event)``; examples must not interact (true of any per-example network), so the gradient
    of the sum is the per-example gradient. Works for ``E(x)``, ``E(params, x)`` and
    time-conditioned ``E(params, t, x)`` alike. Returns ``(batch, *event)``.
    """

    def score(*args):
        *head, x = args
        return -jax.grad(lambda y: jnp.sum(energy_fn(*head, y)))(x)

    return score


def score_from_log_prob(log_prob_fn: Callable[..., Array]) -> Callable[..., Batch]:
    """``grad_x log p`` for a batched unnormalised log-density (``x`` the last argument)."""
    return score_from_energy(lambda *args: -log_prob_fn(*args))
