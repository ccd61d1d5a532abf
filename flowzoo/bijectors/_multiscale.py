"""Multi-scale factor-out (Dinh et al. 2017, section 3.6) with Glow's split prior.

In the normalizing direction a multi-scale flow stops transforming half of the channels at
every level; those "factored-out" variables are modelled by a Gaussian, either standard
(RealNVP) or ``N(mu(h), sigma(h))`` conditioned on the half ``h`` that continues through
the flow (Kingma & Dhariwal 2018, "split prior").

Design: the Gaussian is expressed as a change of variables instead of a second base
distribution. ``log N(z_out; mu(h), sigma(h)) = log N(eps; 0, I) - sum(log sigma(h))`` with
``eps = (z_out - mu(h)) / sigma(h)``, which is exactly the inverse of an affine coupling of
``z_out`` conditioned on ``h`` (in the ``"sampling"`` orientation, whose density direction
divides by the scale) followed by a standard normal. So :func:`factor_out` is an
ordinary shape-preserving :class:`Bijector` on the full tensor, a multi-scale flow is one
bijector, and ``transformed(standard_normal(image_shape), flow)`` keeps the ``Distribution``
protocol with exact log-densities, temperature sampling (the temperature scales ``eps`` at
every level, as in Glow) and no extra bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Float

from .._types import Array, Batch, Context, Key, LogDet, Params
from ._base import Bijector
from ._coupling import ConditionerFactory, affine_coupling
from ._masks import channel_mask


def factor_out(
    event_shape: Sequence[int],
    inner: Bijector,
    *,
    prior: ConditionerFactory | None = None,
    scale: str = "tanh",
    scale_bound: float = 5.0,
) -> Bijector:
    """Factor out half the channels of ``(batch, H, W, C)`` arrays; the rest go through ``inner``.

    Let ``k = C // 2``. In the normalizing direction (``inverse``), with ``x = [h, x_out]``
    split along the channels (``h = x[..., :k]``):

    * ``x_out`` leaves the flow: with a ``prior`` it becomes
      ``eps = (x_out - mu(h)) * exp(-log_sigma(h))`` (log-det ``-sum(log_sigma)``), else it is
      passed through unchanged (modelled by the standard normal base);
    * ``h`` continues through ``inner`` (a bijector on ``(batch, H, W, k)``, e.g. the next
      level of a multi-scale flow, which must keep that shape);
    * the output is ``[inner.inverse(h), eps]``; log-dets add up.

    ``forward`` (generative) runs this backwards: ``h = inner.forward(z[..., :k])``, then
    ``x_out = mu(h) + sigma(h) * z[..., k:]``.

    Args:
      event_shape: ``(H, W, C)`` with ``C >= 2``.
      inner: bijector applied to the kept channels.
      prior: conditioner factory for ``(mu, log_sigma)`` given ``h`` (e.g.
        ``resnet_conditioner(hidden, num_blocks=0)``, zero-initialised so the prior starts
        as ``N(0, I)``); ``None`` for a standard normal (RealNVP).
      scale, scale_bound: how ``log_sigma`` is bounded (see :func:`affine_coupling`); the
        default soft-clamps it to ``(-5, 5)``.

    Params: ``{"inner": ..., "prior": ...}`` (``prior`` is ``()`` without a prior).
    """
    shape = tuple(int(s) for s in event_shape)
    if len(shape) != 3 or shape[-1] < 2:
        raise ValueError(f"factor_out needs an (H, W, C) event shape with C >= 2, got {shape}")
    k = shape[-1] // 2
    coupling = None
    if prior is not None:  # keeps the first k channels (half_mask parity 0), transforms the rest
        coupling = affine_coupling(  # density direction: eps = (z_out - mu) / sigma
            channel_mask(shape, 0),
            prior,
            scale=scale,
            scale_bound=scale_bound,
            orientation="sampling",
        )

    def _check(x: Array) -> None:
        if x.shape[1:] != shape:
            raise ValueError(f"factor_out expects events of shape {shape}, got {x.shape}")

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        _check(x)
        k_inner, k_prior = jax.random.split(key)
        p_prior = () if coupling is None else coupling.init(k_prior, x, context)
        # the prior coupling leaves the kept channels unchanged: inner sees x[..., :k]
        return {"inner": inner.init(k_inner, x[..., :k], context), "prior": p_prior}

    def forward(
        params: Params, z: Float[Array, "batch h w c"], context: Context = None
    ) -> tuple[Float[Array, "batch h w c"], LogDet]:
        _check(z)
        h, logdet = inner.forward(params["inner"], z[..., :k], context)
        x = jnp.concatenate([h, z[..., k:]], axis=-1)
        if coupling is not None:
            x, ld = coupling.forward(params["prior"], x, context)
            logdet = logdet + ld
        return x, logdet

    def inverse(
        params: Params, x: Float[Array, "batch h w c"], context: Context = None
    ) -> tuple[Float[Array, "batch h w c"], LogDet]:
        _check(x)
        logdet = jnp.zeros(x.shape[0], x.dtype)
        if coupling is not None:
            x, logdet = coupling.inverse(params["prior"], x, context)
        z, ld = inner.inverse(params["inner"], x[..., :k], context)
        return jnp.concatenate([z, x[..., k:]], axis=-1), logdet + ld

    return Bijector(init, forward, inverse)
