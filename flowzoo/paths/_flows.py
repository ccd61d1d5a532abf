"""The one conversion from an SDE + score to the probability-flow ODE vector field."""

from __future__ import annotations

from collections.abc import Callable

from .._types import Array, Batch
from ._sdes import SDE, bcast


def probability_flow(
    sde: SDE, score_fn: Callable[[Array, Batch], Batch]
) -> Callable[[Array, Batch], Batch]:
    """``v(t, x) = f(t, x) - g(t)^2 / 2 * score(t, x)`` (Song et al. 2021, eq. 13).

    Time convention: the SDE's, **t=0 data, t=T noise**; integrating ``v`` from ``T`` down to
    0 maps prior samples to data, with the same marginals ``p_t`` as the SDE. To use it
    with flow-matching code (t=0 noise, t=1 data) substitute ``s = 1 - t/T`` and use
    ``-T * v``; this function is the only place the conversion is defined.
    ``score_fn(t, x) -> (batch, *event)`` with ``t`` scalar or ``(batch,)``.
    """

    def vector_field(t: Array, x: Batch) -> Batch:
        g = bcast(sde.diffusion(t), x)
        return sde.drift(t, x) - 0.5 * g**2 * score_fn(t, x)

    return vector_field


def reverse_drift(
    sde: SDE, score_fn: Callable[[Array, Batch], Batch]
) -> Callable[[Array, Batch], Batch]:
    """Drift of the reverse-time SDE ``f(t, x) - g(t)^2 score(t, x)`` (Anderson 1982).

    In the SDE's time (t=0 data, t=T noise), ``dx = [f - g^2 score] dt + g dW_bar`` with
    ``dt < 0``.
    """

    def drift(t: Array, x: Batch) -> Batch:
        g = bcast(sde.diffusion(t), x)
        return sde.drift(t, x) - g**2 * score_fn(t, x)

    return drift
