"""Coupling-flow models for ``flowzoo train``: ``realnvp`` (vectors) and the image models
``glow``, ``realnvp_image`` and ``image_coupling``.

Image models wrap a continuous flow of NHWC images in :func:`flowzoo.flows.dequantized`
(dequantization + preprocessing), train on the negative dequantization bound in bits/dim
and report ``log_prob`` as that bound in nats per image, so a run's ``test_nll`` is a
discrete-data code length and ``test_bpd = test_nll / (D ln 2)``.

Config keys (``model`` section; all but ``name`` optional):

* ``realnvp``: ``num_layers``, ``hidden`` (list of MLP widths), ``activation``,
  ``transformer`` (``"affine"``, default, or ``"spline"``), ``scale_bound`` (affine; default
  :data:`flowzoo.bijectors.DEFAULT_SCALE_BOUND`), ``num_bins`` (spline, default 8) and
  ``spline_bound`` (spline interval ``[-b, b]``, default 4).
* ``maf``: a masked autoregressive flow (``inverse: true``: IAF) with the same keys;
  ``hidden`` are the MADE widths (each at least ``dim - 1``).
* ``glow``: ``levels`` (scales, default 2), ``depth`` (steps per level, default 8),
  ``hidden`` (conditioner channels, default 64); ``realnvp_image``: ``num_scales`` (default
  2), ``hidden`` (64), ``num_blocks`` (residual blocks per conditioner, 2). ``options``: a
  dict of further keyword arguments for the builder (:func:`flowzoo.flows.glow`,
  :func:`flowzoo.flows.realnvp_image`), e.g. ``{"split_prior": False}``.
* ``image_coupling`` (a simple single-scale baseline): ``num_layers`` checkerboard affine
  couplings (default 8) with MLP conditioners of widths ``hidden``.
* ``preprocess``: ``"logit"`` (default for RealNVP, ``alpha`` 0.05) or ``"shift"`` (default
  for Glow).
* ``dequantization``: ``"uniform"`` (default) or ``"variational"`` (Flow++; then
  ``dequant_layers`` couplings, default 4, with MLP widths ``dequant_hidden``, default [128]).
* ``data_levels``: grey levels of the data; filled in from ``data.name`` by
  :func:`flowzoo.zoo.train_and_evaluate` (set it only for custom data).
"""

from __future__ import annotations

from typing import Any

from .. import bijectors as bj
from ..distributions import Distribution
from ..flows import (
    AFFINE_ORIENTATION,
    dequantized,
    glow,
    glow_bijector,
    iaf,
    image_coupling_flow,
    maf,
    realnvp,
    realnvp_image,
    realnvp_image_bijector,
    variational_dequantizer,
)
from ._registry import Model, from_distribution, register_model
from ._schema import (
    BOOL,
    Choice,
    Int,
    Positive,
    Spec,
    Widths,
    activation_spec,
    image_keys,
    kwargs_of,
)


def _transformer(cfg: dict[str, Any], orientation: str) -> bj.Transformer:
    if cfg.get("transformer", "affine") == "spline":
        bins, bound = int(cfg.get("num_bins", 8)), float(cfg.get("spline_bound", 4))
        return bj.transformer("spline", num_bins=bins, bound=bound)
    bound = cfg.get("scale_bound", bj.DEFAULT_SCALE_BOUND)
    return bj.transformer("affine", scale_bound=bound, orientation=orientation)


def _vector_flow(
    build, cfg: dict[str, Any], event_shape: tuple[int, ...], orientation: str = "density"
) -> Model:
    """A vector flow builder (``realnvp``, ``maf``, ``iaf``) from the shared config keys."""
    flow = build(
        event_shape,
        cfg["num_layers"],
        tuple(cfg["hidden"]),
        activation=cfg.get("activation", "relu"),
        transformer=_transformer(cfg, orientation),
    )
    return from_distribution(flow)


def _realnvp(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    return _vector_flow(realnvp, cfg, event_shape)


def _maf(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    build = iaf if cfg.get("inverse", False) else maf
    return _vector_flow(build, cfg, event_shape, AFFINE_ORIENTATION)


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


def image_model(
    flow: Distribution, cfg: dict[str, Any], levels: int, default_preprocess: str
) -> Model:
    """Wrap ``flow`` with the dequantization/preprocessing that ``cfg`` describes; the loss
    is the negative bound in bits/dim."""
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
    return from_distribution(model, bits_per_dim=True)


def _glow(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    levels = _check_image("glow", event_shape, cfg)
    flow = glow(
        event_shape,
        int(cfg.get("levels", 2)),
        int(cfg.get("depth", 8)),
        _hidden(cfg.get("hidden", 64)),
        **dict(cfg.get("options", {})),
    )
    return image_model(flow, cfg, levels, "shift")


def _realnvp_image(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    levels = _check_image("realnvp_image", event_shape, cfg)
    flow = realnvp_image(
        event_shape,
        int(cfg.get("num_scales", 2)),
        _hidden(cfg.get("hidden", 64)),
        int(cfg.get("num_blocks", 2)),
        **dict(cfg.get("options", {})),
    )
    return image_model(flow, cfg, levels, "logit")


def _image_coupling(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    levels = _check_image("image_coupling", event_shape, cfg)
    hidden = cfg.get("hidden", [256])
    flow = image_coupling_flow(
        event_shape,
        int(cfg.get("num_layers", 8)),
        tuple(hidden) if isinstance(hidden, list | tuple) else (int(hidden),),
        float(cfg.get("scale_bound", bj.DEFAULT_SCALE_BOUND)),
    )
    return image_model(flow, cfg, levels, "logit")


def _hidden(h):
    """A conditioner width: an int, or the first entry of a list (``[64]`` -> 64)."""
    return int(h[0]) if isinstance(h, list | tuple) else int(h)


_DEQUANT = {
    "dequantization": Choice("uniform", "variational"),
    "dequant_layers": Int(1),
    "dequant_hidden": Widths(),
    **image_keys("logit", "shift"),
}
_OPTION_SKIP = ("levels", "depth", "hidden", "num_scales", "num_blocks", "conditioner")

_TRANSFORMER = {
    "transformer": Choice("affine", "spline"),
    "scale_bound": Positive(),
    "num_bins": Int(2),
    "spline_bound": Positive(),
}
register_model(
    "realnvp",
    _realnvp,
    {
        "num_layers": Int(1, required=True),
        "hidden": Widths(required=True),
        "activation": activation_spec(),
        **_TRANSFORMER,
    },
)
register_model(
    "maf",
    _maf,
    {
        "num_layers": Int(1, required=True),
        "hidden": Widths(required=True),
        "activation": activation_spec(),
        "inverse": BOOL,
        **_TRANSFORMER,
    },
)
register_model(
    "glow",
    _glow,
    {
        "levels": Int(1),
        "depth": Int(1),
        "hidden": Spec("width", 1),
        "options": Spec(
            "dict", check=kwargs_of(glow_bijector, _OPTION_SKIP + ("prior_conditioner",))
        ),
        **_DEQUANT,
    },
)
register_model(
    "realnvp_image",
    _realnvp_image,
    {
        "num_scales": Int(1),
        "hidden": Spec("width", 1),
        "num_blocks": Int(1),
        "options": Spec("dict", check=kwargs_of(realnvp_image_bijector, _OPTION_SKIP)),
        **_DEQUANT,
    },
)
register_model(
    "image_coupling",
    _image_coupling,
    {"num_layers": Int(1), "hidden": Widths(), "scale_bound": Positive(), **_DEQUANT},
)
