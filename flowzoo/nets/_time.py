"""Time-conditioned networks for vector fields and scores: ``apply(params, t, x, context)``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from .._types import Array, Key, Params, widths_arg
from ._mlp import Network, _flat_input, activation


def sinusoidal_embedding(t: Array, dim: int, max_period: float = 10_000.0) -> Array:
    """Transformer-style embedding of times ``t`` (shape ``(batch,)``) -> ``(batch, dim)``.

    Frequencies are geometric between 1 and ``1 / max_period`` (Vaswani et al. 2017); times in
    [0, 1] are scaled by 1000 first, the DDPM convention, so neighbouring times differ.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / max(half, 1))
    args = 1000.0 * t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


def _batch_times(t: Array, n: int) -> Array:
    t = jnp.asarray(t, jnp.float32)
    if t.ndim == 0:
        return jnp.full((n,), t)
    if t.shape != (n,):
        raise ValueError(f"t must be a scalar or have shape ({n},), got {t.shape}")
    return t


class _TimeMLP(nn.Module):
    hidden: Sequence[int]
    out_dim: int
    embed_dim: int
    act: Callable[[Array], Array]
    zero_init_last: bool

    @nn.compact
    def __call__(self, t: Array, h: Array) -> Array:
        emb = sinusoidal_embedding(t, self.embed_dim)
        emb = nn.Dense(self.embed_dim)(self.act(nn.Dense(self.embed_dim)(emb)))
        for width in self.hidden:
            h = self.act(nn.Dense(width)(h) + nn.Dense(width, use_bias=False)(emb))
        init = nn.initializers.zeros if self.zero_init_last else nn.linear.default_kernel_init
        return nn.Dense(self.out_dim, kernel_init=init)(h)


def time_mlp(
    event_shape: int | Sequence[int],
    hidden: Sequence[int] = (256, 256, 256),
    *,
    embed_dim: int = 64,
    activation_fn: str | Callable[[Array], Array] = "silu",
    zero_init_last: bool = False,
) -> Network:
    """A time-conditioned MLP mapping ``(t, x[, context]) -> (batch, *event_shape)``.

    ``apply(params, t, x, context=None)``: ``t`` is a scalar or ``(batch,)`` (any time
    convention; the caller's docstring states it), ``x`` is ``(batch, *event_shape)``
    (flattened internally), ``context`` is flattened and concatenated to the input. The time
    embedding (sinusoidal, then a 2-layer MLP) is added to every hidden layer.
    ``init(key, t, x, context=None)`` takes example inputs.
    """
    shape = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(event_shape)
    module = _TimeMLP(
        widths_arg(hidden, "hidden", "time_mlp"),
        int(np.prod(shape)),
        int(embed_dim),
        activation(activation_fn),
        zero_init_last,
    )

    def init(key: Key, t: Array, x: Array, context: Array | None = None) -> Params:
        return module.init(key, _batch_times(t, x.shape[0]), _flat_input(x, context))

    def apply(params: Params, t: Array, x: Array, context: Array | None = None) -> Array:
        out = module.apply(params, _batch_times(t, x.shape[0]), _flat_input(x, context))
        return out.reshape(x.shape[0], *shape)

    return Network(init, apply)
