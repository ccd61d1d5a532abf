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

from ..train._registry import Trainable, register_model
from ._cd import cd_loss, uniform_init
from ._dsm_losses import geometric_sigmas, ncsn_loss, sde_dsm_loss
from ._nets import energy_network, noise_conditional_score_network, sde_score_network
from ._sdes import subvp_sde, ve_sde, vp_sde


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


def _score_sde(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """Continuous-time score model: ``sde`` (ve/vp/subvp), ``hidden``, ``likelihood_weighting``,
    ``sample_steps``, ``snr``, ``num_corrector`` (PC sampler); ``log_prob`` by the
    probability-flow ODE (exact divergence, tsit5)."""
    from ..samplers import pc_sample, pf_ode_log_prob

    sde = _SDES[cfg["sde"]](**cfg.get("sde_kwargs", {}))
    net = sde_score_network(sde, event_shape, tuple(cfg["hidden"]))
    loss = sde_dsm_loss(net.apply, sde, likelihood_weighting=cfg.get("likelihood_weighting", False))

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

    def log_prob(params, x):
        return pf_ode_log_prob(sde, lambda t, y: net.apply(params, t, y), x).log_prob

    return Trainable(init, loss, sample, log_prob)


register_model("ncsn", _ncsn)
register_model("ebm", _ebm)
register_model("score_sde", _score_sde)
