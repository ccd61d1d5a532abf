"""Model builders for ``flowzoo train``: ``ncsn``, ``ebm`` and ``score_sde`` (registered on import).

Config keys are documented per builder; data are standardised (zero mean, unit variance).
Samplers are imported inside the builders: :mod:`flowzoo.samplers` imports
:mod:`flowzoo.score` (SDEs, the probability-flow conversion), so a module-level import here
would be circular.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..cnf._quantized import with_image_data
from ..train._registry import Trainable, register_model
from ._cd import cd_loss, uniform_init
from ._dsm_losses import geometric_sigmas, ncsn_loss, sde_dsm_loss
from ._nets import energy_network, noise_conditional_score_network, sde_score_network
from ._pf_ode import probability_flow
from ._sdes import bcast, subvp_sde, ve_sde, vp_sde


def _ncsn(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """NCSN: ``sigma_max``, ``sigma_min``, ``num_sigmas`` (geometric), ``hidden``,
    ``steps_per_level``, ``step_eps`` (annealed Langevin), ``init_scale`` (uniform start).
    ``sample``'s ``temperature`` is ignored; ``log_prob`` is None (no tractable density)."""
    from ..samplers import annealed_langevin, denoise, run_chain

    sigmas = geometric_sigmas(cfg["sigma_max"], cfg["sigma_min"], cfg["num_sigmas"])
    net = noise_conditional_score_network(
        event_shape, cfg["sigma_min"], cfg["sigma_max"], tuple(cfg["hidden"])
    )

    def init(key, x):
        return net.init(key, jnp.full((x.shape[0],), cfg["sigma_min"]), x)

    def sample(params, key, n, temperature=1.0):
        del temperature
        score = lambda sigma, x: net.apply(params, sigma, x)
        chain = annealed_langevin(score, sigmas, cfg["steps_per_level"], cfg["step_eps"])
        k0, k1 = jax.random.split(key)
        x0 = uniform_init(k0, (n, *event_shape), cfg.get("init_scale", 3.0))
        steps = int(sigmas.shape[0]) * cfg["steps_per_level"]
        x = run_chain(chain, k1, x0, steps, thin=steps).state.position
        return denoise(score, float(cfg["sigma_min"]), x)

    return Trainable(init, ncsn_loss(net.apply, sigmas), sample, None)


def _ebm(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """Energy model trained by short-run CD: ``hidden``, ``cd_steps``, ``cd_step_size``,
    ``alpha``, ``init_scale``; sampled by MALA (``mala_steps``, ``mala_step_size``) from
    uniform noise. ``log_prob`` is None (unnormalised)."""
    from ..samplers import mala, run_chain

    net = energy_network(tuple(cfg["hidden"]), cfg.get("activation", "silu"))
    loss = cd_loss(
        net.apply,
        num_steps=cfg["cd_steps"],
        step_size=cfg["cd_step_size"],
        alpha=cfg["alpha"],
        init_scale=cfg["init_scale"],
    )

    def sample(params, key, n, temperature=1.0):
        log_prob = lambda x: -net.apply(params, x) / temperature
        k0, k1 = jax.random.split(key)
        x0 = uniform_init(k0, (n, *event_shape), cfg["init_scale"])
        steps = cfg["mala_steps"]
        return run_chain(mala(log_prob, cfg["mala_step_size"]), k1, x0, steps, steps).state.position

    return Trainable(net.init, loss, sample, None)


_SDES = {"ve": ve_sde, "vp": vp_sde, "subvp": subvp_sde}


def log_time(field, eps: float, T: float):
    """``field(t, x)`` in the time ``s = log(t / eps) / log(T / eps)`` (s=0: t=eps, s=1: t=T).

    Returns ``(s, x) -> field(t(s), x) * dt/ds`` with ``t(s) = eps (T / eps)^s`` and
    ``dt/ds = t log(T / eps)``. The flow map and the log-det integral ``int div field dt`` are
    unchanged (a change of variables), but fixed steps in ``s`` are geometric in ``t``: for
    the VP SDE near the data (``std(t)^2 ~ beta_min t``) the field's Jacobian grows like
    ``1/t``, and ``dt/ds`` cancels it. SDE time convention: t=0 data, t=T noise.
    """
    log_ratio = float(np.log(T / eps))

    def reparametrised(s, x):
        t = eps * jnp.exp(log_ratio * s)
        return field(t, x) * (t * log_ratio).astype(x.dtype)

    return reparametrised


def score_network(sde, cfg: dict[str, Any], event_shape: tuple[int, ...]):
    """The score network a ``score_sde`` config names, ``apply(params, t, x) -> score``.

    ``net``: ``"mlp"`` (:func:`sde_score_network`, ``hidden``), ``"unet"``
    (:func:`flowzoo.nets.unet` with ``channels``, ``embed_dim``) or ``"auto"`` (UNet for
    ``(H, W, C)`` events). Both embed ``t / T`` and divide the output by the marginal
    std(t) (t=0 data, t=T noise), so the network predicts ``-noise``.
    """
    kind = cfg.get("net", "auto")
    if kind == "auto":
        kind = "unet" if len(event_shape) == 3 else "mlp"
    if kind == "mlp":
        return sde_score_network(sde, event_shape, tuple(cfg["hidden"]))
    if kind != "unet":
        raise ValueError(f"model.net: unknown network {kind!r}; choose 'mlp', 'unet' or 'auto'")
    if len(event_shape) != 3:
        raise ValueError(f"model.net='unet' needs (H, W, C) events, got {event_shape}")
    from ..nets import Network, unet

    net = unet(tuple(cfg.get("channels", (32, 64))), int(cfg.get("embed_dim", 64)))

    def init(key, t, x):
        return net.init(key, jnp.asarray(t, jnp.float32) / sde.T, x)

    def apply(params, t, x):
        std = bcast(sde.marginal(jnp.zeros_like(x), t)[1], x)
        return net.apply(params, jnp.asarray(t, jnp.float32) / sde.T, x) / std

    return Network(init, apply)


def _score_sde(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """Continuous-time score model: ``sde`` (ve/vp/subvp), ``sde_kwargs``, network (see
    :func:`score_network`), ``likelihood_weighting``, ``train_eps`` (smallest training
    time, 1e-5); PC sampler ``sample_steps``, ``snr``, ``num_corrector``.

    ``log_prob``: the probability-flow ODE likelihood at ``t = log_prob_eps`` (default 1e-5;
    SDE time, t=0 data, t=T noise) by :func:`flowzoo.cnf.ode_log_prob`, divergence
    ``divergence`` (``"exact"`` or ``"hutchinson"`` with ``num_probes`` probes from
    ``probe_seed``), solver ``log_prob_solver`` (tsit5) with ``log_prob_steps`` fixed steps
    (0: adaptive at ``rtol``/``atol``, 1e-5), ``log_prob_chunk`` rows at a time (0: all).
    Any ``eps > 0`` gives a proper density (that of the PF-ODE model at ``eps``).
    ``log_prob_time``: ``"linear"`` (solve in t) or ``"log"`` (solve in ``s = log(t/eps) /
    log(T/eps)``, :func:`log_time`: fixed steps geometric in t, fine near the data end where
    the VP field varies like ``1/t``).
    Image data (``data_levels`` set by ``flowzoo train``): dequantization, ``preprocess``
    (default ``"scale"`` to [-1, 1)) and bits/dim bookkeeping as for flow matching
    (:func:`flowzoo.cnf._quantized.with_image_data`).
    """
    from ..cnf._ode_likelihood import ode_log_prob
    from ..samplers import pc_sample

    sde = _SDES[cfg["sde"]](**cfg.get("sde_kwargs", {}))
    net = score_network(sde, cfg, tuple(event_shape))
    loss = sde_dsm_loss(
        net.apply,
        sde,
        eps=float(cfg.get("train_eps", 1e-5)),
        likelihood_weighting=cfg.get("likelihood_weighting", False),
    )

    def init(key, x):
        return net.init(key, jnp.full((x.shape[0],), 0.5 * sde.T), x)

    def sample(params, key, n, temperature=1.0):
        del temperature
        score = lambda t, x: net.apply(params, t, x)
        return pc_sample(
            sde,
            score,
            key,
            (n, *event_shape),
            cfg["sample_steps"],
            num_corrector=cfg.get("num_corrector", 1),
            snr=cfg.get("snr", 0.16),
        )

    divergence = cfg.get("divergence", "exact")
    chunk = int(cfg.get("log_prob_chunk", 0)) or None

    eps = float(cfg.get("log_prob_eps", 1e-5))
    time_change = cfg.get("log_prob_time", "linear")
    if time_change not in ("linear", "log"):
        raise ValueError(f"model.log_prob_time must be 'linear' or 'log', got {time_change!r}")

    def log_prob(params, x):
        field = probability_flow(sde, lambda t, y: net.apply(params, t, y))
        t_data, t_base = eps, sde.T
        if time_change == "log":
            field, t_data, t_base = log_time(field, eps, sde.T), 0.0, 1.0
        return ode_log_prob(
            field,
            x,
            t_data=t_data,
            t_base=t_base,
            base_log_prob=sde.prior_log_prob,
            divergence=divergence,
            key=jax.random.key(int(cfg.get("probe_seed", 0)))
            if divergence == "hutchinson"
            else None,
            num_probes=int(cfg.get("num_probes", 4)),
            solver=cfg.get("log_prob_solver", "tsit5"),
            num_steps=int(cfg.get("log_prob_steps", 0)) or None,
            rtol=float(cfg.get("rtol", 1e-5)),
            atol=float(cfg.get("atol", 1e-5)),
            chunk_size=chunk,
        ).log_prob

    return with_image_data(cfg, event_shape, Trainable(init, loss, sample, log_prob))


register_model("ncsn", _ncsn)
register_model("ebm", _ebm)
register_model("score_sde", _score_sde)
