"""A single-scale image flow: alternating checkerboard affine couplings, MLP conditioners."""

from __future__ import annotations

from collections.abc import Sequence

from .. import bijectors as bj
from .._types import count_arg
from ..distributions import Distribution, standard_normal
from ._transformed import transformed


def image_coupling_flow(
    image_shape: Sequence[int],
    num_layers: int = 8,
    hidden: Sequence[int] = (256,),
    scale_bound: float = bj.DEFAULT_SCALE_BOUND,
    remat: str = "none",
) -> Distribution:
    """Single-scale baseline over ``(H, W, C)`` images: checkerboard affine couplings.

    ``num_layers // 2`` pairs of couplings with complementary checkerboard masks are applied
    with :func:`flowzoo.bijectors.stack`; each conditioner is an MLP of widths ``hidden``,
    every call rematerialised with policy ``remat`` (:data:`flowzoo.nets.REMAT_POLICIES`).
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3:
        raise ValueError(f"image_coupling_flow models (H, W, C) images, got {shape}")
    num_layers = count_arg(num_layers, "num_layers", "image_coupling_flow", minimum=2)
    cond = bj.checkpointed_conditioner(bj.mlp_conditioner(hidden, "relu"), remat)

    def coupling(parity: int) -> bj.Bijector:
        mask = bj.checkerboard_mask(shape, parity)
        return bj.affine_coupling(mask, cond, scale_bound=scale_bound)

    pair = bj.chain(coupling(0), coupling(1))
    return transformed(standard_normal(shape), bj.stack(pair, int(num_layers) // 2))
