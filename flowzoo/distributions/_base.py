"""The Distribution protocol: the model tuple of every flowzoo family that has a density."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .._types import Context


class Distribution(NamedTuple):
    """A density over ``(batch, *event_shape)`` arrays as pure functions over explicit params.

    Coupling flows, Glow, CNFs, flow-matching models, the probability-flow ODE of a score
    model and dequantized image models are all this tuple:

    * ``init(key, x, context=None) -> params`` (``x``: a data batch; may drive data-dependent
      initialisation such as ActNorm).
    * ``log_prob(params, x, context=None) -> (batch,)`` log-density in nats; deterministic.
    * ``sample(params, key, n, context=None, temperature=1.0) -> (n, *event_shape)``.
    * ``sample_and_log_prob(params, key, n, context=None, temperature=1.0)
      -> ((n, *event_shape), (n,))``; the log-density is that of the untempered model.
    * ``event_shape``: the shape of one example.
    * ``log_prob_estimate(params, key, x, context=None) -> (batch,)`` or ``None``: a
      stochastic, unbiased (or bound) estimate of ``log_prob`` that needs a key, where the
      family has a cheaper one than ``log_prob`` (Hutchinson probes of a CNF, a fresh
      dequantization draw). Training uses it when present
      (:func:`flowzoo.flows.nll_loss`); :func:`log_prob_estimate` falls back to ``log_prob``.

    ``context`` (optional) conditions the density; it has a leading axis equal to the batch
    (for ``log_prob``) or to ``n`` (for sampling: one sample per context row).
    ``temperature`` scales the standard deviation of the base noise (Kingma & Dhariwal 2018).
    """

    init: Callable
    log_prob: Callable
    sample: Callable
    sample_and_log_prob: Callable
    event_shape: tuple[int, ...] = ()
    log_prob_estimate: Callable | None = None


def log_prob_estimate(dist: Distribution, params, key, x, context: Context = None):
    """``dist.log_prob_estimate(params, key, x, context)``, or the exact ``log_prob`` if the
    distribution has no stochastic estimator. ``(batch,)`` nats."""
    if dist.log_prob_estimate is None:
        return dist.log_prob(params, x, context)
    return dist.log_prob_estimate(params, key, x, context)


def check_count(n, what: str) -> int:
    """Return ``n`` as an int, raising ``ValueError``/``TypeError`` unless it is an int >= 1."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{what}: n must be an int (the number of samples), got {n!r}")
    if n < 1:
        raise ValueError(f"{what}: n must be >= 1, got {n}")
    return int(n)


def check_context(n: int, context: Context, what: str) -> None:
    """Raise a clear error when ``context`` does not have leading size ``n``."""
    if context is not None and context.shape[0] != n:
        raise ValueError(
            f"{what}: context has leading size {context.shape[0]} but {n} rows were requested; "
            "pass one context row per sample (e.g. jnp.repeat(context, n, axis=0))"
        )


def check_event(x, event_shape: tuple[int, ...], what: str) -> None:
    """Raise a clear error when ``x`` is not ``(batch, *event_shape)`` with ``batch >= 1``."""
    if tuple(x.shape[1:]) != tuple(event_shape) or x.ndim != len(event_shape) + 1:
        raise ValueError(
            f"{what}: expected an array of shape (batch, {', '.join(map(str, event_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{what}: x is an empty batch (shape {tuple(x.shape)})")
