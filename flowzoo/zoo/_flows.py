"""Coupling-flow models for ``flowzoo train``: ``realnvp`` (vectors) and the image models
``glow``, ``realnvp_image`` and ``image_coupling``.

Image models wrap a continuous flow of NHWC images in :func:`flowzoo.flows.dequantized`
(dequantization + preprocessing), train on the negative dequantization bound in bits/dim
and report ``log_prob`` as that bound in nats per image, so a run's ``test_nll`` is a
discrete-data code length and ``test_bpd = test_nll / (D ln 2)``.

Config keys (``model`` section; the defaults are those of the schemas registered below):

* ``realnvp``: ``num_layers``, ``hidden`` (list of MLP widths), ``activation``,
  ``transformer`` (``"affine"`` or ``"spline"``), ``scale_bound`` (affine; default
  :data:`flowzoo.bijectors.DEFAULT_SCALE_BOUND`), ``num_bins`` (spline) and
  ``spline_bound`` (spline interval ``[-b, b]``).
* ``remat`` (``realnvp``, ``glow``, ``realnvp_image``, ``image_coupling``): rematerialise
  every coupling conditioner call with this policy (:data:`flowzoo.nets.REMAT_POLICIES`;
  default ``"none"``): less activation memory in the training step, more compute.
* ``maf``: a masked autoregressive flow (``inverse: true``: IAF) with the same keys;
  ``hidden`` are the MADE widths (each at least ``dim - 1``).
* ``glow``: ``levels`` (scales), ``depth`` (steps per level), ``hidden`` (conditioner
  channels); ``realnvp_image``: ``num_scales``, ``hidden``, ``num_blocks`` (residual blocks
  per conditioner). ``options``: a dict of further keyword arguments for the builder
  (:func:`flowzoo.flows.glow`, :func:`flowzoo.flows.realnvp_image`), e.g.
  ``{"split_prior": False}``.
* ``image_coupling`` (a simple single-scale baseline): ``num_layers`` checkerboard affine
  couplings with MLP conditioners of widths ``hidden``.
* ``preprocess``: ``"logit"`` (the default of the RealNVP models; ``alpha``) or ``"shift"``
  (Glow's).
* ``dequantization``: ``"uniform"`` or ``"variational"`` (Flow++; then ``dequant_layers``
  couplings with MLP widths ``dequant_hidden``).
* ``data_levels``: grey levels of the data; filled in from ``data.name`` by
  :func:`flowzoo.zoo.train_and_evaluate` (set it only for custom data).
"""

from __future__ import annotations

from typing import Any

from .. import bijectors as bj
from .. import nets
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
from ._schema import activation_spec, image_keys
from ._spec import Bool, Choice, Int, Positive, Spec, Widths, kwargs_of


def _transformer(cfg: dict[str, Any], orientation: str) -> bj.Transformer:
    if cfg["transformer"] == "spline":
        bins, bound = int(cfg["num_bins"]), float(cfg["spline_bound"])
        return bj.transformer("spline", num_bins=bins, bound=bound)
    return bj.transformer("affine", scale_bound=cfg["scale_bound"], orientation=orientation)


def _vector_flow(
    build, cfg: dict[str, Any], event_shape: tuple[int, ...], orientation: str = "density", **kw
) -> Model:
    """A vector flow builder (``realnvp``, ``maf``, ``iaf``) from the shared config keys
    (``kw``: the builder's further keyword arguments)."""
    flow = build(
        event_shape,
        cfg["num_layers"],
        tuple(cfg["hidden"]),
        activation=cfg["activation"],
        transformer=_transformer(cfg, orientation),
        **kw,
    )
    return from_distribution(flow)


def _realnvp(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    return _vector_flow(realnvp, cfg, event_shape, remat=cfg["remat"])


def _maf(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    build = iaf if cfg["inverse"] else maf
    return _vector_flow(build, cfg, event_shape, AFFINE_ORIENTATION)


def _check_image(name: str, event_shape: tuple[int, ...], cfg: dict[str, Any]) -> int:
    if len(event_shape) != 3:
        raise ValueError(
            f"model {name!r} models images (H, W, C); the data has event shape {event_shape}: "
            "use data.name='digits' or 'mnist'"
        )
    levels = int(cfg["data_levels"])
    if levels < 2:
        raise ValueError(f"model {name!r} needs model.data_levels (grey levels of the data)")
    return levels


def image_model(flow: Distribution, cfg: dict[str, Any], levels: int) -> Model:
    """Wrap ``flow`` with the dequantization/preprocessing that ``cfg`` describes; the loss
    is the negative bound in bits/dim."""
    shape = tuple(flow.event_shape)
    kind = cfg["dequantization"]
    if kind not in ("uniform", "variational"):
        raise ValueError(f"model.dequantization must be 'uniform' or 'variational', got {kind!r}")
    dequantizer = None
    if kind == "variational":
        dequantizer = variational_dequantizer(
            shape, int(cfg["dequant_layers"]), tuple(cfg["dequant_hidden"])
        )
    model = dequantized(
        flow,
        levels,
        preprocess=cfg["preprocess"],
        alpha=float(cfg["alpha"]),
        dequantizer=dequantizer,
    )
    return from_distribution(model, bits_per_dim=True)


def _glow(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    levels = _check_image("glow", event_shape, cfg)
    flow = glow(
        event_shape,
        int(cfg["levels"]),
        int(cfg["depth"]),
        _hidden(cfg["hidden"]),
        remat=cfg["remat"],
        **dict(cfg["options"]),
    )
    return image_model(flow, cfg, levels)


def _realnvp_image(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    levels = _check_image("realnvp_image", event_shape, cfg)
    flow = realnvp_image(
        event_shape,
        int(cfg["num_scales"]),
        _hidden(cfg["hidden"]),
        int(cfg["num_blocks"]),
        remat=cfg["remat"],
        **dict(cfg["options"]),
    )
    return image_model(flow, cfg, levels)


def _image_coupling(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    levels = _check_image("image_coupling", event_shape, cfg)
    hidden = cfg["hidden"]
    flow = image_coupling_flow(
        event_shape,
        int(cfg["num_layers"]),
        tuple(hidden) if isinstance(hidden, list | tuple) else (int(hidden),),
        float(cfg["scale_bound"]),
        remat=cfg["remat"],
    )
    return image_model(flow, cfg, levels)


def _hidden(h):
    """A conditioner width: an int, or the first entry of a list (``[64]`` -> 64)."""
    return int(h[0]) if isinstance(h, list | tuple) else int(h)


def _dequant(*preprocess: str) -> dict[str, Spec]:
    """The dequantization and preprocessing keys of an image flow (``preprocess``: the
    choices, the model's default first)."""
    return {
        "dequantization": Choice("uniform", "variational", default="uniform"),
        "dequant_layers": Int(1, default=4),
        "dequant_hidden": Widths(default=[128]),
        **image_keys(*preprocess),
    }


_OPTION_SKIP = ("levels", "depth", "hidden", "num_scales", "num_blocks", "conditioner", "remat")
_REMAT = {"remat": Choice(*nets.REMAT_POLICIES, default="none")}

_TRANSFORMER = {
    "transformer": Choice("affine", "spline", default="affine"),
    "scale_bound": Positive(default=bj.DEFAULT_SCALE_BOUND),
    "num_bins": Int(2, default=8),
    "spline_bound": Positive(default=4.0),
}
register_model(
    "realnvp",
    _realnvp,
    {
        "num_layers": Int(1, required=True),
        "hidden": Widths(required=True),
        "activation": activation_spec(default="gelu"),  # the built-in experiment's
        **_TRANSFORMER,
        **_REMAT,
    },
)
register_model(
    "maf",
    _maf,
    {
        "num_layers": Int(1, required=True),
        "hidden": Widths(required=True),
        "activation": activation_spec(default="relu"),
        "inverse": Bool(default=False),
        **_TRANSFORMER,
    },
)
register_model(
    "glow",
    _glow,
    {
        "levels": Int(1, default=2),
        "depth": Int(1, default=8),
        "hidden": Spec("width", 1, default=64),
        "options": Spec(
            "dict",
            check=kwargs_of(glow_bijector, _OPTION_SKIP + ("prior_conditioner",)),
            default={},
        ),
        **_REMAT,
        **_dequant("shift", "logit"),
    },
)
register_model(
    "realnvp_image",
    _realnvp_image,
    {
        "num_scales": Int(1, default=2),
        "hidden": Spec("width", 1, default=64),
        "num_blocks": Int(1, default=2),
        "options": Spec("dict", check=kwargs_of(realnvp_image_bijector, _OPTION_SKIP), default={}),
        **_REMAT,
        **_dequant("logit", "shift"),
    },
)
register_model(
    "image_coupling",
    _image_coupling,
    {
        "num_layers": Int(1, default=8),
        "hidden": Widths(default=[256]),
        "scale_bound": Positive(default=bj.DEFAULT_SCALE_BOUND),
        **_REMAT,
        **_dequant("logit", "shift"),
    },
)
