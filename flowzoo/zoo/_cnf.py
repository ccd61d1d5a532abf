"""The ``ffjord`` model for ``flowzoo train``: a CNF trained by maximum likelihood.

Config keys (``model`` section; all but ``name`` optional, their defaults in the schema
below): ``hidden`` (MLP widths), ``embed_dim``, ``activation``, ``divergence`` (for
training; evaluation NLL always uses the exact trace), ``probe``, ``solver``,
``rtol``/``atol``, ``num_steps`` (0 = adaptive), ``max_steps``, ``adjoint`` for the
training solve; ``eval_rtol``/``eval_atol``: evaluation (``log_prob``, ``sample``) always
uses adaptive Tsit5 at these tolerances with the exact divergence, whatever the training
solve. Time convention: t=0 noise N(0, I), t=1 data.
"""

from __future__ import annotations

from typing import Any

from ..cnf import cnf
from ..integrate import ADJOINTS, PROBES, DivergenceConfig, SolverConfig
from ..nets import time_mlp
from ._registry import Model, from_distribution, register_model
from ._schema import activation_spec, solver_spec
from ._spec import Choice, Int, Tolerance, Widths


def ffjord(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """Build the FFJORD :class:`Model` described by a (completed) model config."""
    net = time_mlp(
        event_shape,
        tuple(cfg["hidden"]),
        embed_dim=int(cfg["embed_dim"]),
        activation_fn=cfg["activation"],
    )
    max_steps = int(cfg["max_steps"])
    train_solver = SolverConfig(
        cfg["solver"],
        int(cfg["num_steps"]) or None,
        float(cfg["rtol"]),
        float(cfg["atol"]),
        max_steps,
        cfg["adjoint"],
    )
    # the loss uses log_prob_estimate (Hutchinson by default) with the training solve
    train = cnf(
        net,
        event_shape,
        log_prob_solver=train_solver,
        divergence=DivergenceConfig(
            log_prob_estimate=cfg["divergence"],
            probe=cfg["probe"],
        ),
    )
    # evaluation (log_prob, sample): adaptive Tsit5 with the exact divergence at its own
    # tolerances, so the reported NLL is that of the continuous-time flow whatever the
    # training solve was
    eval_solver = SolverConfig(
        "tsit5",
        None,
        float(cfg["eval_rtol"]),
        float(cfg["eval_atol"]),
        max_steps,
    )
    exact = cnf(net, event_shape, sample_solver=eval_solver, log_prob_solver=eval_solver)
    trained = from_distribution(train)
    return Model(trained.init, trained.loss, exact.sample, exact)


register_model(
    "ffjord",
    ffjord,
    {
        "hidden": Widths(default=[64, 64, 64]),
        "embed_dim": Int(1, default=32),
        "activation": activation_spec(default="tanh"),
        "divergence": Choice("exact", "hutchinson", default="hutchinson"),
        "probe": Choice(*PROBES, default="rademacher"),
        "solver": solver_spec(default="tsit5"),
        "rtol": Tolerance(default=1e-5),
        "atol": Tolerance(default=1e-5),
        "num_steps": Int(0, default=0),
        "max_steps": Int(1, default=4096),
        "adjoint": Choice(*ADJOINTS, default="recursive"),
        "eval_rtol": Tolerance(default=1e-5),
        "eval_atol": Tolerance(default=1e-5),
    },
)
