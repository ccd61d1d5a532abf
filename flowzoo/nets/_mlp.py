"""Multi-layer perceptron used as coupling conditioner and generic network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from .._types import Array, Key, Params, widths_arg


class Network(NamedTuple):
    """A network as a pair of pure functions.

    ``init(key, x, context=None) -> params`` and ``apply(params, x, context=None) -> y``;
    ``x`` has a leading batch axis. ``context`` (same leading axis, any trailing shape) is
    flattened and concatenated to the input when the network was built to accept one.
    """

    init: Callable[..., Params]
    apply: Callable[..., Array]


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
}
ACTIVATIONS = tuple(_ACTIVATIONS)
"""Names :func:`activation` accepts."""


def activation(name: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Look up an activation by name (``relu``, ``gelu``, ``silu``, ``tanh``, ``elu``)."""
    if callable(name):
        return name
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}"
        ) from None


INITS = ("lecun", "uniform")
"""Names :func:`mlp` accepts for ``init``."""


def _fan_in_uniform(fan_in: int) -> Callable[..., Array]:
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key: Key, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _dense(width: int, fan_in: int, init: str) -> nn.Dense:
    if init == "uniform":
        return nn.Dense(
            width, kernel_init=_fan_in_uniform(fan_in), bias_init=_fan_in_uniform(fan_in)
        )
    return nn.Dense(width)


class _MLP(nn.Module):
    hidden: Sequence[int]
    out_dim: int
    act: Callable[[Array], Array]
    zero_init_last: bool
    init_kind: str = "lecun"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for width in self.hidden:
            x = self.act(_dense(width, x.shape[-1], self.init_kind)(x))
        if self.zero_init_last:
            zeros = nn.initializers.zeros
            return nn.Dense(self.out_dim, kernel_init=zeros, bias_init=zeros)(x)
        if self.init_kind == "uniform":
            return _dense(self.out_dim, x.shape[-1], self.init_kind)(x)
        return nn.Dense(self.out_dim, bias_init=nn.initializers.zeros)(x)


def _flat_input(x: Array, context: Array | None) -> Array:
    h = x.reshape(x.shape[0], -1)
    if context is not None:
        if context.shape[0] != x.shape[0]:
            raise ValueError(
                f"context has leading size {context.shape[0]} but the input has batch {x.shape[0]}"
            )
        h = jnp.concatenate([h, context.reshape(context.shape[0], -1).astype(h.dtype)], axis=-1)
    return h


def _in_param_dtype(params: Params, h: Array) -> Array:
    """Cast the input to the parameters' dtype when that is a half-precision one.

    ``flowzoo.train``'s ``compute_dtype=bfloat16`` hands the network bfloat16 copies of
    its float32 parameters while the data stays float32; casting the input makes the
    matmuls run in bfloat16 instead of being promoted back to float32.
    """
    leaves = [p for p in jax.tree.leaves(params) if jnp.issubdtype(p.dtype, jnp.floating)]
    if leaves and jnp.issubdtype(h.dtype, jnp.floating):
        dt = leaves[0].dtype
        if jnp.finfo(dt).bits < min(32, jnp.finfo(h.dtype).bits):  # bf16/f16 params only
            return h.astype(dt)
    return h


def mlp(
    out_dim: int,
    hidden: Sequence[int] = (64, 64),
    activation_fn: str | Callable[[Array], Array] = "relu",
    zero_init_last: bool = False,
    init: str = "lecun",
) -> Network:
    """A fully connected network mapping ``(batch, *in)`` (flattened) to ``(batch, out_dim)``.

    Args:
      out_dim: output features.
      hidden: widths of the hidden layers.
      activation_fn: activation between layers (name or callable).
      zero_init_last: initialise the output layer to zero, so the network starts as the
        constant 0 (used by coupling conditioners so every coupling starts as the identity).
      init: initialisation of the other layers: ``"lecun"`` (flax's default: truncated
        normal weights of variance ``1 / fan_in``, zero biases) or ``"uniform"`` (PyTorch's
        ``nn.Linear`` default: weights and biases uniform on ``+-1 / sqrt(fan_in)``). With
        zero biases every first-layer ReLU kink passes through the origin; random biases
        spread them, which matters for the low-dimensional inputs of 2-D coupling flows
        (``benchmarks/scale_study.py``).
    """
    if init not in INITS:
        raise ValueError(f"mlp: init must be one of {INITS}, got {init!r}")
    module = _MLP(
        widths_arg(hidden, "hidden", "mlp"),
        int(out_dim),
        activation(activation_fn),
        zero_init_last,
        init,
    )

    def init(key: Key, x: Array, context: Array | None = None) -> Params:
        return module.init(key, _flat_input(x, context))

    def apply(params: Params, x: Array, context: Array | None = None) -> Array:
        return module.apply(params, _in_param_dtype(params, _flat_input(x, context)))

    return Network(init, apply)
