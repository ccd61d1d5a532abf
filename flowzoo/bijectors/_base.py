"""The Bijector protocol and its combinators: ``invert``, ``chain`` and ``stack``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Context, Key, LogDet, Params
from ._layers import Layers, saved_layout


class Bijector(NamedTuple):
    """An invertible map between ``(batch, *event)`` arrays as three pure functions.

    * ``init(key, x, context=None) -> params``. ``x`` is a batch on the *data side* (the
      output of ``forward``, the input of ``inverse``); layers with data-dependent
      initialisation (ActNorm) compute their statistics from it.
    * ``forward(params, z, context=None) -> (x, logdet)``: the generative direction,
      ``logdet = log|det dx/dz|`` with shape ``(batch,)``.
    * ``inverse(params, x, context=None) -> (z, logdet)``: the normalizing direction,
      ``logdet = log|det dz/dx|``, equal to minus the forward log-det at the same point.

    ``context`` is an optional conditioning array with the same leading batch axis; a
    bijector that does not use it ignores it, so conditional and unconditional layers chain.
    """

    init: Callable[..., Params]
    forward: Callable[..., tuple[Batch, LogDet]]
    inverse: Callable[..., tuple[Batch, LogDet]]


def sum_except_batch(x: Array) -> Array:
    """Sum over all axes but the first: ``(batch, *event) -> (batch,)``."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def invert(bijector: Bijector) -> Bijector:
    """Swap the forward and inverse directions of ``bijector``.

    ``init`` is the original's ``init`` called on the given batch. That batch lies on the
    inverted bijector's data side, which is the original's latent side, so data-dependent
    initialisation (ActNorm) inside an inverted bijector sees latent-side statistics.
    """

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        return bijector.init(key, x, context)

    return Bijector(init, bijector.inverse, bijector.forward)


def chain(*bijectors: Bijector) -> Bijector:
    """Compose bijectors; ``forward`` applies them in the order given.

    ``chain(a, b).forward(z) == b.forward(a.forward(z))``; params are a tuple, one entry per
    bijector. ``init`` runs from the data side backwards (last bijector first) so every
    data-dependent layer sees the batch it will receive in the normalizing direction.
    Use :func:`stack` for many copies of the same layer.
    """
    if not bijectors:
        raise ValueError("chain() needs at least one bijector")
    if (
        len(bijectors) == 1
        and isinstance(bijectors[0], list | tuple)
        and not isinstance(bijectors[0], Bijector)
    ):
        bijectors = tuple(bijectors[0])

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        keys = jax.random.split(key, len(bijectors))
        params = [None] * len(bijectors)
        for i in reversed(range(len(bijectors))):
            params[i] = bijectors[i].init(keys[i], x, context)
            if i > 0:
                x, _ = bijectors[i].inverse(params[i], x, context)
        return tuple(params)

    def forward(params: Params, z: Batch, context: Context = None):
        logdet = jnp.zeros(z.shape[0], z.dtype)
        for b, p in zip(bijectors, params, strict=True):
            z, ld = b.forward(p, z, context)
            logdet = logdet + ld
        return z, logdet

    def inverse(params: Params, x: Batch, context: Context = None):
        logdet = jnp.zeros(x.shape[0], x.dtype)
        for b, p in zip(reversed(bijectors), reversed(params), strict=True):
            x, ld = b.inverse(p, x, context)
            logdet = logdet + ld
        return x, logdet

    return Bijector(init, forward, inverse)


_LAYERS_MIN_PARAMS = 2**18
"""Unrolled stacks with more parameters than this (1 MiB of float32) hold them in memory as
:class:`Layers`, one pytree per layer; smaller ones stacked (fewer, larger arrays for the
optimizer to update)."""


def stack(bijector: Bijector, num: int, *, max_unroll: int = 4) -> Bijector:
    """``num`` copies of ``bijector`` with independent params; layer 0 is applied first in
    ``forward``.

    The params are saved in one layout whatever ``num`` and the layer's size: the ``num``
    per-layer params stacked along a new leading axis of size ``num``
    (:func:`~flowzoo.bijectors.saved_layout`); layer ``i`` is drawn from
    ``split(key, num)[i]``. ``init`` runs from the last layer to the first on the data, so
    data-dependent initialisation works per layer. ``forward`` and ``inverse`` take the
    params stacked or as a :class:`~flowzoo.bijectors.Layers` node (one pytree per layer)
    and choose how to loop from ``num`` and the params they are given:

    * more than ``max_unroll`` layers: one ``lax.scan`` over stacked params, so compile time
      does not grow with depth (``max_unroll=0`` always scans); ``init`` returns them
      stacked;
    * at most ``max_unroll`` layers: a Python loop, since on CPU a scanned train step of a
      short stack is slower. Stacked params are read a layer at a time with a dynamic slice
      at a traced index, whose gradient is a dynamic-update-slice per layer. A stack of
      more than 2^18 parameters gets its params from ``init`` as :class:`Layers`, which the
      loop reads without copying (stacked arrays would be copied out and their gradients
      concatenated back every step); :mod:`flowzoo.checkpoint` saves them stacked all the
      same.

    Params of another layout (e.g. a plain tuple of per-layer params) raise a ``ValueError``.
    """
    if num < 1:
        raise ValueError(f"stack() needs num >= 1, got {num}")
    if num <= max_unroll:
        return _unrolled_stack(bijector, num)

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        def body(x, k):
            p = bijector.init(k, x, context)
            x, _ = bijector.inverse(p, x, context)
            return x, p

        _, params = jax.lax.scan(body, x, jax.random.split(key, num), reverse=True)
        return params

    def forward(params: Params, z: Batch, context: Context = None):
        def body(carry, p):
            z, logdet = carry
            z, ld = bijector.forward(p, z, context)
            return (z, logdet + ld), None

        params = _stacked(params, num)
        carry, _ = jax.lax.scan(body, (z, jnp.zeros(z.shape[0], z.dtype)), params)
        return carry

    def inverse(params: Params, x: Batch, context: Context = None):
        def body(carry, p):
            x, logdet = carry
            x, ld = bijector.inverse(p, x, context)
            return (x, logdet + ld), None

        params = _stacked(params, num)
        carry, _ = jax.lax.scan(body, (x, jnp.zeros(x.shape[0], x.dtype)), params, reverse=True)
        return carry

    return Bijector(init, forward, inverse)


def _stacked(params: Params, num: int) -> Params:
    """``params`` stacked along a leading layer axis (:class:`Layers` are stacked)."""
    if isinstance(params, Layers):
        _check_layers(params, num)
        return saved_layout(params)
    _check_stacked(params, num)
    return params


def _check_layers(params: Layers, num: int) -> None:
    if len(params) != num:
        raise ValueError(f"stack of {num} layers got Layers of {len(params)}")


def _check_stacked(params: Params, num: int) -> None:
    """Refuse params whose leaves are not stacked along a leading axis of size ``num``."""
    shapes = [jnp.shape(a) for a in jax.tree.leaves(params)]
    if any(not s or s[0] != num for s in shapes):
        per_layer = type(params) is tuple and len(params) == num
        raise ValueError(
            f"stack of {num} layers expects its per-layer params stacked along a leading axis "
            f"of size {num}, as its init returns them; got leaves of shapes {shapes[:3]}"
            + (f" in a tuple of {num} entries" if per_layer else "")
            + ". A tuple of per-layer params is flowzoo.bijectors.Layers(params)"
        )


def _layers(params: Params, num: int) -> list[Params]:
    """The ``num`` per-layer params of stacked or :class:`Layers` ``params``, for a Python
    loop over layers."""
    if isinstance(params, Layers):
        _check_layers(params, num)
        return list(params)
    _check_stacked(params, num)
    leaves, treedef = jax.tree.flatten(params)
    # A traced index (an iota, not a Python int) keeps each slice dynamic, so its transpose
    # is a dynamic-update-slice rather than a pad that XLA sums into the stacked gradient.
    index = jnp.arange(num)
    return [
        treedef.unflatten([jax.lax.dynamic_index_in_dim(a, index[i], 0, False) for a in leaves])
        for i in range(num)
    ]


def _unrolled_stack(bijector: Bijector, num: int) -> Bijector:
    """:func:`stack` of ``num`` layers applied in a Python loop."""

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        keys = jax.random.split(key, num)
        params = [None] * num
        for i in reversed(range(num)):
            params[i] = bijector.init(keys[i], x, context)
            x, _ = bijector.inverse(params[i], x, context)
        size = sum(jnp.size(a) for a in jax.tree.leaves(params))
        if size > _LAYERS_MIN_PARAMS:
            return Layers(params)
        return saved_layout(Layers(params))

    def forward(params: Params, z: Batch, context: Context = None):
        logdet = jnp.zeros(z.shape[0], z.dtype)
        for p in _layers(params, num):
            z, ld = bijector.forward(p, z, context)
            logdet = logdet + ld
        return z, logdet

    def inverse(params: Params, x: Batch, context: Context = None):
        logdet = jnp.zeros(x.shape[0], x.dtype)
        for p in reversed(_layers(params, num)):
            x, ld = bijector.inverse(p, x, context)
            logdet = logdet + ld
        return x, logdet

    return Bijector(init, forward, inverse)
