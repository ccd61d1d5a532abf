"""The Distribution protocol shared by base distributions, flows and CNFs."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .._types import Context


class Distribution(NamedTuple):
    """A density over ``(batch, *event_shape)`` arrays as pure functions over explicit params.

    * ``init(key, x, context=None) -> params`` (``x``: a data batch; may drive data-dependent
      initialisation).
    * ``log_prob(params, x, context=None) -> (batch,)`` log-density in nats.
    * ``sample(params, key, n, context=None, temperature=1.0) -> (n, *event_shape)``.
    * ``sample_and_log_prob(params, key, n, context=None, temperature=1.0)
      -> ((n, *event_shape), (n,))``; the log-density is that of the untempered model.

    ``context`` (optional) conditions the density; it has a leading axis equal to the batch
    (for ``log_prob``) or to ``n`` (for sampling: one sample per context row).
    ``temperature`` scales the standard deviation of the base noise (Kingma & Dhariwal 2018).
    """

    init: Callable
    log_prob: Callable
    sample: Callable
    sample_and_log_prob: Callable
    event_shape: tuple[int, ...] = ()


def check_context(n: int, context: Context, what: str) -> None:
    """Raise a clear error when ``context`` does not have leading size ``n``."""
    if context is not None and context.shape[0] != n:
        raise ValueError(
            f"{what}: context has leading size {context.shape[0]} but {n} rows were requested; "
            "pass one context row per sample (e.g. jnp.repeat(context, n, axis=0))"
        )


def check_event(x, event_shape: tuple[int, ...], what: str) -> None:
    """Raise a clear error when ``x`` is not ``(batch, *event_shape)``."""
    if tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"{what}: expected an array of shape (batch, {', '.join(map(str, event_shape))}), "
            f"got {tuple(x.shape)}"
        )
