"""The ``"cfm"`` model of ``flowzoo train``: a time-conditioned network trained by flow matching.

Config keys (``config["model"]``), with the defaults of :func:`default_model_config`
(:func:`image_model_config` for NHWC images):
``path`` (a name in :data:`PATHS`) and that path's own keyword arguments where present
(``sigma_min``, ``beta_min``, ``beta_max``, ``sigma_max``, ``exponent``); ``coupling`` (a
name in :data:`COUPLINGS`), ``sinkhorn_epsilon`` (relative to the mean cost unless
``sinkhorn_relative`` is false), ``sinkhorn_iters`` (default 200); the stochastic-interpolant paths (``brownian_bridge``,
``stochastic_interpolant``) take ``noise_scale`` (and ``base``), and with ``coupling:
sinkhorn``, ``sinkhorn_relative: false``, ``sinkhorn_epsilon: 2 noise_scale^2`` they are
Schroedinger-bridge CFM; ``ot_pipeline`` (default false; with ``coupling: exact_ot`` on
continuous data: the pairs are computed ahead of the step on ``ot_workers`` host threads,
0 meaning one per CPU, by :func:`flowzoo.flow_matching.ot_paired_batches`; the same law,
other random streams, so opt-in: runs recorded without it keep their batches);
``time_sampling`` (``"uniform"`` or ``"logit_normal"``), ``time_uniform_fraction`` (with
logit-normal times, the weight of a uniform component mixed in; default 0), ``time_range``;
network
``net`` (``"mlp"``, ``"unet"`` or ``"auto"``: the UNet for rank-3 ``(H, W, C)`` events, the
MLP otherwise), MLP ``hidden``, ``activation``, UNet ``channels`` and ``attention_heads``
(self-attention at the coarsest level; 0, the default, for none), ``conv``
(``"im2col"``, the default, or ``"xla"`` with ``train.steps_per_call=1``: see
:func:`flowzoo.nets.unet`) and ``dropout`` (in every residual block during training;
default 0), both ``embed_dim``;
sampler ``solver`` and ``num_steps`` (0 means adaptive, for ``tsit5``/``dopri5``), ``rtol``,
``atol``; likelihood ``log_prob``: the CNF log-likelihood of the learned velocity field
(:func:`flowzoo.flow_matching.distribution`, base = the path's t=0 marginal), ``"exact"`` (Jacobian trace, ``D`` tangents per field
evaluation: fine for 2-D and 8x8 images) or ``"hutchinson"`` (``num_probes`` Rademacher
probes per example drawn from ``probe_seed``, fixed along the solve; unbiased, and
deterministic for a given input), or ``"none"``; solved by ``log_prob_solver`` with
``log_prob_steps`` fixed steps (default RK4, 16 steps; 0 with ``tsit5`` for an adaptive solve
at ``rtol``/``atol``), ``log_prob_chunk`` rows at a time (0: the whole batch).
Autoguidance (Karras et al. 2024; :func:`flowzoo.nets.guided`): ``guide_steps`` > 0 (default
0, none) trains a guide, a weaker copy of the model (``guide_channels`` for the UNet,
``guide_hidden`` for the MLP; every other key the main model's, no likelihood), for that many
steps in its own run directory ``RUN/guide``, before the main model; the run then samples and
evaluates its likelihood with ``guide + guide_weight * (main - guide)`` (default weight 2).
Image data: ``data_levels`` (filled in by ``flowzoo train`` for ``data.name`` digits/mnist),
``preprocess`` (``"scale"``: [-1, 1), default; ``"shift"``; ``"logit"`` with ``alpha``); see
:func:`with_image_data`. Time convention: t=0 noise, t=1 data.
"""

from __future__ import annotations

import inspect
from typing import Any

from .. import nets
from ..flow_matching import COUPLINGS, cfm_loss, distribution, get_coupling, ot_paired_batches
from ..integrate import DivergenceConfig, SolverConfig
from ..paths import PATHS, get_path
from ._images import image_unet, inner_params, with_image_data, with_inner_params
from ._registry import Guidance, Model, register_model
from ._schema import (
    BOOL,
    SEED,
    TOLERANCE,
    Choice,
    Float,
    Int,
    Positive,
    SectionCheck,
    Spec,
    Widths,
    activation_spec,
    image_keys,
    solver_spec,
    unet_keys,
)


def default_model_config() -> dict[str, Any]:
    """The model section of the flow-matching experiments (I-CFM, 3x256 SiLU MLP, midpoint)."""
    return {
        "name": "cfm",
        "path": "cond_ot",  # plus that path's own keywords (sigma_min, ...) where set
        "coupling": "independent",
        "sinkhorn_epsilon": 0.05,
        "time_sampling": "uniform",
        "time_range": [0.0, 1.0],
        "hidden": [256, 256, 256],
        "embed_dim": 64,
        "activation": "silu",
        "solver": "midpoint",
        "num_steps": 20,
        "rtol": 1e-5,
        "atol": 1e-5,
        "log_prob": "exact",
        "log_prob_solver": "rk4",
        "log_prob_steps": 16,
    }


def image_model_config() -> dict[str, Any]:
    """The model section for NHWC images: UNet velocity field, I-CFM, CNF bits/dim.

    UNet with ``channels`` (32, 64) and a 64-d time embedding; samples by 32 midpoint steps;
    likelihood by the exact divergence with 16 RK4 steps, 16 images at a time (set
    ``log_prob="hutchinson"`` and ``num_probes`` for large images).
    """
    cfg = default_model_config()
    for k in ("hidden", "activation"):
        del cfg[k]
    cfg.update(
        net="unet",
        channels=[32, 64],
        embed_dim=64,
        num_steps=32,
        num_probes=4,
        probe_seed=0,
        log_prob_chunk=16,
    )
    return cfg


def network(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> nets.Network:
    """The velocity network a model config names (``net``: mlp / unet / auto)."""
    kind = cfg.get("net", "auto")
    if kind == "auto":
        kind = "unet" if len(event_shape) == 3 else "mlp"
    if kind == "mlp" and float(cfg.get("dropout", 0.0)) == 0.0:
        return nets.time_mlp(
            event_shape,
            tuple(cfg.get("hidden", (256, 256, 256))),
            embed_dim=cfg.get("embed_dim", 64),
            activation_fn=cfg.get("activation", "silu"),
        )
    return image_unet(cfg, kind, event_shape)


def _path_from_config(cfg: dict[str, Any]):
    name = cfg.get("path", "cond_ot")
    if name not in PATHS:
        raise ValueError(f"model.path: unknown path {name!r}; choose one of {sorted(PATHS)}")
    params = inspect.signature(PATHS[name]).parameters
    return get_path(name, **{k: cfg[k] for k in params if k in cfg})


def _coupling_from_config(cfg: dict[str, Any]):
    name = cfg.get("coupling", "independent")
    kwargs = {}
    if name == "sinkhorn":
        kwargs = {
            "epsilon": cfg.get("sinkhorn_epsilon", 0.05),
            "relative": bool(cfg.get("sinkhorn_relative", True)),
            "num_iters": int(cfg.get("sinkhorn_iters", 200)),
        }
    return get_coupling(name, **kwargs)


def _solver(cfg: dict[str, Any], solver_key: str, steps_key: str, solver: str, steps: int):
    return SolverConfig(
        cfg.get(solver_key, solver),
        int(cfg.get(steps_key, steps)) or None,
        float(cfg.get("rtol", 1e-5)),
        float(cfg.get("atol", 1e-5)),
    )


def build_cfm(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """A flow-matching :class:`Model` from ``config["model"]``.

    ``event_shape``: ``(D,)`` vectors or ``(H, W, C)`` images; t=0 noise, t=1 data. The
    density is :func:`flowzoo.flow_matching.distribution` of the network and the path (base
    ``N(0, sigma_0^2 I)`` with the path's own t=0 scale), ``None`` when ``log_prob="none"``.
    The ``guide_*`` keys are not read here: see :func:`build_guided_cfm`.
    """
    return _cfm_model(cfg, tuple(event_shape), network(cfg, tuple(event_shape)))


GUIDE_KEYS = ("guide_steps", "guide_weight", "guide_channels", "guide_hidden")
"""The model keys of autoguidance (see :func:`guide_config`)."""

GUIDE_WEIGHT = 2.0
"""Default ``guide_weight``."""


def guide_config(cfg: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
    """``(the guide's model section, its training steps)``, or ``None`` without a guide.

    ``guide_steps`` (0, the default: no guide) is how long the guide trains;
    ``guide_channels`` (UNet) or ``guide_hidden`` (MLP) its widths (default: the main
    network's); every other key is the main model's, except that the guide has no
    likelihood (``log_prob: none``). ``guide_weight`` (default 2) is the guidance weight.
    """
    steps = int(cfg.get("guide_steps", 0) or 0)
    if steps <= 0:
        return None
    guide = {k: v for k, v in cfg.items() if k not in GUIDE_KEYS}
    if "guide_channels" in cfg:
        guide["channels"] = list(cfg["guide_channels"])
    if "guide_hidden" in cfg:
        guide["hidden"] = list(cfg["guide_hidden"])
    guide["log_prob"] = "none"
    return guide, steps


def build_guided_cfm(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """The flow-matching Model of an autoguided field (:func:`flowzoo.nets.guided`).

    Its velocity is ``guide + guide_weight * (main - guide)``, with the main network of
    ``cfg`` and the guide's of :func:`guide_config`; sampling and the likelihood both use
    it (the CNF of the guided field). Its params come from :func:`guided_cfm_params`; its
    loss refuses to run (the two networks are trained apart, each by its own run).
    """
    shape = tuple(event_shape)
    if guide_config(cfg) is None:
        raise ValueError("model.guide_steps is 0: this model has no guide")
    return _cfm_model(cfg, shape, sampling_network(cfg, shape), trainable=False)


def sampling_network(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> nets.Network:
    """The velocity network a run samples with: :func:`network`, or with ``guide_steps`` the
    guided one (params ``{"main", "guide"}``, :func:`flowzoo.nets.guided`)."""
    shape = tuple(event_shape)
    found = guide_config(cfg)
    if found is None:
        return network(cfg, shape)
    weight = float(cfg.get("guide_weight", GUIDE_WEIGHT))
    return nets.guided(network(cfg, shape), network(found[0], shape), weight)


def guided_cfm_params(cfg: dict[str, Any], main: Any, guide: Any) -> Any:
    """The params of :func:`build_guided_cfm`'s Model from the main and guide runs' params."""
    inner = {"main": inner_params(cfg, main), "guide": inner_params(cfg, guide)}
    return with_inner_params(cfg, main, inner)


def _not_trainable(params, key, batch):
    raise TypeError(
        "a guided flow-matching model is not trained as one: train the main model and the "
        "guide apart (flowzoo train does, for model.guide_steps > 0)"
    )


def _cfm_model(
    cfg: dict[str, Any], event_shape: tuple[int, ...], net: nets.Network, trainable: bool = True
) -> Model:
    path = _path_from_config(cfg)
    lo, hi = cfg.get("time_range", (0.0, 1.0))
    batches = _ot_batches(cfg)
    loss = cfm_loss(
        net.apply,
        path,
        coupling=None if batches else _coupling_from_config(cfg),
        time_sampling=cfg.get("time_sampling", "uniform"),
        time_range=(float(lo), float(hi)),
        time_uniform_fraction=float(cfg.get("time_uniform_fraction", 0.0)),
        source="paired" if batches else None,
        network_rng=float(cfg.get("dropout", 0.0)) > 0.0,
    )
    kind = cfg.get("log_prob", "exact")
    if kind not in ("exact", "hutchinson", "none"):
        raise ValueError(f"model.log_prob must be 'exact', 'hutchinson' or 'none', got {kind!r}")
    dist = distribution(
        net,
        path,
        event_shape,
        t1=float(hi),
        sample_solver=_solver(cfg, "solver", "num_steps", "midpoint", 20),
        log_prob_solver=_solver(cfg, "log_prob_solver", "log_prob_steps", "rk4", 16),
        divergence=DivergenceConfig(
            log_prob="hutchinson" if kind == "hutchinson" else "exact",
            log_prob_estimate="hutchinson" if kind == "hutchinson" else "exact",
            num_probes=int(cfg.get("num_probes", 4)) if kind == "hutchinson" else 1,
            probe_seed=int(cfg.get("probe_seed", 0)),
            chunk_size=int(cfg.get("log_prob_chunk", 0)) or None,
        ),
    )
    model = Model(
        lambda key, x: dist.init(key, x),
        loss if trainable else _not_trainable,
        dist.sample,
        None if kind == "none" else dist,
        batches,
    )
    return with_image_data(cfg, event_shape, model)


def _ot_batches(cfg: dict[str, Any]):
    """``batches(x, batch_size) -> (batch_fn, close)`` of :func:`ot_paired_batches` when
    ``ot_pipeline`` is set, else ``None`` (the coupling runs inside the step)."""
    if not cfg.get("ot_pipeline", False):
        return None
    if cfg.get("coupling", "independent") != "exact_ot":
        raise ValueError("model.ot_pipeline: true needs model.coupling: exact_ot")
    if cfg.get("data_levels"):
        raise ValueError(
            "model.ot_pipeline: image data is dequantized inside the step, after pairing; "
            "use ot_pipeline: false (the in-step exact_ot coupling) for image data"
        )
    workers = int(cfg.get("ot_workers", 0)) or None

    def batches(x, batch_size: int):
        pipe = ot_paired_batches(x, batch_size, workers=workers)
        return pipe.batch_fn, pipe.close

    return batches


def _path_check(cfg: dict[str, Any]) -> str | None:
    try:
        _path_from_config(cfg)
    except (TypeError, ValueError) as err:
        return str(err)
    return None


def _time_range_check(cfg: dict[str, Any]) -> str | None:
    lo, hi = cfg["time_range"]
    return None if lo < hi else "time_range must be [t_lo, t_hi] with t_lo < t_hi"


register_model(
    "cfm",
    build_cfm,
    {
        "path": Choice(*PATHS),
        # the paths' own keyword arguments; each path takes the ones in its signature
        "sigma_min": Float(0.0),
        "sigma_max": Positive(),
        "beta_min": Float(0.0),
        "beta_max": Positive(),
        "exponent": Positive(),
        "coupling": Choice(*COUPLINGS),
        "sinkhorn_epsilon": Positive(),
        "sinkhorn_relative": BOOL,
        "sinkhorn_iters": Int(1),
        "ot_pipeline": BOOL,
        "ot_workers": Int(0),
        "noise_scale": Positive(),
        "base": Choice("linear", "trig"),
        "time_sampling": Choice("uniform", "logit_normal"),
        "time_uniform_fraction": Spec("float", 0.0, 1.0),
        "time_range": Spec("floats", 0.0, 1.0, length=(2, 2)),
        "net": Choice("auto", "mlp", "unet"),
        "hidden": Widths(),
        **unet_keys(),
        "activation": activation_spec(),
        "solver": solver_spec(),
        "num_steps": Int(0),
        "rtol": TOLERANCE,
        "atol": TOLERANCE,
        "log_prob": Choice("exact", "hutchinson", "none"),
        "log_prob_solver": solver_spec(),
        "log_prob_steps": Int(0),
        "log_prob_chunk": Int(0),
        "num_probes": Int(1),
        "probe_seed": SEED,
        "guide_steps": Int(0),
        "guide_weight": Float(),
        "guide_channels": Widths(),
        "guide_hidden": Widths(),
        **image_keys("scale", "shift", "logit"),
    },
    (
        SectionCheck(("path",), _path_check),
        SectionCheck(("time_range",), _time_range_check),
    ),
    guidance=Guidance(guide_config, build_guided_cfm, guided_cfm_params, GUIDE_KEYS),
)
