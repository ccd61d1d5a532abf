"""The ``"cfm"`` model of ``flowzoo train``: a time-conditioned network trained by flow matching.

Config keys (``config["model"]``; their defaults are those of :data:`CFM_SCHEMA`, and
:func:`default_model_config` / :func:`image_model_config` are the experiments' sections):
``path`` (a name in :data:`PATHS`) and that path's own keyword arguments where present
(``sigma_min``, ``beta_min``, ``beta_max``, ``sigma_max``, ``exponent``); ``coupling`` (a
name in :data:`COUPLINGS`), ``sinkhorn_epsilon`` (relative to the mean cost unless
``sinkhorn_relative`` is false), ``sinkhorn_iters``; the stochastic-interpolant paths (``brownian_bridge``,
``stochastic_interpolant``) take ``noise_scale`` (and ``base``), and with ``coupling:
sinkhorn``, ``sinkhorn_relative: false``, ``sinkhorn_epsilon: 2 noise_scale^2`` they are
Schroedinger-bridge CFM; ``ot_pipeline`` (with ``coupling: exact_ot`` on
continuous data: the pairs are computed ahead of the step on ``ot_workers`` host threads,
0 meaning one per CPU, by :func:`flowzoo.flow_matching.ot_paired_batches`; the same law,
other random streams, so opt-in: runs recorded without it keep their batches);
``time_sampling`` (``"uniform"`` or ``"logit_normal"``), ``time_uniform_fraction`` (with
logit-normal times, the weight of a uniform component mixed in), ``time_range``;
network
``net`` (``"mlp"``, ``"unet"``, ``"adm_unet"`` (torchcfm's CIFAR-10 UNet,
:func:`flowzoo.nets.adm_unet`, with its keys ``num_channels``, ``channel_mult``,
``num_res_blocks``, ``num_heads``, ``num_head_channels``, ``attention_resolutions``) or
``"auto"``: the UNet for rank-3 ``(H, W, C)`` events, the MLP otherwise), MLP ``hidden``, ``activation``, UNet ``channels`` and ``attention_heads``
(self-attention at the coarsest level; 0 for none), ``num_blocks``, ``conv``
(``"im2col"``, or ``"xla"`` with ``train.steps_per_call=1``: see :func:`flowzoo.nets.unet`),
``dropout`` (in every residual block during training) and ``remat`` (a
:data:`flowzoo.nets.REMAT_POLICIES` name: each residual and attention block one
``jax.checkpoint``; default ``"none"``), both ``embed_dim``;
sampler ``solver`` and ``num_steps`` (0 means adaptive, for ``tsit5``/``dopri5``), ``rtol``,
``atol``; likelihood ``log_prob``: the CNF log-likelihood of the learned velocity field
(:func:`flowzoo.flow_matching.distribution`, base = the path's t=0 marginal), ``"exact"`` (Jacobian trace, ``D`` tangents per field
evaluation: fine for 2-D and 8x8 images) or ``"hutchinson"`` (``num_probes`` Rademacher
probes per example drawn from ``probe_seed``, fixed along the solve; unbiased, and
deterministic for a given input), or ``"none"``; solved by ``log_prob_solver`` with
``log_prob_steps`` fixed steps (0 with ``tsit5`` for an adaptive solve at ``rtol``/``atol``),
``log_prob_chunk`` rows at a time (0: the whole batch).
Autoguidance (Karras et al. 2024; :func:`flowzoo.nets.guided`): ``guide_steps`` > 0 (0:
none) trains a guide, a weaker copy of the model (``guide_channels`` for the UNet,
``guide_hidden`` for the MLP; every other key the main model's, no likelihood), for that many
steps in its own run directory ``RUN/guide``, before the main model; the run then samples and
evaluates its likelihood with ``guide + guide_weight * (main - guide)``.
Image data: ``data_levels`` (filled in by ``flowzoo train`` for ``data.name`` digits/mnist),
``preprocess`` (``"scale"``: [-1, 1); ``"shift"``; ``"logit"`` with ``alpha``); see
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
from ._schema import activation_spec, image_keys, solver_spec, unet_keys
from ._spec import (
    Bool,
    Choice,
    Float,
    Int,
    Positive,
    SectionCheck,
    Seed,
    Spec,
    Tolerance,
    Widths,
    complete_section,
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


def _completed(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``cfm`` section ``cfg`` with the keys it leaves out set to their defaults."""
    return complete_section(CFM_SCHEMA, cfg)


def network(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> nets.Network:
    """The velocity network a model config names (``net``: mlp / unet / auto); keys the
    section leaves out take their defaults."""
    cfg = _completed(cfg)
    kind = cfg["net"]
    if kind == "auto":
        kind = "unet" if len(event_shape) == 3 else "mlp"
    if kind == "mlp" and float(cfg["dropout"]) == 0.0 and cfg["remat"] == "none":
        return nets.time_mlp(
            event_shape,
            tuple(cfg["hidden"]),
            embed_dim=cfg["embed_dim"],
            activation_fn=cfg["activation"],
        )
    return image_unet(cfg, kind, event_shape)


def path_from_config(cfg: dict[str, Any]):
    """The affine :class:`~flowzoo.paths.Path` a ``cfm`` model config names (``path``, with
    that path's own keyword arguments taken from the config); ``ValueError`` if unknown."""
    name = _completed(cfg)["path"]
    if name not in PATHS:
        raise ValueError(f"model.path: unknown path {name!r}; choose one of {sorted(PATHS)}")
    params = inspect.signature(PATHS[name]).parameters
    return get_path(name, **{k: cfg[k] for k in params if k in cfg})


def _coupling_from_config(cfg: dict[str, Any]):
    name = cfg["coupling"]
    kwargs = {}
    if name == "sinkhorn":
        kwargs = {
            "epsilon": cfg["sinkhorn_epsilon"],
            "relative": bool(cfg["sinkhorn_relative"]),
            "num_iters": int(cfg["sinkhorn_iters"]),
        }
    return get_coupling(name, **kwargs)


def _solver(cfg: dict[str, Any], solver_key: str, steps_key: str):
    return SolverConfig(
        cfg[solver_key], int(cfg[steps_key]) or None, float(cfg["rtol"]), float(cfg["atol"])
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


def guide_config(cfg: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
    """``(the guide's model section, its training steps)``, or ``None`` without a guide.

    ``guide_steps`` (0: no guide) is how long the guide trains; ``guide_channels`` (UNet)
    or ``guide_hidden`` (MLP) its widths (when left out: the main network's); every other
    key is the main model's, except that the guide has no likelihood (``log_prob: none``).
    ``guide_weight`` is the guidance weight. Keys ``cfg`` leaves out take their defaults.
    """
    cfg = _completed(cfg)
    steps = int(cfg["guide_steps"])
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
    shape, cfg = tuple(event_shape), _completed(cfg)
    if guide_config(cfg) is None:
        raise ValueError("model.guide_steps is 0: this model has no guide")
    return _cfm_model(cfg, shape, sampling_network(cfg, shape), trainable=False)


def sampling_network(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> nets.Network:
    """The velocity network a run samples with: :func:`network`, or with ``guide_steps`` the
    guided one (params ``{"main", "guide"}``, :func:`flowzoo.nets.guided`)."""
    shape, cfg = tuple(event_shape), _completed(cfg)
    found = guide_config(cfg)
    if found is None:
        return network(cfg, shape)
    weight = float(cfg["guide_weight"])
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
    path = path_from_config(cfg)
    lo, hi = cfg["time_range"]
    batches = _ot_batches(cfg)
    loss = cfm_loss(
        net.apply,
        path,
        coupling=None if batches else _coupling_from_config(cfg),
        time_sampling=cfg["time_sampling"],
        time_range=(float(lo), float(hi)),
        time_uniform_fraction=float(cfg["time_uniform_fraction"]),
        source="paired" if batches else None,
        network_rng=float(cfg["dropout"]) > 0.0,
    )
    kind = cfg["log_prob"]
    if kind not in ("exact", "hutchinson", "none"):
        raise ValueError(f"model.log_prob must be 'exact', 'hutchinson' or 'none', got {kind!r}")
    dist = distribution(
        net,
        path,
        event_shape,
        t1=float(hi),
        sample_solver=_solver(cfg, "solver", "num_steps"),
        log_prob_solver=_solver(cfg, "log_prob_solver", "log_prob_steps"),
        divergence=DivergenceConfig(
            log_prob="hutchinson" if kind == "hutchinson" else "exact",
            log_prob_estimate="hutchinson" if kind == "hutchinson" else "exact",
            num_probes=int(cfg["num_probes"]) if kind == "hutchinson" else 1,
            probe_seed=int(cfg["probe_seed"]),
            chunk_size=int(cfg["log_prob_chunk"]) or None,
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
    if not cfg["ot_pipeline"]:
        return None
    if cfg["coupling"] != "exact_ot":
        raise ValueError("model.ot_pipeline: true needs model.coupling: exact_ot")
    if cfg["data_levels"]:
        raise ValueError(
            "model.ot_pipeline: image data is dequantized inside the step, after pairing; "
            "use ot_pipeline: false (the in-step exact_ot coupling) for image data"
        )
    workers = int(cfg["ot_workers"]) or None

    def batches(x, batch_size: int):
        pipe = ot_paired_batches(x, batch_size, workers=workers)
        return pipe.batch_fn, pipe.close

    return batches


def _path_check(cfg: dict[str, Any]) -> str | None:
    try:
        path_from_config(cfg)
    except (TypeError, ValueError) as err:
        return str(err)
    return None


def _time_range_check(cfg: dict[str, Any]) -> str | None:
    lo, hi = cfg["time_range"]
    return None if lo < hi else "time_range must be [t_lo, t_hi] with t_lo < t_hi"


CFM_SCHEMA: dict[str, Spec] = {
    "path": Choice(*PATHS, default="cond_ot"),
    # the paths' own keyword arguments, without a default here: each path takes the ones in
    # its signature, and one left out has the path's own default
    "sigma_min": Float(0.0),
    "sigma_max": Positive(),
    "beta_min": Float(0.0),
    "beta_max": Positive(),
    "exponent": Positive(),
    "noise_scale": Positive(),
    "base": Choice("linear", "trig"),
    "coupling": Choice(*COUPLINGS, default="independent"),
    "sinkhorn_epsilon": Positive(default=0.05),
    "sinkhorn_relative": Bool(default=True),
    "sinkhorn_iters": Int(1, default=200),
    "ot_pipeline": Bool(default=False),
    "ot_workers": Int(0, default=0),
    "time_sampling": Choice("uniform", "logit_normal", default="uniform"),
    "time_uniform_fraction": Spec("float", 0.0, 1.0, default=0.0),
    "time_range": Spec("floats", 0.0, 1.0, length=(2, 2), default=[0.0, 1.0]),
    "net": Choice("auto", "mlp", "unet", "adm_unet", default="auto"),
    "hidden": Widths(default=[256, 256, 256]),
    **unet_keys(),
    "remat": Choice(*nets.REMAT_POLICIES, default="none"),
    "activation": activation_spec(default="silu"),
    "solver": solver_spec(default="midpoint"),
    "num_steps": Int(0, default=20),
    "rtol": Tolerance(default=1e-5),
    "atol": Tolerance(default=1e-5),
    "log_prob": Choice("exact", "hutchinson", "none", default="exact"),
    "log_prob_solver": solver_spec(default="rk4"),
    "log_prob_steps": Int(0, default=16),
    "log_prob_chunk": Int(0, default=0),
    "num_probes": Int(1, default=4),
    "probe_seed": Seed(default=0),
    "guide_steps": Int(0, default=0),
    "guide_weight": Float(default=2.0),
    # the guide's widths, without a default: one left out is the main network's
    "guide_channels": Widths(),
    "guide_hidden": Widths(),
    **image_keys("scale", "shift", "logit"),
}
"""The keys of the ``cfm`` model section and their defaults."""

register_model(
    "cfm",
    build_cfm,
    CFM_SCHEMA,
    (
        SectionCheck(("path",), _path_check),
        SectionCheck(("time_range",), _time_range_check),
    ),
    guidance=Guidance(guide_config, build_guided_cfm, guided_cfm_params, GUIDE_KEYS),
)
