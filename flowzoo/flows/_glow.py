"""Glow (Kingma & Dhariwal 2018): multi-scale flow of ActNorm, 1x1 convolution and coupling.

Architecture (paper, figure 2), in the normalizing direction (data -> latent), per level:
squeeze (2x2 space-to-depth), ``depth`` steps of flow, each ActNorm -> invertible 1x1
convolution -> affine coupling on the channel halves, then (all levels but the last) split:
half the channels leave the flow and are modelled by a Gaussian, conditioned on the other
half with ``split_prior=True`` (the paper's "split2d" prior) or standard normal otherwise.

The whole flow is one shape-preserving :class:`~flowzoo.bijectors.Bijector` on
``(batch, H, W, C)`` (see :func:`flowzoo.bijectors.factor_out` for how the split prior
becomes a coupling), and :func:`glow` is ``transformed(standard_normal(image_shape), ...)``.
The steps of one level are :func:`flowzoo.bijectors.stack`-ed: their params carry a leading
``depth`` axis and they run in one ``lax.scan`` (``depth > 4``), so compile time does not
grow with depth.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import bijectors as bj
from .._types import count_arg
from ..distributions import Distribution, standard_normal
from ._transformed import transformed


def check_image_shape(image_shape: Sequence[int], squeezes: int, what: str) -> tuple[int, int, int]:
    """``(H, W, C)`` as ints; ``H`` and ``W`` must be divisible by ``2**squeezes``."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{what} needs an image shape (H, W, C), got {tuple(image_shape)}")
    f = 2**squeezes
    if shape[0] % f or shape[1] % f:
        raise ValueError(
            f"{what}: H and W must be divisible by 2**{squeezes} = {f} for {squeezes} squeezes, "
            f"got {shape}; pad or crop the images (e.g. 28x28 -> 32x32) or use fewer levels"
        )
    return shape  # type: ignore[return-value]


def glow_bijector(
    image_shape: Sequence[int],
    levels: int = 2,
    depth: int = 8,
    hidden: int = 64,
    *,
    num_blocks: int = 1,
    lu: bool = True,
    split_prior: bool = True,
    scale: str = "tanh",
    scale_bound: float = bj.DEFAULT_SCALE_BOUND,
    additive: bool = False,
    conditioner: bj.ConditionerFactory | None = None,
    prior_conditioner: bj.ConditionerFactory | None = None,
    remat: str = "none",
    residual: bool = True,
) -> bj.Bijector:
    """The Glow bijector on ``(batch, H, W, C)`` images (arguments: see :func:`glow`)."""
    levels, depth = count_arg(levels, "levels", "glow"), count_arg(depth, "depth", "glow")
    hidden = count_arg(hidden, "hidden (conditioner channels)", "glow")
    num_blocks = count_arg(num_blocks, "num_blocks", "glow", minimum=0)
    shape = check_image_shape(image_shape, levels, "glow")
    cond = bj.checkpointed_conditioner(
        conditioner or bj.resnet_conditioner(hidden, num_blocks, residual=residual), remat
    )
    prior = prior_conditioner or bj.resnet_conditioner(hidden, 0)
    prior = bj.checkpointed_conditioner(prior, remat) if split_prior else None

    def step(sq: tuple[int, int, int]) -> bj.Bijector:
        # chain's forward order is generative: normalizing runs actnorm, conv1x1, coupling
        coupling = bj.channel_coupling(
            sq, 0, cond, scale=scale, scale_bound=scale_bound, additive=additive
        )
        return bj.chain(coupling, bj.conv1x1(lu), bj.actnorm())

    def level(shp: tuple[int, int, int], i: int) -> bj.Bijector:
        h, w, c = shp
        sq = (h // 2, w // 2, 4 * c)
        body = bj.stack(step(sq), depth)
        if i < levels - 1:
            inner = level((h // 2, w // 2, 2 * c), i + 1)
            body = bj.chain(bj.factor_out(sq, inner, prior=prior), body)
        return bj.chain(bj.squeeze(), body, bj.unsqueeze())

    return level(shape, 0)


def glow(
    image_shape: Sequence[int],
    levels: int = 2,
    depth: int = 8,
    hidden: int = 64,
    *,
    base: Distribution | None = None,
    **kwargs,
) -> Distribution:
    """A Glow density over ``(batch, H, W, C)`` (NHWC) images.

    ``log_prob(params, x)`` is the log-density in nats of the continuous input ``x`` (add
    dequantization / bits-per-dim bookkeeping outside). ``sample(params, key, n,
    temperature=T)`` returns ``(n, H, W, C)`` images; ``T`` scales the standard deviation of
    the Gaussian noise at every level (Kingma & Dhariwal 2018, section 5.3).
    ``event_shape == image_shape``. ``init(key, x)`` runs the data-dependent ActNorm
    initialisation on the batch ``x``; every coupling and split prior starts as the identity.

    Args:
      image_shape: ``(H, W, C)``; ``H`` and ``W`` divisible by ``2**levels``.
      levels: number of levels ``L`` (squeezes); ``L - 1`` splits.
      depth: steps of flow per level ``K`` (scanned: compile time independent of ``K``).
      hidden: channels of the coupling (and split-prior) conditioner ResNets.
      num_blocks: residual blocks per coupling conditioner (default 1:
        ``conv3x3 -> [conv3x3 -> conv1x1] -> zero conv3x3``, close to the paper's network).
      residual: ``False`` makes each block a plain ``conv1x1`` layer, so ``num_blocks=1``
        is the paper's conditioner, ``conv3x3 -> conv1x1 -> zero conv3x3`` (ReLU between;
        :func:`flowzoo.nets.resnet`): about 5x fewer parameters at 512 channels.
      lu: LU-decomposed 1x1 convolutions (log-det from the diagonal) instead of plain ones.
      split_prior: model the factored-out channels by ``N(mu(h), sigma(h))`` given the kept
        half ``h`` (learned, zero-initialised ``conv3x3 -> conv3x3`` net); ``False``: ``N(0, I)``.
      scale, scale_bound: how the couplings bound their log-scales (default ``"tanh"`` with
        :data:`flowzoo.bijectors.DEFAULT_SCALE_BOUND`, the library's one default, chosen by
        ``benchmarks/scale_study.py``; ``"sigmoid"`` is Glow's ``sigmoid(h + 2)``,
        normalised to 1 at initialisation); see :func:`flowzoo.bijectors.affine_coupling`.
      additive: additive couplings (the paper's ablation) instead of affine.
      conditioner, prior_conditioner: override the conditioner factories.
      remat: rematerialise every conditioner call (coupling and split prior) with this
        policy (:data:`flowzoo.nets.REMAT_POLICIES`; default ``"none"``).
      base: base distribution over ``image_shape`` (default: standard normal).
    """
    bij = glow_bijector(image_shape, levels, depth, hidden, **kwargs)
    shape = tuple(int(s) for s in image_shape)
    return transformed(base or standard_normal(shape), bij)
