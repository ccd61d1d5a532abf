"""RealNVP (Dinh et al. 2017) for vector events: alternating affine couplings.

Image event shapes dispatch to the multi-scale builder in ``_realnvp_image.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import bijectors as bj
from ..distributions import Distribution, standard_normal
from ._realnvp_image import realnvp_image
from ._transformed import transformed

_MASKS = {"half": bj.half_mask, "alternating": bj.alternating_mask}


def realnvp_bijector(
    event_shape: int | Sequence[int],
    num_layers: int = 8,
    hidden: Sequence[int] = (64, 64),
    *,
    activation: str = "relu",
    mask: str = "half",
    scale: str = "tanh",
    scale_bound: float = 3.0,
    additive: bool = False,
    conditioner: bj.ConditionerFactory | None = None,
) -> bj.Bijector:
    """The RealNVP coupling stack for ``(batch, dim)`` data.

    ``num_layers`` couplings alternate between a mask and its complement, so every
    coordinate is transformed by every second layer. Pairs of layers are one block, and the
    blocks are applied with :func:`flowzoo.bijectors.stack` (one ``lax.scan``), so compile
    time does not grow with depth; an odd final layer is appended outside the scan.
    """
    shape = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(event_shape)
    if len(shape) != 1:
        raise ValueError(
            f"realnvp_bijector builds flows for vector events (dim,), got event shape {shape}; "
            "for images use the multi-scale image builders"
        )
    if shape[0] < 2:
        raise ValueError("a coupling flow needs at least 2 dimensions")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if mask not in _MASKS:
        raise ValueError(f"unknown mask {mask!r}; choose one of {sorted(_MASKS)}")
    cond = conditioner or bj.mlp_conditioner(tuple(hidden), activation)

    def coupling(parity: int) -> bj.Bijector:
        return bj.affine_coupling(
            _MASKS[mask](shape, parity),
            cond,
            scale=scale,
            scale_bound=scale_bound,
            additive=additive,
        )

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

    For a 3-D event shape ``(H, W, C)`` this is the multi-scale image RealNVP
    :func:`realnvp_image` (``realnvp(image_shape, num_scales=2, hidden=64, num_blocks=2,
    **kw)``): ``hidden`` is then the number of channels of the ResNet conditioners (an int;
    a sequence of equal widths, like the default ``(64, 64)``, means that width), and
    ``num_layers`` must be left at its default (the per-scale layout is fixed by the paper).

    Args:
      event_shape: ``dim`` or ``(dim,)`` (or ``(H, W, C)`` for images, see above).
      num_layers: number of affine couplings.
      hidden: hidden widths of each coupling's MLP conditioner.
      base: base distribution (default: standard normal).
      **kwargs: passed to :func:`realnvp_bijector` (``activation``, ``mask``, ``scale``,
        ``scale_bound``, ``additive``, ``conditioner``), or to :func:`realnvp_image`.
    """
    shape = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(event_shape)
    if len(shape) == 3:
        return _image_realnvp(shape, num_layers, hidden, base, kwargs)
    bij = realnvp_bijector(event_shape, num_layers, hidden, **kwargs)
    return transformed(base or standard_normal(shape), bij)


def _image_realnvp(shape, num_layers, hidden, base, kwargs) -> Distribution:
    if num_layers != 8:
        raise ValueError(
            "realnvp for images has a fixed layout per scale (3 checkerboard, squeeze, "
            "3 channel couplings); set num_scales (and num_blocks) instead of num_layers"
        )
    if np.ndim(hidden) != 0:
        widths = {int(h) for h in hidden}
        if len(widths) != 1:
            raise ValueError(
                f"realnvp for images takes one conditioner width (channels), got hidden={hidden}"
            )
        hidden = widths.pop()
    return realnvp_image(shape, hidden=int(hidden), base=base, **kwargs)
