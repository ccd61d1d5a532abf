"""The ``"cfm"`` model of ``flowzoo train``: a time-conditioned network trained by flow matching.

Config keys (``config["model"]``), with the defaults of :func:`default_model_config`
(:func:`image_model_config` for NHWC images):
``path`` (a name in :data:`PATHS`) and that path's own keyword arguments where present
(``sigma_min``, ``beta_min``, ``beta_max``, ``sigma_max``, ``exponent``); ``coupling`` (a
name in :data:`COUPLINGS`), ``sinkhorn_epsilon``; ``time_sampling``, ``time_range``; network
``net`` (``"mlp"``, ``"unet"`` or ``"auto"``: the UNet for rank-3 ``(H, W, C)`` events, the
MLP otherwise), MLP ``hidden``, ``activation``, UNet ``channels``, both ``embed_dim``;
sampler ``solver`` and ``num_steps`` (0 means adaptive, for ``tsit5``/``dopri5``), ``rtol``,
``atol``; likelihood ``log_prob``: the CNF log-likelihood of the learned velocity field
(:func:`flowzoo.cnf.ode_log_prob`), ``"exact"`` (Jacobian trace, ``D`` tangents per field
evaluation: fine for 2-D and 8x8 images) or ``"hutchinson"`` (``num_probes`` Rademacher
probes per example drawn from ``probe_seed``, fixed along the solve; unbiased, and
deterministic for a given input), or ``"none"``; solved by ``log_prob_solver`` with
``log_prob_steps`` fixed steps (default RK4, 16 steps; 0 with ``tsit5`` for an adaptive solve
at ``rtol``/``atol``), ``log_prob_chunk`` rows at a time (0: the whole batch).
Image data: ``data_levels`` (filled in by ``flowzoo train`` for ``data.name`` digits/mnist),
``preprocess`` (``"scale"``: [-1, 1), default; ``"shift"``; ``"logit"`` with ``alpha``); see
:func:`with_image_data`. Time convention: t=0 noise, t=1 data.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax

from .. import nets
from ..cnf._quantized import with_image_data
from ..train._registry import Trainable, register_model
from ._coupling import get_coupling
from ._loss import cfm_loss
from ._paths import PATHS, get_path
from ._sample import sample


def default_model_config() -> dict[str, Any]:
    """The model section of the flow-matching experiments (I-CFM, 3x256 SiLU MLP, midpoint)."""
    return {
        "name": "cfm",
        "path": "cond_ot",
        "sigma_min": 0.0,
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
    if kind == "unet":
        if len(event_shape) != 3:
            raise ValueError(f"model.net='unet' needs (H, W, C) events, got {event_shape}")
        return nets.unet(tuple(cfg.get("channels", (32, 64))), int(cfg.get("embed_dim", 64)))
    if kind == "mlp":
        return nets.time_mlp(
            event_shape,
            tuple(cfg.get("hidden", (256, 256, 256))),
            embed_dim=cfg.get("embed_dim", 64),
            activation_fn=cfg.get("activation", "silu"),
        )
    raise ValueError(f"model.net: unknown network {kind!r}; choose 'mlp', 'unet' or 'auto'")


def _path_from_config(cfg: dict[str, Any]):
    name = cfg.get("path", "cond_ot")
    if name not in PATHS:
        raise ValueError(f"model.path: unknown path {name!r}; choose one of {sorted(PATHS)}")
    params = inspect.signature(PATHS[name]).parameters
    return get_path(name, **{k: cfg[k] for k in params if k in cfg})


def _coupling_from_config(cfg: dict[str, Any]):
    name = cfg.get("coupling", "independent")
    kwargs = {"epsilon": cfg.get("sinkhorn_epsilon", 0.05)} if name == "sinkhorn" else {}
    return get_coupling(name, **kwargs)


def log_prob_estimator(cfg: dict[str, Any], apply_fn, t1: float = 1.0):
    """``(params, x) -> ODELogProbEstimate`` of the CNF of the learned field, or None.

    Flow-matching time: base N(0, I) at t=0, data at ``t1``. Hutchinson probes come from
    ``jax.random.key(probe_seed)``, so the estimate is a deterministic function of ``x``.
    """
    kind = cfg.get("log_prob", "exact")
    if kind == "none":
        return None
    if kind not in ("exact", "hutchinson"):
        raise ValueError(f"model.log_prob must be 'exact', 'hutchinson' or 'none', got {kind!r}")
    from ..cnf._ode_likelihood import ode_log_prob, standard_normal_log_prob

    chunk = int(cfg.get("log_prob_chunk", 0)) or None

    def estimate(params, x):
        return ode_log_prob(
            lambda t, y: apply_fn(params, t, y),
            x,
            t_data=t1,
            t_base=0.0,
            base_log_prob=standard_normal_log_prob,
            divergence=kind,
            key=jax.random.key(int(cfg.get("probe_seed", 0))) if kind == "hutchinson" else None,
            num_probes=int(cfg.get("num_probes", 4)),
            solver=cfg.get("log_prob_solver", "rk4"),
            num_steps=int(cfg.get("log_prob_steps", 16)) or None,
            rtol=cfg.get("rtol", 1e-5),
            atol=cfg.get("atol", 1e-5),
            chunk_size=chunk,
        )

    return estimate


def _log_prob(cfg: dict[str, Any], apply_fn, t1: float):
    """Log-likelihood (nats) through the CNF, or None."""
    estimate = log_prob_estimator(cfg, apply_fn, t1)
    return None if estimate is None else (lambda params, x: estimate(params, x).log_prob)


def build_cfm(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """A :class:`~flowzoo.train.Trainable` for flow matching from ``config["model"]``.

    ``event_shape``: ``(D,)`` vectors or ``(H, W, C)`` images; t=0 noise, t=1 data.
    """
    net = network(cfg, tuple(event_shape))
    path = _path_from_config(cfg)
    lo, hi = cfg.get("time_range", (0.0, 1.0))
    loss = cfm_loss(
        net.apply,
        path,
        coupling=_coupling_from_config(cfg),
        time_sampling=cfg.get("time_sampling", "uniform"),
        time_range=(float(lo), float(hi)),
    )
    num_steps = int(cfg.get("num_steps", 20)) or None

    def init(key, x):
        return net.init(key, jax.numpy.zeros((x.shape[0],), x.dtype), x)

    def sample_fn(params, key, n, temperature=1.0):
        return sample(
            net.apply,
            params,
            key,
            n,
            event_shape,
            solver=cfg.get("solver", "midpoint"),
            num_steps=num_steps,
            path=path,
            temperature=temperature,
            t1=float(hi),
            rtol=cfg.get("rtol", 1e-5),
            atol=cfg.get("atol", 1e-5),
        ).samples

    return with_image_data(
        cfg, event_shape, Trainable(init, loss, sample_fn, _log_prob(cfg, net.apply, float(hi)))
    )


register_model("cfm", build_cfm)
