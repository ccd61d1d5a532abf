"""Image models for ``flowzoo train``: ``glow``, ``realnvp_image`` and ``image_coupling``.

Each wraps a continuous flow of NHWC images in :func:`flowzoo.flows.dequantized`
(dequantization + preprocessing), trains it on the negative dequantization bound in
bits/dim and reports ``log_prob`` as that bound in nats per image, so a run's ``test_nll``
is a discrete-data code length and ``test_bpd = test_nll / (D ln 2)``.

Config keys (``model`` section; all but ``name`` optional):

* ``glow``: ``levels`` (scales, default 2), ``depth`` (steps per level, default 8),
  ``hidden`` (conditioner channels, default 64); ``realnvp_image``: ``num_scales`` (default
  2), ``hidden`` (64), ``num_blocks`` (residual blocks per conditioner, 2). ``options``: a
  dict of further keyword arguments for the builder (:func:`flowzoo.flows.glow`,
  ``flowzoo.flows.realnvp_image``), e.g. ``{"split_prior": False}``.
* ``image_coupling`` (a simple single-scale baseline): ``num_layers`` checkerboard affine
  couplings (default 8) with MLP conditioners of widths ``hidden``.
* ``preprocess``: ``"logit"`` (default for RealNVP, ``alpha`` 0.05) or ``"shift"`` (default
  for Glow).
* ``dequantization``: ``"uniform"`` (default) or ``"variational"`` (Flow++; then
  ``dequant_layers`` couplings, default 4, with MLP widths ``dequant_hidden``, default [128]).
* ``data_levels``: grey levels of the data; filled in from ``data.name`` by
  :func:`flowzoo.train.train_and_evaluate` (set it only for custom data).
"""

from __future__ import annotations

from typing import Any

import jax

from .. import bijectors as bj
from ..distributions import Distribution, standard_normal
from ..train._registry import Trainable, register_model
from ._dequant import variational_dequantizer
from ._image import DequantizedFlow, dequantized
from ._transformed import transformed

EVAL_KEY_SEED = 20261122
"""Seed of the fixed key with which ``Trainable.log_prob`` draws the dequantization noise."""


def image_coupling_flow(
    image_shape: tuple[int, ...], num_layers: int = 8, hidden=(256,), scale_bound: float = 2.0
) -> Distribution:
    """Single-scale baseline: alternating checkerboard affine couplings, MLP conditioners.

    ``num_layers // 2`` pairs of couplings are applied with :func:`flowzoo.bijectors.stack`.
    """
    cond = bj.mlp_conditioner(tuple(hidden), "relu")

    def coupling(parity: int) -> bj.Bijector:
        mask = bj.checkerboard_mask(image_shape, parity)
        return bj.affine_coupling(mask, cond, scale_bound=scale_bound)

    pair = bj.chain(coupling(0), coupling(1))
    return transformed(standard_normal(image_shape), bj.stack(pair, max(num_layers // 2, 1)))


def _check_image(name: str, event_shape: tuple[int, ...], cfg: dict[str, Any]) -> int:
    if len(event_shape) != 3:
        raise ValueError(
            f"model {name!r} models images (H, W, C); the data has event shape {event_shape}: "
            "use data.name='digits' or 'mnist'"
        )
    levels = int(cfg.get("data_levels", 0))
    if levels < 2:
        raise ValueError(f"model {name!r} needs model.data_levels (grey levels of the data)")
    return levels


def _trainable(model: DequantizedFlow) -> Trainable:
    eval_key = jax.random.key(EVAL_KEY_SEED)
    return Trainable(
        model.init,
        model.loss,
        model.sample,
        lambda params, x: model.log_prob(params, eval_key, x),
    )


def image_trainable(
    flow: Distribution, cfg: dict[str, Any], levels: int, default_preprocess: str
) -> Trainable:
    """Wrap ``flow`` with the dequantization/preprocessing that ``cfg`` describes."""
    shape = tuple(flow.event_shape)
    kind = cfg.get("dequantization", "uniform")
    if kind not in ("uniform", "variational"):
        raise ValueError(f"model.dequantization must be 'uniform' or 'variational', got {kind!r}")
    dequantizer = None
    if kind == "variational":
        dequantizer = variational_dequantizer(
            shape, int(cfg.get("dequant_layers", 4)), tuple(cfg.get("dequant_hidden", (128,)))
        )
    model = dequantized(
        flow,
        levels,
        preprocess=cfg.get("preprocess", default_preprocess),
        alpha=float(cfg.get("alpha", 0.05)),
        dequantizer=dequantizer,
    )
    return _trainable(model)


def _glow(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    from ._glow import glow

    levels = _check_image("glow", event_shape, cfg)
    flow = glow(
        event_shape,
        int(cfg.get("levels", 2)),
        int(cfg.get("depth", 8)),
        _hidden(cfg.get("hidden", 64)),
        **dict(cfg.get("options", {})),
    )
    return image_trainable(flow, cfg, levels, "shift")


def _realnvp_image(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    from ._realnvp_image import realnvp_image

    levels = _check_image("realnvp_image", event_shape, cfg)
    flow = realnvp_image(
        event_shape,
        int(cfg.get("num_scales", 2)),
        _hidden(cfg.get("hidden", 64)),
        int(cfg.get("num_blocks", 2)),
        **dict(cfg.get("options", {})),
    )
    return image_trainable(flow, cfg, levels, "logit")


def _image_coupling(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    levels = _check_image("image_coupling", event_shape, cfg)
    hidden = cfg.get("hidden", [256])
    flow = image_coupling_flow(
        event_shape,
        int(cfg.get("num_layers", 8)),
        tuple(hidden) if isinstance(hidden, list | tuple) else (int(hidden),),
        float(cfg.get("scale_bound", 2.0)),
    )
    return image_trainable(flow, cfg, levels, "logit")


def _hidden(h):
    """A conditioner width: an int, or the first entry of a list (``[64]`` -> 64)."""
    return int(h[0]) if isinstance(h, list | tuple) else int(h)


register_model("glow", _glow)
register_model("realnvp_image", _realnvp_image)
register_model("image_coupling", _image_coupling)
