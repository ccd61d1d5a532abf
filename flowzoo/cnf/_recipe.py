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

from ..nets import time_mlp
from ..train._registry import Trainable, register_model
from ._cnf import cnf
from ._losses import cnf_nll_loss


def ffjord(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """Build the FFJORD :class:`~flowzoo.train.Trainable` described by a model config."""
    net = time_mlp(
        event_shape,
        tuple(cfg.get("hidden", (64, 64, 64))),
        embed_dim=int(cfg.get("embed_dim", 32)),
        activation_fn=cfg.get("activation", "tanh"),
    )
    num_steps = int(cfg.get("num_steps", 0)) or None
    model = cnf(
        net,
        event_shape,
        divergence=cfg.get("divergence", "hutchinson"),
        probe=cfg.get("probe", "rademacher"),
        solver=cfg.get("solver", "tsit5"),
        rtol=float(cfg.get("rtol", 1e-5)),
        atol=float(cfg.get("atol", 1e-5)),
        num_steps=num_steps,
        max_steps=int(cfg.get("max_steps", 4096)),
        adjoint=cfg.get("adjoint", "recursive"),
    )
    # evaluation (log_prob, sample): adaptive Tsit5 with the exact divergence at its own
    # tolerances, so the reported NLL is that of the continuous-time flow whatever the
    # training solve was
    exact = cnf(
        net,
        event_shape,
        solver="tsit5",
        rtol=float(cfg.get("eval_rtol", 1e-5)),
        atol=float(cfg.get("eval_atol", 1e-5)),
        max_steps=int(cfg.get("max_steps", 4096)),
    )
    return Trainable(
        lambda key, x: model.init(key, x),
        cnf_nll_loss(model),
        lambda params, key, n, temperature=1.0: exact.sample(
            params, key, n, temperature=temperature
        ),
        lambda params, x: exact.log_prob(params, x),
    )


register_model("ffjord", ffjord)
