"""Score matching without noise: exact (Hyvärinen 2005) and sliced (Song et al. 2019).

Both estimate ``E_p[ 1/2 |s(x)|^2 + tr(ds/dx) ]``, which equals the Fisher divergence
``1/2 E_p |s(x) - grad log p(x)|^2`` up to a constant. Losses are
``loss(params, key, batch) -> (scalar, metrics)``; ``score_apply(params, x) -> (batch, *event)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from .._types import Array, Batch, Key, Params
from ..integrate import divergence_exact, divergence_hutchinson, sample_probes

ScoreApply = Callable[[Params, Batch], Batch]


def _flat(x: Array) -> Array:
    return x.reshape(x.shape[0], -1)


def exact_score_matching_loss(score_apply: ScoreApply):
    """Hyvärinen score matching ``mean(1/2 |s|^2 + tr(ds/dx))`` with the exact Jacobian trace."""

    def loss(params: Params, key: Key, batch: Batch) -> tuple[Array, dict[str, Array]]:
        del key
        s, tr = divergence_exact(lambda y: score_apply(params, y), batch)
        sq = 0.5 * jnp.sum(_flat(s) ** 2, 1)
        val = jnp.mean(sq + tr)
        return val, {"loss": val, "trace": jnp.mean(tr)}

    return loss


def sliced_score_matching_loss(
    score_apply: ScoreApply, num_projections: int = 1, variance_reduced: bool = True
):
    """Sliced score matching with Gaussian projections ``v ~ N(0, I)``.

    ``v^T (ds/dx) v + 1/2 (v^T s)^2`` (plain) or ``v^T (ds/dx) v + 1/2 |s|^2`` (the
    variance-reduced SSM-VR form, which integrates ``E_v (v^T s)^2 = |s|^2`` analytically).
    ``v^T J v`` costs one forward-mode product per projection.
    """

    def loss(params: Params, key: Key, batch: Batch) -> tuple[Array, dict[str, Array]]:
        f = lambda y: score_apply(params, y)
        v = sample_probes(key, num_projections, batch.shape, batch.dtype, "gaussian")
        s, vjv = divergence_hutchinson(f, batch, v)  # vjv: (P, batch)
        if variance_reduced:
            sq = 0.5 * jnp.sum(_flat(s) ** 2, -1)[None]
        else:
            sq = 0.5 * jnp.sum(_flat_p(v) * _flat(s)[None], -1) ** 2
        val = jnp.mean(sq + vjv)
        return val, {"loss": val, "trace": jnp.mean(vjv)}

    return loss


def _flat_p(x: Array) -> Array:
    return x.reshape(x.shape[0], x.shape[1], -1)
