"""The model registry: how a config's ``model.name`` becomes something a run can train.

Families register builders here from their own packages (``flowzoo/<family>/_recipe.py``);
:func:`build_model` imports the built-in family packages lazily so their builders exist.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from ..distributions import Distribution
from ..flows import nll_loss, realnvp
from ._config import ConfigError

_FAMILY_MODULES = ("flowzoo.flows", "flowzoo.cnf", "flowzoo.flow_matching", "flowzoo.score")


class Trainable(NamedTuple):
    """What a run needs from a model family, as pure functions (standardised data units).

    * ``init(key, x) -> params``
    * ``loss(params, key, batch) -> (scalar, metrics)``
    * ``sample(params, key, n, temperature=1.0) -> (n, *event)``
    * ``log_prob(params, x) -> (batch,)`` in nats, or ``None`` if the family has no
      tractable likelihood (then no NLL is reported).

    A density (:class:`flowzoo.distributions.Distribution`) becomes one with
    :func:`from_distribution`; score models and flow matching provide their own.
    """

    init: Callable
    loss: Callable
    sample: Callable
    log_prob: Callable | None


def from_distribution(dist: Distribution) -> Trainable:
    """A density trained by maximum likelihood (:func:`flowzoo.flows.nll_loss`)."""
    return Trainable(
        lambda key, x: dist.init(key, x),
        nll_loss(dist),
        lambda params, key, n, temperature=1.0: dist.sample(
            params, key, n, temperature=temperature
        ),
        lambda params, x: dist.log_prob(params, x),
    )


ModelBuilder = Callable[[dict[str, Any], tuple[int, ...]], "Distribution | Trainable"]
MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str, builder: ModelBuilder) -> None:
    """Make ``config["model"]["name"] == name`` build ``builder(model_config, event_shape)``.

    The builder returns a :class:`~flowzoo.distributions.Distribution` (trained by maximum
    likelihood) or a :class:`Trainable`.
    """
    MODELS[name] = builder


def _realnvp(cfg: dict[str, Any], event_shape: tuple[int, ...]) -> Distribution:
    return realnvp(
        event_shape,
        cfg["num_layers"],
        tuple(cfg["hidden"]),
        activation=cfg.get("activation", "relu"),
        scale_bound=cfg.get("scale_bound", 3.0),
    )


register_model("realnvp", _realnvp)


def build_model(config: dict[str, Any], event_shape: tuple[int, ...]) -> Trainable:
    """The model named by ``config["model"]["name"]``, as a :class:`Trainable`."""
    for module in _FAMILY_MODULES:  # importing a family package registers its builders
        importlib.import_module(module)
    name = config["model"].get("name")
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    try:
        model = MODELS[name](config["model"], event_shape)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"bad model config {config['model']}: {err}") from err
    return model if isinstance(model, Trainable) else from_distribution(model)
