"""MADE: a masked MLP whose output ``i`` depends only on inputs ``< i`` (Germain et al. 2015).

"MADE: Masked Autoencoder for Distribution Estimation", ICML 2015. Inputs get degrees
``1..D``, hidden units degrees in ``[1, D-1]`` (assigned cyclically), and a weight from a
unit of degree ``a`` to one of degree ``b`` is kept when ``b >= a`` (hidden layers) or
``b > a`` (output layer); output ``(p, i)`` has degree ``i + 1``, so every parameter of
entry ``i`` sees exactly ``x_1..x_{i-1}`` (and the context, which has degree 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from .._types import Array, Key, Params, count_arg, widths_arg
from ._mlp import Network, _flat_input, _in_param_dtype, activation


def made_masks(dim: int, hidden: Sequence[int], num_params: int) -> list[np.ndarray]:
    """The ``(in, out)`` kernel masks of every layer (numpy bool arrays).

    The output holds ``num_params`` blocks of ``dim`` entries (param ``p`` of entry ``i`` at
    ``p * dim + i``).
    """
    degrees = [np.arange(1, dim + 1)]
    for width in hidden:
        degrees.append(np.arange(width) % max(dim - 1, 1) + 1)
    d_out = np.tile(np.arange(1, dim + 1), num_params)
    masks = [degrees[i][:, None] <= degrees[i + 1][None, :] for i in range(len(hidden))]
    masks.append(degrees[-1][:, None] < d_out[None, :])
    return masks


class _MaskedDense(nn.Module):
    mask: np.ndarray
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = nn.initializers.zeros if self.zero_init else nn.linear.default_kernel_init
        kernel = self.param("kernel", init, self.mask.shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.mask.shape[1],), jnp.float32)
        y = x @ (kernel * jnp.asarray(self.mask, kernel.dtype)).astype(x.dtype)
        return y + bias.astype(x.dtype)[None]


class _MADE(nn.Module):
    masks: tuple
    act: Callable[[Array], Array]

    @nn.compact
    def __call__(self, x: Array, context: Array | None) -> Array:
        for i, m in enumerate(self.masks[:-1]):
            h = _MaskedDense(m)(x)
            if i == 0 and context is not None:  # context has degree 0: feeds every unit
                h = h + nn.Dense(m.shape[1], use_bias=False)(context)
            x = self.act(h)
        out = _MaskedDense(self.masks[-1], zero_init=True)(x)
        if context is not None:  # direct path: entry 0 (no earlier inputs) sees the context
            skip = nn.Dense(out.shape[-1], use_bias=False, kernel_init=nn.initializers.zeros)
            out = out + skip(context)
        return out


def made(
    dim: int,
    num_params: int,
    hidden: Sequence[int] = (64, 64),
    activation_fn: str | Callable[[Array], Array] = "relu",
) -> Network:
    """An autoregressive network ``(batch, dim) -> (batch, num_params * dim)``.

    Output ``p * dim + i`` depends on inputs ``0..i-1`` and the context only, so the outputs
    of entry 0 depend on the context alone. A ``context`` (any trailing shape, flattened) is
    fed to every unit of the first hidden layer and, directly, to every output through
    unmasked projections (without the direct path entry 0 could not depend on it). The
    output layers are zero-initialised.
    """
    what = "made"
    dim = count_arg(dim, "dim", what)
    num_params = count_arg(num_params, "num_params", what)
    hidden = widths_arg(hidden, "hidden", what)
    if not hidden:
        raise ValueError("made needs at least one hidden layer")
    module = _MADE(tuple(made_masks(dim, hidden, num_params)), activation(activation_fn))

    def _context(x, context):
        if context is None:
            return None
        return _flat_input(context, None).astype(x.dtype)

    def init(key: Key, x: Array, context: Array | None = None) -> Params:
        _flat_input(x, context)  # checks the batch sizes agree
        return module.init(key, x.reshape(x.shape[0], -1), _context(x, context))

    def apply(params: Params, x: Array, context: Array | None = None) -> Array:
        x = _in_param_dtype(params, x.reshape(x.shape[0], -1))
        return module.apply(params, x, _context(x, context))

    return Network(init, apply)
