"""The Bijector protocol and its combinators: ``invert``, ``chain`` and ``stack``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Context, Key, LogDet, Params


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


STACKED_PARAMS_MAX = 2**18
"""Default ``max_stacked`` of :func:`stack`: unrolled stacks of at most this many parameters
in all (1 MiB of float32) keep them stacked."""


def stack(
    bijector: Bijector, num: int, *, max_unroll: int = 4, max_stacked: int = STACKED_PARAMS_MAX
) -> Bijector:
    """``num`` copies of ``bijector`` with independent params; layer 0 is applied first in
    ``forward``.

    Stacks longer than ``max_unroll`` hold the per-layer params stacked along a new leading
    axis of size ``num`` and are applied with one ``lax.scan``, so compile time does not grow
    with depth. Stacks of at most ``max_unroll`` layers are applied by a Python loop (on CPU a
    scanned train step of a short stack is 15-25% slower), and their params take the layout
    that is faster for their size:

    * at most ``max_stacked`` parameters in all: stacked along a leading axis, as in the
      scan. The optimiser then updates ``num`` times fewer, larger arrays: an 8-layer RealNVP
      train step at dim 2 or 64 ran 10% faster than with a tuple (``benchmarks/
      coupling_train.py``'s hand-written baseline: 1.11x against 0.99-1.02x).
    * more: a tuple of the ``num`` per-layer params. Slicing layers out of stacked arrays
      copies the params, and the gradients back, on every step: 4-10% of a dim-784 RealNVP
      step (0.96x against 1.00x of hand-written JAX).

    The layout is a function of the parameter count alone, so ``forward`` and ``inverse``
    read it from the params they are given. ``max_unroll=0`` always scans. Every form draws
    the same per-layer params from the same key (layer ``i`` from ``split(key, num)[i]``).
    ``init`` runs from the last layer to the first on the data, so data-dependent
    initialisation works per layer.
    """
    if num < 1:
        raise ValueError(f"stack() needs num >= 1, got {num}")
    if num <= max_unroll:
        return _unrolled_stack(bijector, num, max_stacked)

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

        carry, _ = jax.lax.scan(body, (z, jnp.zeros(z.shape[0], z.dtype)), params)
        return carry

    def inverse(params: Params, x: Batch, context: Context = None):
        def body(carry, p):
            x, logdet = carry
            x, ld = bijector.inverse(p, x, context)
            return (x, logdet + ld), None

        carry, _ = jax.lax.scan(body, (x, jnp.zeros(x.shape[0], x.dtype)), params, reverse=True)
        return carry

    return Bijector(init, forward, inverse)


def _layout_error(num: int, max_stacked: int, expected: str) -> str:
    return (
        f"stack of {num} layers (max_stacked={max_stacked}) expects {expected} for params of "
        "this size; these params have another layout. Were they made by a stack with another "
        "max_stacked or max_unroll, or saved before PARAMS_FORMAT 4? Re-create them with "
        "this bijector's init."
    )


def _unrolled_stack(bijector: Bijector, num: int, max_stacked: int) -> Bijector:
    """:func:`stack` of ``num`` layers applied in a loop; params stacked or a tuple by size."""

    def stacked(params: Params) -> bool:
        return sum(jnp.size(a) for a in jax.tree.leaves(params)) <= max_stacked

    def layers(params: Params) -> list[Params]:
        if not stacked(params):
            if not (isinstance(params, tuple) and len(params) == num):
                raise ValueError(_layout_error(num, max_stacked, "a tuple of per-layer params"))
            return list(params)
        leaves, treedef = jax.tree.flatten(params)
        if any(jnp.ndim(a) == 0 or jnp.shape(a)[0] != num for a in leaves):
            raise ValueError(_layout_error(num, max_stacked, "stacked params"))
        # Layer i is a dynamic slice at a traced index (an iota, not a Python int), so the
        # gradient flows back as a dynamic-update-slice per layer rather than the
        # concatenate that static slices transpose to: the same step, 0.1-0.15 s less XLA
        # compile (dim-2 RealNVP, benchmarks/coupling_train.py).
        index = jnp.arange(num)
        return [
            treedef.unflatten([jax.lax.dynamic_index_in_dim(a, index[i], 0, False) for a in leaves])
            for i in range(num)
        ]

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        keys = jax.random.split(key, num)
        params = [None] * num
        for i in reversed(range(num)):
            params[i] = bijector.init(keys[i], x, context)
            x, _ = bijector.inverse(params[i], x, context)
        params = tuple(params)
        return jax.tree.map(lambda *a: jnp.stack(a), *params) if stacked(params) else params

    def forward(params: Params, z: Batch, context: Context = None):
        logdet = jnp.zeros(z.shape[0], z.dtype)
        for p in layers(params):
            z, ld = bijector.forward(p, z, context)
            logdet = logdet + ld
        return z, logdet

    def inverse(params: Params, x: Batch, context: Context = None):
        logdet = jnp.zeros(x.shape[0], x.dtype)
        for p in reversed(layers(params)):
            x, ld = bijector.inverse(p, x, context)
            logdet = logdet + ld
        return x, logdet

    return Bijector(init, forward, inverse)
