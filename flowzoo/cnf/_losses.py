"""FFJORD maximum-likelihood loss for a :class:`~flowzoo.cnf.CNF` with a key-explicit estimator."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from .._types import Array, Key, Params
from ._cnf import CNF


def cnf_nll_loss(model: CNF) -> Callable[[Params, Key, Array], tuple[Array, dict]]:
    """``loss(params, key, batch) -> (mean NLL in nats, {"nll", "nfe", "num_steps"})``.

    Uses ``model.log_prob_and_stats`` with ``key``: the Hutchinson estimate when the CNF was
    built with ``divergence="hutchinson"`` (unbiased for the log-likelihood, so its gradient is
    an unbiased gradient of the NLL), the exact trace otherwise. ``batch`` is ``(batch,
    *event)`` or ``(x, context)``. Time convention: the CNF's (t=0 noise, t=1 data).
    ``nfe`` counts evaluations of the forward (likelihood) solve only.
    """

    def loss(params: Params, key: Key, batch):
        x, context = batch if isinstance(batch, tuple) else (batch, None)
        logp, stats = model.log_prob_and_stats(params, x, context, key=key)
        nll = -jnp.mean(logp)
        aux = {
            "nll": nll,
            "nfe": stats.nfe.astype(jnp.float32),
            "num_steps": stats.num_steps.astype(jnp.float32),
        }
        return nll, aux

    return loss
