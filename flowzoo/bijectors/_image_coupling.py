"""Checkerboard and channel-wise affine couplings for NHWC images (Dinh et al. 2017, 3.4-3.5).

Both are :func:`flowzoo.bijectors.affine_coupling` with an image mask and, by default, a
convolutional ResNet conditioner (:func:`flowzoo.nets.resnet`) whose zero-initialised output
makes every coupling start as the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from .._types import Array, Key, Params
from ..nets import Network, resnet
from ._base import Bijector
from ._coupling import ConditionerFactory, coupling
from ._masks import channel_mask, checkerboard_mask
from ._transformers import DEFAULT_SCALE_BOUND, Transformer, affine_transformer


def resnet_conditioner(
    hidden: int = 64,
    num_blocks: int = 2,
    activation: str | Callable[[Array], Array] = "relu",
    *,
    residual: bool = True,
) -> ConditionerFactory:
    """Conditioner factory for image couplings: a :func:`flowzoo.nets.resnet` per coupling.

    ``make(out_shape)`` with ``out_shape = (H, W, K)`` builds a ResNet with ``hidden``
    channels, ``num_blocks`` residual blocks and ``K`` zero-initialised output channels. The
    coupling passes ``context`` (optional) through to the network. ``residual=False`` with
    ``num_blocks=1`` is Glow's conditioner (see :func:`flowzoo.nets.resnet`).
    """

    def make(out_shape: tuple[int, ...]) -> Network:
        if len(out_shape) != 3:
            raise ValueError(
                f"resnet_conditioner builds conditioners for (H, W, C) events, got output shape "
                f"{tuple(out_shape)}; use mlp_conditioner for vectors"
            )
        return resnet(
            out_shape[-1], hidden, num_blocks, activation, zero_init_last=True, residual=residual
        )

    return make


def _image_shape(event_shape: Sequence[int], what: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in event_shape)
    if len(shape) != 3:
        raise ValueError(f"{what} expects an (H, W, C) event shape, got {shape}")
    return shape  # type: ignore[return-value]


def _with_mask_channel(make: ConditionerFactory, keep: np.ndarray) -> ConditionerFactory:
    """Append the (constant) kept-pixel mask as one extra input channel of the conditioner.

    The conditioner of a checkerboard coupling sees ``mask * x``; without the mask a
    translation-equivariant convolution cannot tell a kept pixel from a masked one.
    """
    board = jnp.asarray(keep[..., :1], jnp.float32)  # (H, W, 1), the same for every channel

    def augment(x: Array) -> Array:
        m = jnp.broadcast_to(board[None].astype(x.dtype), (x.shape[0], *board.shape))
        return jnp.concatenate([x, m], axis=-1)

    def wrapped(out_shape: tuple[int, ...]) -> Network:
        net = make(out_shape)

        def init(key: Key, x: Array, context: Array | None = None) -> Params:
            return net.init(key, augment(x), context)

        def apply(params: Params, x: Array, context: Array | None = None) -> Array:
            return net.apply(params, augment(x), context)

        return Network(init, apply)

    return wrapped


def checkerboard_coupling(
    event_shape: Sequence[int],
    parity: int = 0,
    conditioner: ConditionerFactory | None = None,
    *,
    scale: str = "tanh",
    scale_bound: float = DEFAULT_SCALE_BOUND,
    additive: bool = False,
    transformer: Transformer | None = None,
) -> Bijector:
    """Affine coupling with a spatial checkerboard mask on ``(batch, H, W, C)`` images.

    Pixels with ``(i + j) % 2 == parity`` (all channels) are kept and condition the affine
    transformation of the others. The conditioner sees ``mask * x`` plus the mask itself as an
    extra input channel. ``conditioner`` defaults to ``resnet_conditioner()``; ``scale``,
    ``scale_bound`` and ``additive`` are those of :func:`affine_coupling`; a ``transformer``
    (e.g. :func:`spline_transformer`) replaces the affine map. Needs ``H * W >= 2``.
    """
    shape = _image_shape(event_shape, "checkerboard_coupling")
    if shape[0] * shape[1] < 2:
        raise ValueError(f"a checkerboard coupling needs at least 2 pixels, got shape {shape}")
    mask = checkerboard_mask(shape, parity)
    make = _with_mask_channel(conditioner or resnet_conditioner(), mask)
    transformer = transformer or affine_transformer(scale, scale_bound, additive=additive)
    return coupling(mask, transformer, make)


def channel_coupling(
    event_shape: Sequence[int],
    parity: int = 0,
    conditioner: ConditionerFactory | None = None,
    *,
    scale: str = "tanh",
    scale_bound: float = DEFAULT_SCALE_BOUND,
    additive: bool = False,
    transformer: Transformer | None = None,
) -> Bijector:
    """Affine coupling that splits the channels of ``(batch, H, W, C)`` images in two halves.

    ``parity=0`` keeps the first ``C // 2`` channels and transforms the rest; ``parity=1``
    the reverse. The conditioner maps the kept channels ``(batch, H, W, C // 2)`` to the
    shifts and log-scales of the others (no masking, no wasted computation). ``conditioner``
    defaults to ``resnet_conditioner()``; a ``transformer`` (e.g. :func:`spline_transformer`)
    replaces the affine map. Needs ``C >= 2``.
    """
    shape = _image_shape(event_shape, "channel_coupling")
    if shape[2] < 2:
        raise ValueError(f"a channel coupling needs at least 2 channels, got shape {shape}")
    transformer = transformer or affine_transformer(scale, scale_bound, additive=additive)
    return coupling(channel_mask(shape, parity), transformer, conditioner or resnet_conditioner())
