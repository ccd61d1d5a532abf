"""Guidance of one network by another: ``guide + weight * (main - guide)``.

Autoguidance (Karras et al., "Guiding a Diffusion Model with a Bad Version of Itself",
NeurIPS 2024) extrapolates a well-trained network away from a weaker version of itself (a
smaller network trained for less time on the same data and the same objective). The weak
network makes the same kind of errors, more of them, so the difference points away from
them; unlike classifier-free guidance it needs no labels and applies to unconditional
models.
"""

from __future__ import annotations

from typing import Any

import jax
from jaxtyping import Array

from .._types import Key, Params
from ._mlp import Network


def guided(main: Network, guide: Network, weight: float) -> Network:
    """The network ``guide(x) + weight * (main(x) - guide(x))`` over params ``{"main", "guide"}``.

    ``weight = 1`` is ``main``, ``0`` is ``guide``, ``> 1`` extrapolates away from the guide.
    Both networks take the same inputs (``apply(params, *inputs, **kwargs)``: ``(t, x,
    context)`` for time-conditioned fields) and give outputs of one shape. The combination
    is linear, so it means the same for any output that is affine in the field at fixed
    ``(t, x)``: a velocity, a score, a noise or a data prediction.

    Args:
      main: the network to sharpen.
      guide: the weaker network.
      weight: the guidance weight (finite; Karras et al. use about 1.5 to 3).

    Returns:
      A :class:`Network`: ``init(key, *inputs)`` gives ``{"main": ..., "guide": ...}``
      (the two inits draw from split keys), ``apply`` the combined output.
    """
    w = float(weight)
    if w != w or w in (float("inf"), float("-inf")):
        raise ValueError(f"guided: weight must be finite, got {weight!r}")

    def init(key: Key, *inputs: Any, **kwargs: Any) -> Params:
        k_main, k_guide = jax.random.split(key)
        return {
            "main": main.init(k_main, *inputs, **kwargs),
            "guide": guide.init(k_guide, *inputs, **kwargs),
        }

    def apply(params: Params, *inputs: Any, **kwargs: Any) -> Array:
        if not isinstance(params, dict) or set(params) != {"main", "guide"}:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                f"guided: params must be a dict with keys 'main' and 'guide', got {got}"
            )
        out_guide = guide.apply(params["guide"], *inputs, **kwargs)
        out_main = main.apply(params["main"], *inputs, **kwargs)
        if out_main.shape != out_guide.shape:
            raise ValueError(
                f"guided: main and guide outputs differ in shape ({out_main.shape} vs "
                f"{out_guide.shape}); they must be fields over the same space"
            )
        return out_guide + w * (out_main - out_guide)

    return Network(init, apply)
