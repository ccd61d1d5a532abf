"""Maximum-likelihood loss for any ``Distribution``."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from .._types import Array, Key, Params
from ..distributions import Distribution


def nll_loss(dist: Distribution) -> Callable[[Params, Key, Array], tuple[Array, dict]]:
    """``loss(params, key, batch) -> (mean negative log-likelihood in nats, {"nll": ...})``.

    ``batch`` is an array ``(batch, *event)`` or a pair ``(x, context)`` for conditional
    densities. The key is unused (exact likelihood) but kept for the common loss signature.
    """

    def loss(params: Params, key: Key, batch):
        del key
        x, context = batch if isinstance(batch, tuple) else (batch, None)
        nll = -jnp.mean(dist.log_prob(params, x, context))
        return nll, {"nll": nll}

    return loss
