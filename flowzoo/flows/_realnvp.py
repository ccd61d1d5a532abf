"""RealNVP (Dinh et al. 2017) for vector events: alternating affine couplings.

Image event shapes dispatch to the multi-scale builder in ``_realnvp_image.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import bijectors as bj
from .._types import count_arg
from ..distributions import Distribution, standard_normal
from ._transformed import transformed

_MASKS = {"half": bj.half_mask, "alternating": bj.alternating_mask}


def _coupling_transformer(
    transformer: str | bj.Transformer,
    options: Mapping[str, Any] | None,
    scale: str,
    scale_bound: float,
    additive: bool,
) -> bj.Transformer:
    """``bijectors.transformer`` of the name and options; ``"affine"`` takes the builder's
    ``scale``, ``scale_bound`` and ``additive`` unless ``options`` say otherwise."""
    options = dict(options or {})
    if transformer == "affine" and additive:
        return bj.transformer("additive", **options)
    if transformer == "affine":
        return bj.transformer("affine", **{"scale": scale, "scale_bound": scale_bound, **options})
    return bj.transformer(transformer, **options)


def realnvp_bijector(
    event_shape: int | Sequence[int],
    num_layers: int = 8,
    hidden: Sequence[int] = (64, 64),
    *,
    activation: str = "relu",
    mask: str = "half",
    scale: str = "tanh",
    scale_bound: float = bj.DEFAULT_SCALE_BOUND,
    additive: bool = False,
    conditioner: bj.ConditionerFactory | None = None,
    transformer: str | bj.Transformer = "affine",
    transformer_options: Mapping[str, Any] | None = None,
    remat: str = "none",
) -> bj.Bijector:
    """The RealNVP coupling stack for ``(batch, dim)`` data.

    ``num_layers`` couplings alternate between a mask and its complement, so every
    coordinate is transformed by every second layer. Pairs of layers are one block, and the
    blocks are applied with :func:`flowzoo.bijectors.stack` (one ``lax.scan``), so compile
    time does not grow with depth; an odd final layer is appended outside the scan.

    ``transformer`` is the elementwise map of each coupling, a name that
    :func:`flowzoo.bijectors.transformer` resolves with ``transformer_options`` or any
    :class:`flowzoo.bijectors.Transformer`: ``"affine"`` (``scale``, ``scale_bound``,
    ``additive`` apply), ``"spline"`` (a rational-quadratic spline, Durkan et al. 2019, by
    default 8 bins on ``[-4, 4]`` for standardised data; e.g. ``transformer_options={"num_bins":
    16, "bound": 5.0}``).

    ``remat`` rematerialises every conditioner call with that policy
    (:func:`flowzoo.bijectors.checkpointed_conditioner`, :data:`flowzoo.nets.REMAT_POLICIES`;
    ``"none"``: off).
    """
    shape = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(event_shape)
    if len(shape) != 1:
        raise ValueError(
            f"realnvp_bijector builds flows for vector events (dim,), got event shape {shape}; "
            "for images use the multi-scale image builders"
        )
    if shape[0] < 2:
        raise ValueError("a coupling flow needs at least 2 dimensions")
    num_layers = count_arg(num_layers, "num_layers", "realnvp")
    if mask not in _MASKS:
        raise ValueError(f"unknown mask {mask!r}; choose one of {sorted(_MASKS)}")
    cond = bj.checkpointed_conditioner(conditioner or bj.mlp_conditioner(hidden, activation), remat)
    tr = _coupling_transformer(transformer, transformer_options, scale, scale_bound, additive)

    def coupling(parity: int) -> bj.Bijector:
        return bj.coupling(_MASKS[mask](shape, parity), tr, cond)

    layers = []
    if num_layers >= 2:
        layers.append(bj.stack(bj.chain(coupling(0), coupling(1)), num_layers // 2))
    if num_layers % 2:
        layers.append(coupling(0))
    return layers[0] if len(layers) == 1 else bj.chain(*layers)


def realnvp(
    event_shape: int | Sequence[int],
    num_layers: int = 8,
    hidden: Sequence[int] = (64, 64),
    *,
    base: Distribution | None = None,
    **kwargs,
) -> Distribution:
    """A RealNVP density over ``(batch, dim)`` data: ``transformed(base, realnvp_bijector)``.

    Vectors only: for images ``(H, W, C)`` use the multi-scale :func:`realnvp_image`, whose
    arguments (``num_scales``, conditioner ``hidden`` channels, ``num_blocks``) mean other
    things than these.

    Args:
      event_shape: ``dim`` or ``(dim,)``.
      num_layers: number of affine couplings.
      hidden: hidden widths of each coupling's MLP conditioner.
      base: base distribution (default: standard normal).
      **kwargs: passed to :func:`realnvp_bijector` (``activation``, ``mask``, ``scale``,
        ``scale_bound``, ``additive``, ``conditioner``, ``transformer``,
        ``transformer_options``, ``remat``).
    """
    shape = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(event_shape)
    if len(shape) != 1:
        hint = " (an image: use flows.realnvp_image)" if len(shape) == 3 else ""
        raise ValueError(f"realnvp models vectors (dim,); got event_shape {shape}{hint}")
    bij = realnvp_bijector(event_shape, num_layers, hidden, **kwargs)
    return transformed(base or standard_normal(shape), bij)
