"""Score and energy networks, built on :mod:`flowzoo.nets` (the only flax code).

All are :class:`flowzoo.nets.Network` pairs ``(init, apply)``. Time convention for the
SDE-conditioned network: t=0 data, t=T noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key, Params
from ..nets import Network, mlp, time_mlp
from ..paths import SDE, bcast


def energy_network(hidden: Sequence[int] = (128, 128, 128), activation_fn: str = "silu") -> Network:
    """A scalar energy ``apply(params, x) -> (batch,)`` (smooth activation: scores need grads)."""
    net = mlp(1, hidden, activation_fn)
    return Network(net.init, lambda params, x: net.apply(params, x)[:, 0])


def noise_conditional_score_network(
    event_shape: int | Sequence[int],
    sigma_min: float,
    sigma_max: float,
    hidden: Sequence[int] = (128, 128, 128),
    **kwargs,
) -> Network:
    """NCSN score ``apply(params, sigma, x, context=None) -> (batch, *event)``, scaled by ``1/sigma``.

    ``sigma`` (scalar or ``(batch,)``) is embedded as ``log(sigma/sigma_min) /
    log(sigma_max/sigma_min)`` in [0, 1] by :func:`flowzoo.nets.time_mlp`; dividing the output
    by ``sigma`` is the Song & Ermon (2020) parametrisation (scores scale as ``1/sigma``).
    """
    net = time_mlp(event_shape, hidden, **kwargs)
    scale = float(np.log(sigma_max / sigma_min))
    u = lambda sigma: jnp.log(jnp.asarray(sigma, jnp.float32) / sigma_min) / scale

    def init(key: Key, sigma: Array, x: Batch, context: Array | None = None) -> Params:
        return net.init(key, u(sigma), x, context)

    def apply(params: Params, sigma: Array, x: Batch, context: Array | None = None) -> Batch:
        return net.apply(params, u(sigma), x, context) / bcast(sigma, x)

    return Network(init, apply)


def sde_score_network(
    sde: SDE, event_shape: int | Sequence[int], hidden: Sequence[int] = (128, 128, 128), **kwargs
) -> Network:
    """Time-conditioned score ``apply(params, t, x, context=None)``, divided by std(t).

    The output is the network's divided by the marginal std(t), so the network predicts
    ``-noise``; ``context`` (optional, ``(batch, *context)``) conditions it.

    t=0 data, t=T noise; ``t`` scalar or ``(batch,)`` (embedded as ``t/T``). Use ``t > 0``
    for VP/sub-VP (std(0) = 0).
    """
    net = time_mlp(event_shape, hidden, **kwargs)

    def std(t, x):
        return bcast(sde.marginal(jnp.zeros_like(x), t)[1], x)

    def init(key: Key, t: Array, x: Batch, context: Array | None = None) -> Params:
        return net.init(key, jnp.asarray(t, jnp.float32) / sde.T, x, context)

    def apply(params: Params, t: Array, x: Batch, context: Array | None = None) -> Batch:
        return net.apply(params, jnp.asarray(t, jnp.float32) / sde.T, x, context) / std(t, x)

    return Network(init, apply)
