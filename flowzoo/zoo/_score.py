"""Score-family models for ``flowzoo train``: ``ncsn``, ``ebm`` and ``score_sde``.

Config keys are documented per builder; data are standardised (zero mean, unit variance).
``score_sde``'s density is the probability-flow ODE (:func:`flowzoo.score.pf_ode_distribution`);
NCSN and energy models have none (``Model.distribution`` is ``None``). Time convention: the
SDE's, t=0 data, t=T noise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..integrate import DivergenceConfig, SolverConfig
from ..nets import REMAT_POLICIES, Network
from ..paths import SDES, bcast, get_sde
from ..samplers import annealed_langevin, denoise, mala, pc_sample, run_chain
from ..score import (
    cd_loss,
    energy_network,
    geometric_sigmas,
    ncsn_loss,
    noise_conditional_score_network,
    pf_ode_distribution,
    sde_dsm_loss,
    sde_score_network,
    uniform_init,
)
from ._images import image_unet, with_image_data
from ._registry import Model, register_model
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
    ordered,
)


def _no_temperature(name: str, temperature: float) -> None:
    if temperature != 1.0:
        raise ValueError(
            f"model {name!r} samples with a fixed sampler that has no temperature; "
            f"got temperature={temperature} (use 1.0)"
        )


def _ncsn(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """NCSN: ``sigma_max``, ``sigma_min``, ``num_sigmas`` (geometric), ``hidden``,
    ``steps_per_level``, ``step_eps`` (annealed Langevin step size at the smallest level),
    ``init_scale`` (uniform start). ``temperature`` other than 1 is refused; no density."""

    sigmas = geometric_sigmas(cfg["sigma_max"], cfg["sigma_min"], cfg["num_sigmas"])
    net = noise_conditional_score_network(
        event_shape, cfg["sigma_min"], cfg["sigma_max"], tuple(cfg["hidden"])
    )

    def init(key, x):
        return net.init(key, jnp.full((x.shape[0],), cfg["sigma_min"]), x)

    def sample(params, key, n, context=None, temperature=1.0):
        _no_temperature("ncsn", temperature)
        score = lambda sigma, x: net.apply(params, sigma, x)
        chain = annealed_langevin(score, sigmas, cfg["steps_per_level"], cfg["step_eps"])
        k0, k1 = jax.random.split(key)
        x0 = uniform_init(k0, (n, *event_shape), cfg["init_scale"])
        steps = int(sigmas.shape[0]) * cfg["steps_per_level"]
        x = run_chain(chain, k1, x0, steps, thin=steps).state.position
        return denoise(score, float(cfg["sigma_min"]), x)

    return Model(init, ncsn_loss(net.apply, sigmas), sample, None)


def _ebm(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """Energy model trained by short-run CD: ``hidden``, ``cd_steps``, ``cd_step_size``,
    ``alpha``, ``init_scale``; sampled by MALA (``mala_steps``, ``mala_step_size``) from
    uniform noise; ``temperature`` divides the log-density (MALA on ``p^(1/T)``). The
    density is unnormalised, so there is no ``distribution``."""

    net = energy_network(tuple(cfg["hidden"]), cfg["activation"])
    loss = cd_loss(
        net.apply,
        num_steps=cfg["cd_steps"],
        step_size=cfg["cd_step_size"],
        alpha=cfg["alpha"],
        init_scale=cfg["init_scale"],
    )

    def sample(params, key, n, context=None, temperature=1.0):
        log_prob = lambda x: -net.apply(params, x) / temperature
        k0, k1 = jax.random.split(key)
        x0 = uniform_init(k0, (n, *event_shape), cfg["init_scale"])
        steps = cfg["mala_steps"]
        return run_chain(mala(log_prob, cfg["mala_step_size"]), k1, x0, steps, steps).state.position

    return Model(net.init, loss, sample, None)


def score_network(sde, cfg: dict[str, Any], event_shape: tuple[int, ...]):
    """The score network a ``score_sde`` config names, ``apply(params, t, x) -> score``.

    ``net``: ``"mlp"`` (:func:`sde_score_network`, ``hidden``), ``"unet"``
    (:func:`flowzoo.nets.unet` with ``channels``, ``num_blocks``, ``embed_dim``,
    ``attention_heads``, ``conv``, ``dropout``: training only, ``remat``) or ``"auto"`` (UNet for
    ``(H, W, C)`` events). Both embed ``t / T`` and divide the output by the marginal
    std(t) (t=0 data, t=T noise), so the network predicts ``-noise``. Keys ``cfg`` leaves
    out take their defaults (:data:`SCORE_SDE_SCHEMA`).
    """
    cfg = complete_section(SCORE_SDE_SCHEMA, cfg)
    kind = cfg["net"]
    if kind == "auto":
        kind = "unet" if len(event_shape) == 3 else "mlp"
    if kind == "mlp" and float(cfg["dropout"]) == 0.0 and cfg["remat"] == "none":
        return sde_score_network(sde, event_shape, tuple(cfg["hidden"]))
    net = image_unet(cfg, kind, event_shape)

    def init(key, t, x):
        return net.init(key, jnp.asarray(t, jnp.float32) / sde.T, x)

    def apply(params, t, x, *, rng=None):
        std = bcast(sde.marginal(jnp.zeros_like(x), t)[1], x)
        return net.apply(params, jnp.asarray(t, jnp.float32) / sde.T, x, rng=rng) / std

    return Network(init, apply)


def _score_sde(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """Continuous-time score model: ``sde`` (ve/vp/subvp), ``sde_kwargs``, network (see
    :func:`score_network`), ``likelihood_weighting``, ``train_eps`` (smallest training
    time); PC sampler ``sample_steps``, ``snr``, ``num_corrector`` (``temperature``
    other than 1 is refused).

    Density: the probability-flow ODE at ``t = log_prob_eps`` (SDE time)
    (:func:`flowzoo.score.pf_ode_distribution`), divergence ``divergence`` (``"exact"`` or
    ``"hutchinson"`` with ``num_probes`` probes from ``probe_seed``), solver
    ``log_prob_solver`` with ``log_prob_steps`` fixed steps (0: adaptive at
    ``rtol``/``atol``), ``log_prob_chunk`` rows at a time (0: all), ``log_prob_time``
    ``"linear"`` or ``"log"`` (:func:`flowzoo.score.log_time`). Image data (``data_levels``
    set by ``flowzoo train``): dequantization, ``preprocess`` (``"scale"``: to [-1, 1))
    and bits/dim bookkeeping as for flow matching. Defaults: :data:`SCORE_SDE_SCHEMA`.
    """
    sde = get_sde(cfg["sde"], **cfg["sde_kwargs"])
    net = score_network(sde, cfg, tuple(event_shape))
    loss = sde_dsm_loss(
        net.apply,
        sde,
        t_min=float(cfg["train_eps"]),
        likelihood_weighting=cfg["likelihood_weighting"],
        network_rng=float(cfg["dropout"]) > 0.0,
    )
    divergence = cfg["divergence"]
    dist = pf_ode_distribution(
        sde,
        net,
        event_shape,
        t_min=float(cfg["log_prob_eps"]),
        time_change=cfg["log_prob_time"],
        log_prob_solver=SolverConfig(
            cfg["log_prob_solver"],
            int(cfg["log_prob_steps"]) or None,
            float(cfg["rtol"]),
            float(cfg["atol"]),
        ),
        divergence=DivergenceConfig(
            log_prob=divergence,
            log_prob_estimate=divergence,
            num_probes=int(cfg["num_probes"]) if divergence == "hutchinson" else 1,
            probe_seed=int(cfg["probe_seed"]),
            chunk_size=int(cfg["log_prob_chunk"]) or None,
        ),
    )

    def init(key, x):
        return net.init(key, jnp.full((x.shape[0],), 0.5 * sde.T), x)

    def sample(params, key, n, context=None, temperature=1.0):
        _no_temperature("score_sde", temperature)
        return pc_sample(
            sde,
            lambda t, x: net.apply(params, t, x),
            key,
            (n, *event_shape),
            cfg["sample_steps"],
            num_corrector=cfg["num_corrector"],
            snr=cfg["snr"],
        )

    return with_image_data(cfg, event_shape, Model(init, loss, sample, dist))


def _sde_check(cfg: dict[str, Any]) -> str | None:
    try:
        get_sde(cfg["sde"], **cfg["sde_kwargs"])
    except (TypeError, ValueError) as err:
        return str(err)
    return None


register_model(
    "ncsn",
    _ncsn,
    {
        "sigma_max": Positive(required=True),
        "sigma_min": Positive(required=True),
        "num_sigmas": Int(1, required=True),
        "hidden": Widths(required=True),
        "steps_per_level": Int(1, required=True),
        "step_eps": Positive(required=True),
        "init_scale": Positive(default=3.0),
    },
    (ordered("sigma_min", "sigma_max"),),
)
register_model(
    "ebm",
    _ebm,
    {
        "hidden": Widths(required=True),
        "activation": activation_spec(default="silu"),
        "cd_steps": Int(1, required=True),
        "cd_step_size": Positive(required=True),
        "alpha": Float(0.0, required=True),
        "init_scale": Positive(required=True),
        "mala_steps": Int(1, required=True),
        "mala_step_size": Positive(required=True),
    },
)
SCORE_SDE_SCHEMA: dict[str, Spec] = {
    "sde": Choice(*SDES, required=True),
    "sde_kwargs": Spec("dict", default={}),
    "net": Choice("auto", "mlp", "unet", "adm_unet", default="auto"),
    "hidden": Widths(),  # the MLP's widths: required with net "mlp", no default
    **unet_keys(),
    "remat": Choice(*REMAT_POLICIES, default="none"),
    "likelihood_weighting": Bool(default=False),
    "train_eps": Float(0.0, 1.0, lo_open=True, hi_open=True, default=1e-5),
    "divergence": Choice("exact", "hutchinson", default="exact"),
    "num_probes": Int(1, default=4),
    "probe_seed": Seed(default=0),
    "log_prob_eps": Float(0.0, 1.0, lo_open=True, hi_open=True, default=1e-5),
    "log_prob_time": Choice("linear", "log", default="linear"),
    "log_prob_solver": solver_spec(default="tsit5"),
    "log_prob_steps": Int(0, default=0),
    "rtol": Tolerance(default=1e-5),
    "atol": Tolerance(default=1e-5),
    "log_prob_chunk": Int(0, default=0),
    "sample_steps": Int(1, required=True),
    "num_corrector": Int(0, default=1),
    "snr": Positive(default=0.16),
    **image_keys("scale", "shift", "logit"),
}
"""The keys of the ``score_sde`` model section and their defaults."""

register_model(
    "score_sde",
    _score_sde,
    SCORE_SDE_SCHEMA,
    (SectionCheck(("sde", "sde_kwargs"), _sde_check),),
)
