"""Multi-scale RealNVP for NHWC images (Dinh et al. 2017, section 3.6).

Per scale, in the normalizing direction (data -> latent): three checkerboard couplings
(alternating masks), squeeze, three channel-wise couplings (alternating), then half the
channels are factored out; the final scale is four checkerboard couplings. The factored-out
variables are standard normal as in the paper (``split_prior=True`` uses Glow's conditional
Gaussian instead, see :func:`flowzoo.bijectors.factor_out`). The paper's batch
normalisation is replaced by optional ActNorm (``actnorm=True``), which needs no batch
statistics at sampling time.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import bijectors as bj
from .._types import count_arg
from ..distributions import Distribution, standard_normal
from ._glow import check_image_shape
from ._transformed import transformed


def realnvp_image_bijector(
    image_shape: Sequence[int],
    num_scales: int = 2,
    hidden: int = 64,
    num_blocks: int = 2,
    *,
    split_prior: bool = False,
    actnorm: bool = False,
    scale: str = "tanh",
    scale_bound: float = bj.DEFAULT_SCALE_BOUND,
    additive: bool = False,
    conditioner: bj.ConditionerFactory | None = None,
    remat: str = "none",
) -> bj.Bijector:
    """The multi-scale RealNVP bijector on ``(batch, H, W, C)`` (arguments: see
    :func:`realnvp_image`)."""
    num_scales = count_arg(num_scales, "num_scales", "realnvp_image")
    hidden = count_arg(hidden, "hidden (conditioner channels)", "realnvp_image")
    num_blocks = count_arg(num_blocks, "num_blocks", "realnvp_image", minimum=0)
    shape = check_image_shape(image_shape, num_scales - 1, "realnvp")
    f = 2 ** (num_scales - 1)
    if (shape[0] // f) * (shape[1] // f) < 2:
        raise ValueError(
            f"realnvp: the final scale of a {shape} image with {num_scales} scales has one "
            "pixel; its checkerboard couplings need at least 2 (use fewer scales)"
        )
    cond = bj.checkpointed_conditioner(
        conditioner or bj.resnet_conditioner(hidden, num_blocks), remat
    )
    prior = bj.resnet_conditioner(hidden, 0)
    prior = bj.checkpointed_conditioner(prior, remat) if split_prior else None

    def coupling(make, shp: tuple[int, int, int], parity: int) -> bj.Bijector:
        layer = make(shp, parity, cond, scale=scale, scale_bound=scale_bound, additive=additive)
        return bj.chain(layer, bj.actnorm()) if actnorm else layer

    def level(shp: tuple[int, int, int], s: int) -> bj.Bijector:
        if s == num_scales - 1:
            return bj.chain(*[coupling(bj.checkerboard_coupling, shp, p % 2) for p in range(4)])
        h, w, c = shp
        sq = (h // 2, w // 2, 4 * c)
        inner = level((h // 2, w // 2, 2 * c), s + 1)
        return bj.chain(
            bj.squeeze(),
            bj.factor_out(sq, inner, prior=prior),
            *[coupling(bj.channel_coupling, sq, p) for p in (0, 1, 0)],
            bj.unsqueeze(),
            *[coupling(bj.checkerboard_coupling, shp, p) for p in (0, 1, 0)],
        )

    return level(shape, 0)


def realnvp_image(
    image_shape: Sequence[int],
    num_scales: int = 2,
    hidden: int = 64,
    num_blocks: int = 2,
    *,
    base: Distribution | None = None,
    **kwargs,
) -> Distribution:
    """A multi-scale RealNVP density over ``(batch, H, W, C)`` (NHWC) images.

    Also reached as ``flowzoo.flows.realnvp(image_shape, ...)`` for a 3-D event shape.
    ``log_prob`` is in nats of the continuous input; ``sample(..., temperature=T)`` returns
    ``(n, H, W, C)`` images with the base noise scaled by ``T``; ``event_shape ==
    image_shape``. Every coupling starts as the identity.

    Args:
      image_shape: ``(H, W, C)``; ``H``, ``W`` divisible by ``2**(num_scales - 1)`` and the
        final scale must have at least 2 pixels.
      num_scales: scales; all but the last squeeze and factor out half the channels.
      hidden: channels of the ResNet conditioners.
      num_blocks: residual blocks per conditioner.
      split_prior: Glow's conditional Gaussian for the factored-out channels (default: the
        paper's standard normal).
      actnorm: an ActNorm layer before every coupling (normalizing direction).
      scale, scale_bound, additive: coupling options of
        :func:`flowzoo.bijectors.affine_coupling` (default ``tanh``-bounded log-scales).
      conditioner: override the conditioner factory (default
        ``resnet_conditioner(hidden, num_blocks)``).
      remat: rematerialise every conditioner call with this policy
        (:data:`flowzoo.nets.REMAT_POLICIES`; default ``"none"``).
      base: base distribution over ``image_shape`` (default: standard normal).
    """
    bij = realnvp_image_bijector(image_shape, num_scales, hidden, num_blocks, **kwargs)
    shape = tuple(int(s) for s in image_shape)
    return transformed(base or standard_normal(shape), bij)
