"""Maximum-likelihood loss for any ``Distribution``."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from .._types import Array, Key, Params
from ..distributions import Distribution, log_prob_estimate


def nll_loss(
    dist: Distribution, *, bits_per_dim: bool = False
) -> Callable[[Params, Key, Array], tuple[Array, dict]]:
    """``loss(params, key, batch) -> (mean negative log-likelihood, metrics)``.

    Uses ``dist.log_prob_estimate`` with the step's key where the distribution has one (a
    CNF's Hutchinson estimate, a fresh dequantization draw: unbiased or a bound, so its
    gradient trains the model), ``dist.log_prob`` otherwise. ``batch`` is an array
    ``(batch, *event)`` or a pair ``(x, context)`` for conditional densities.

    With ``bits_per_dim=True`` the loss is in bits per dimension (``nll / (D ln 2)``, the
    unit image models are trained and reported in); metrics ``{"bpd", "nll"}`` (``nll`` in
    nats per example). Otherwise the loss is in nats and metrics are ``{"nll"}``.
    """
    per_dim = None
    if bits_per_dim:
        if not dist.event_shape:
            raise ValueError("nll_loss(bits_per_dim=True) needs a distribution with event_shape")
        per_dim = 1.0 / (int(np.prod(dist.event_shape)) * math.log(2.0))

    def loss(params: Params, key: Key, batch):
        x, context = batch if isinstance(batch, tuple) else (batch, None)
        nll = -jnp.mean(log_prob_estimate(dist, params, key, x, context))
        if per_dim is None:
            return nll, {"nll": nll}
        bpd = nll * per_dim
        return bpd, {"bpd": bpd, "nll": nll}

    return loss
