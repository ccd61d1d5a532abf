"""The ``"cfm"`` model of ``flowzoo train``: a time-conditioned MLP trained by flow matching.

Config keys (``config["model"]``), with the defaults of :func:`default_model_config`:
``path`` (a name in :data:`PATHS`) and that path's own keyword arguments where present
(``sigma_min``, ``beta_min``, ``beta_max``, ``sigma_max``, ``exponent``); ``coupling`` (a
name in :data:`COUPLINGS`), ``sinkhorn_epsilon``; ``time_sampling``, ``time_range``; network
``hidden``, ``embed_dim``, ``activation``; sampler ``solver`` and ``num_steps`` (0 means
adaptive, for ``tsit5``/``dopri5``), ``rtol``, ``atol``; likelihood ``log_prob``
(``"exact"``: the CNF of :mod:`flowzoo.cnf` with the exact divergence, solved by
``log_prob_solver`` with ``log_prob_steps`` fixed steps (default RK4, 16 steps; 0 with
``tsit5`` for an adaptive solve at ``rtol``/``atol``, about 10x slower); ``"none"``: no
likelihood). Time convention: t=0 noise, t=1 data.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax

from .. import nets
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


def _log_prob(cfg: dict[str, Any], apply_fn, event_shape, t1: float):
    """Log-likelihood through the CNF (exact divergence), or None."""
    if cfg.get("log_prob", "exact") == "none":
        return None
    try:
        from ..cnf import cnf
    except ImportError:  # no CNF package: no likelihood
        return None
    dist = cnf(
        apply_fn,
        tuple(event_shape),
        t1=t1,
        solver=cfg.get("log_prob_solver", "rk4"),
        num_steps=int(cfg.get("log_prob_steps", 16)) or None,
        rtol=cfg.get("rtol", 1e-5),
        atol=cfg.get("atol", 1e-5),
    )
    return lambda params, x: dist.log_prob(params, x)


def build_cfm(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """A :class:`~flowzoo.train.Trainable` for flow matching from ``config["model"]``."""
    net = nets.time_mlp(
        event_shape,
        tuple(cfg.get("hidden", (256, 256, 256))),
        embed_dim=cfg.get("embed_dim", 64),
        activation_fn=cfg.get("activation", "silu"),
    )
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

    return Trainable(init, loss, sample_fn, _log_prob(cfg, net.apply, event_shape, float(hi)))


register_model("cfm", build_cfm)
