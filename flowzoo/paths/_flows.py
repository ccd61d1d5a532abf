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
    with flow-matching code (t=0 noise, t=1 data) convert it with :func:`sde_to_flow_time`,
    the one place the time conversion is defined.
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


def sde_to_flow_time(
    field: Callable[[Array, Batch], Batch], T: float
) -> Callable[[Array, Batch], Batch]:
    """A vector field in SDE time as one in flow-matching time: the one conversion.

    SDE time ``t`` runs data (0) to noise (T); flow-matching time ``s`` runs noise (0) to
    data (1). With ``t = T (1 - s)``, ``dx/ds = -T * field(T (1 - s), x)``: integrating the
    result from ``s = 0`` to ``s = 1 - t_min / T`` is integrating ``field`` from ``T`` down to
    ``t_min``. Use it to hand the probability-flow ODE of a score model
    (:func:`probability_flow`) to code written in flow-matching time (flow ODE samplers,
    :func:`flowzoo.cnf.cnf` with its default ``t_base=0``).
    """

    def flow_field(s: Array, x: Batch) -> Batch:
        return -T * field(T * (1.0 - s), x)

    return flow_field
