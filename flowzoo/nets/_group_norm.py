"""Group normalisation of channels-last arrays, with the statistics in float32.

``flax.linen.GroupNorm``'s function and parameters, computed in the form XLA compiles to
fewer and faster loops on CPU: per-channel sums over the positions, group statistics from
them, and one affine map per sample and channel (``benchmarks/adm_layers.py`` times it
against flax's and torch's).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Float


class GroupNorm(nn.Module):
    """Group normalisation (Wu & He 2018) of ``x`` of shape ``(N, ..., C)``, channels last.

    Each sample's channels fall into ``num_groups`` groups of ``C / num_groups`` adjacent
    channels; each group is normalised over its channels and all positions (the axes
    between the first and the last) by its mean and variance, plus ``epsilon``; then each
    channel is scaled and shifted by the parameters ``scale`` (ones) and ``bias`` (zeros),
    of shape ``(C,)``, float32. Same function, parameters and defaults as
    ``flax.linen.GroupNorm(num_groups, epsilon=epsilon)``, whose variance is also
    ``E[x^2] - E[x]^2`` (clipped at 0), so it replaces it as is; torch's ``nn.GroupNorm``
    on NCHW computes the same with ``eps`` 1e-5 by default (flax's and this default: 1e-6).

    Statistics and normalisation run in float32 whatever the input's dtype, and the result
    has the input's dtype (torchcfm's ``GroupNorm32`` under autocast).

    How it is computed: the sums of ``x`` and ``x^2`` per sample and channel are reductions
    along the positions, which XLA vectorises over the channels; channel sums go to group
    sums, and group statistics back to channels, as products with the ``(num_groups, C)``
    0/1 group-membership matrix (float32, ``Precision.HIGHEST``), so the normalisation is
    one pass of ``x * a + b`` with ``(N, C)`` arrays ``a`` and ``b``. A ``repeat`` of the
    ``(N, num_groups)`` statistics in their place is fused by XLA into that pass and
    recomputed, index arithmetic included, at every element.
    """

    num_groups: int = 32
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: Float[Array, "batch *positions C"]) -> Float[Array, "batch *positions C"]:
        x = jnp.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"GroupNorm: expected (N, ..., C), channels last, got shape {x.shape}")
        n, c, groups = x.shape[0], x.shape[-1], int(self.num_groups)
        if groups < 1 or c % groups:
            raise ValueError(
                f"GroupNorm: {c} channels do not split into num_groups={self.num_groups} "
                "groups of equal size; choose num_groups dividing the channel count"
            )
        per = c // groups
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        xf = x.astype(jnp.float32).reshape(n, -1, c)
        member = jnp.asarray(np.repeat(np.eye(groups, dtype=np.float32), per, axis=1))
        exact = jax.lax.Precision.HIGHEST
        sums = jnp.stack([xf.sum(axis=1), jnp.square(xf).sum(axis=1)], axis=1)  # (n, 2, C)
        moments = jnp.matmul(sums, member.T, precision=exact) / (xf.shape[1] * per)
        mean, mean2 = moments[:, 0], moments[:, 1]  # (n, groups)
        rstd = jax.lax.rsqrt(jnp.maximum(mean2 - jnp.square(mean), 0.0) + self.epsilon)
        per_channel = jnp.matmul(jnp.stack([rstd, mean * rstd], axis=1), member, precision=exact)
        scale32, bias32 = scale.astype(jnp.float32)[None, :], bias.astype(jnp.float32)[None, :]
        a = per_channel[:, 0] * scale32  # (n, C)
        b = bias32 - per_channel[:, 1] * scale32
        return (xf * a[:, None, :] + b[:, None, :]).reshape(x.shape).astype(x.dtype)
