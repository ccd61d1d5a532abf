"""The ``ffjord`` model for ``flowzoo train``: a CNF trained by maximum likelihood.

Config keys (``model`` section; all but ``name`` optional):
``hidden`` (list, default [64, 64, 64]), ``embed_dim`` (32), ``activation`` ("tanh"),
``divergence`` ("hutchinson" for training; evaluation NLL always uses the exact trace),
``probe`` ("rademacher"), ``solver`` ("tsit5"), ``rtol``/``atol`` (1e-5), ``num_steps``
(0 = adaptive), ``max_steps`` (4096), ``adjoint`` ("recursive") for the training solve;
``eval_rtol``/``eval_atol`` (1e-5): evaluation (``log_prob``, ``sample``) always uses adaptive
Tsit5 at these tolerances with the exact divergence, whatever the training solve.
Time convention: t=0 noise N(0, I), t=1 data.
"""

from __future__ import annotations

from typing import Any

from ..cnf import cnf
from ..integrate import ADJOINTS, PROBES, DivergenceConfig, SolverConfig
from ..nets import time_mlp
from ._registry import Model, from_distribution, register_model
from ._schema import TOLERANCE, Choice, Int, Widths, activation_spec, solver_spec


def ffjord(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """Build the FFJORD :class:`Model` described by a model config."""
    net = time_mlp(
        event_shape,
        tuple(cfg.get("hidden", (64, 64, 64))),
        embed_dim=int(cfg.get("embed_dim", 32)),
        activation_fn=cfg.get("activation", "tanh"),
    )
    max_steps = int(cfg.get("max_steps", 4096))
    train_solver = SolverConfig(
        cfg.get("solver", "tsit5"),
        int(cfg.get("num_steps", 0)) or None,
        float(cfg.get("rtol", 1e-5)),
        float(cfg.get("atol", 1e-5)),
        max_steps,
        cfg.get("adjoint", "recursive"),
    )
    # the loss uses log_prob_estimate (Hutchinson by default) with the training solve
    train = cnf(
        net,
        event_shape,
        log_prob_solver=train_solver,
        divergence=DivergenceConfig(
            log_prob_estimate=cfg.get("divergence", "hutchinson"),
            probe=cfg.get("probe", "rademacher"),
        ),
    )
    # evaluation (log_prob, sample): adaptive Tsit5 with the exact divergence at its own
    # tolerances, so the reported NLL is that of the continuous-time flow whatever the
    # training solve was
    eval_solver = SolverConfig(
        "tsit5",
        None,
        float(cfg.get("eval_rtol", 1e-5)),
        float(cfg.get("eval_atol", 1e-5)),
        max_steps,
    )
    exact = cnf(net, event_shape, sample_solver=eval_solver, log_prob_solver=eval_solver)
    trained = from_distribution(train)
    return Model(trained.init, trained.loss, exact.sample, exact)


register_model(
    "ffjord",
    ffjord,
    {
        "hidden": Widths(),
        "embed_dim": Int(1),
        "activation": activation_spec(),
        "divergence": Choice("exact", "hutchinson"),
        "probe": Choice(*PROBES),
        "solver": solver_spec(),
        "rtol": TOLERANCE,
        "atol": TOLERANCE,
        "num_steps": Int(0),
        "max_steps": Int(1),
        "adjoint": Choice(*ADJOINTS),
        "eval_rtol": TOLERANCE,
        "eval_atol": TOLERANCE,
    },
)
