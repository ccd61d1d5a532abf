"""The model registry: how a config's ``model.name`` becomes a :class:`Model` a run can train.

The family modules of this package (``_flows``, ``_cnf``, ``_flow_matching``, ``_score``)
register their builders when :mod:`flowzoo.zoo` is imported; families themselves never
register anything (they sit below this package).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ..distributions import Distribution
from ..flows import nll_loss
from ._spec import ConfigError, Schema, SectionCheck, Spec, complete_section


class Model(NamedTuple):
    """What a run trains: a loss and a sampler, wrapped around the model's density.

    * ``init(key, x) -> params``
    * ``loss(params, key, batch) -> (scalar, metrics)``
    * ``sample(params, key, n, context=None, temperature=1.0) -> (n, *event)`` (the
      :class:`~flowzoo.distributions.Distribution` signature)
    * ``distribution``: the model's :class:`~flowzoo.distributions.Distribution` when it has
      a tractable density (flows, CNFs, flow matching, the probability-flow ODE of a score
      model), else ``None`` (NCSN, energy models); evaluation uses its ``log_prob``.
    * ``batches``: ``None`` (a run trains on :func:`flowzoo.data.array_batches` of the
      training data), or the model's own ``batches(train_data, batch_size) -> (batch_fn,
      close)``, ``batch_fn(key, step)`` pure in ``(key, step)``, ``close()`` called after
      training (flow matching's exact-OT pairs computed ahead on host threads).
    """

    init: Callable
    loss: Callable
    sample: Callable
    distribution: Distribution | None
    batches: Callable | None = None


def from_distribution(
    dist: Distribution, loss: Callable | None = None, *, bits_per_dim: bool = False
) -> Model:
    """A :class:`Model` of a density; trained by maximum likelihood unless ``loss`` is given."""
    return Model(
        lambda key, x: dist.init(key, x),
        nll_loss(dist, bits_per_dim=bits_per_dim) if loss is None else loss,
        dist.sample,
        dist,
    )


class Guidance(NamedTuple):
    """How a model family samples with a guide network (:func:`flowzoo.nets.guided`).

    A guided run trains a second, weaker model (the guide) in its own run directory and
    samples (and evaluates its likelihood) with ``guide + weight * (main - guide)``:

    * ``config(model_config) -> (guide model section, guide training steps)``, or ``None``
      when the section asks for no guide;
    * ``build(model_config, event_shape) -> Model`` whose network is the guided one (its
      ``loss`` refuses to train: main and guide are trained apart);
    * ``params(model_config, main_params, guide_params) -> params`` of that Model;
    * ``keys``: the model keys that set only the guide and the guidance, never the main
      model's training, so a finished run may change them when it is run again (the
      guide is trained, or trained further, and the run samples and evaluates anew).
    """

    config: Callable[[dict[str, Any]], tuple[dict[str, Any], int] | None]
    build: Callable[[dict[str, Any], tuple[int, ...]], Model]
    params: Callable[[dict[str, Any], Any, Any], Any]
    keys: tuple[str, ...] = ()


ModelBuilder = Callable[[dict[str, Any], tuple[int, ...]], Model]


class ModelEntry(NamedTuple):
    """One registered model: how ``config["model"]["name"]`` is built and checked.

    * ``builder(model_config, event_shape) -> Model``; it receives the ``model`` section
      completed from ``schema`` (every key the config leaves out that has a default set
      to it), so it reads ``section[key]``;
    * ``schema``: each key of the section (``name`` included) with its
      :class:`~flowzoo.zoo.Spec`, or ``None`` (the builder's own errors are the only check);
    * ``checks``: rules over several keys (:class:`~flowzoo.zoo.SectionCheck`);
    * ``guidance``: how the model samples with a guide network, or ``None``.
    """

    builder: ModelBuilder
    schema: Schema | None = None
    checks: tuple[SectionCheck, ...] = ()
    guidance: Guidance | None = None


_ENTRIES: dict[str, ModelEntry] = {}

MODELS: Mapping[str, ModelEntry] = MappingProxyType(_ENTRIES)
"""The registered models by config name (read-only: :func:`register_model` adds to it)."""


def register_model(
    name: str,
    builder: ModelBuilder,
    schema: Schema | None = None,
    checks: tuple[SectionCheck, ...] = (),
    guidance: Guidance | None = None,
    *,
    replace: bool = False,
) -> ModelEntry:
    """Make ``config["model"]["name"] == name`` build ``builder(model_config, event_shape)``.

    ``schema`` maps each key of the ``model`` section (``name`` is added) to its
    :class:`~flowzoo.zoo.Spec`; with it, the section is completed from the specs' defaults
    and :func:`~flowzoo.zoo.validate_config` checks it before a run starts and refuses
    unknown keys. ``checks``: rules over several keys. Without a schema the builder's own
    errors are the only check. ``guidance``: how the model samples with a guide network,
    when it can. A name that is already registered is refused unless ``replace=True``.
    Returns the new :class:`ModelEntry`.
    """
    if name in _ENTRIES and not replace:
        raise ValueError(
            f"a model named {name!r} is already registered; pass replace=True to replace it"
        )
    if schema is not None:
        schema = {"name": Spec("str", required=True), **schema}
    entry = ModelEntry(builder, schema, tuple(checks), guidance)
    _ENTRIES[name] = entry
    return entry


def _entry(config: dict[str, Any]) -> tuple[ModelEntry, dict[str, Any]]:
    """The entry of ``config["model"]["name"]`` and the model section completed from its
    schema."""
    name = config["model"].get("name")
    if not isinstance(name, str) or name not in _ENTRIES:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_ENTRIES))}")
    entry = _ENTRIES[name]
    section = config["model"]
    return entry, section if entry.schema is None else complete_section(entry.schema, section)


def build_model(config: dict[str, Any], event_shape: tuple[int, ...]) -> Model:
    """The :class:`Model` named by ``config["model"]["name"]`` (its section completed from
    the model's schema first)."""
    entry, section = _entry(config)
    name = section["name"]
    try:
        model = entry.builder(section, tuple(event_shape))
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"model: bad config for {name!r}: {err}") from err
    if not isinstance(model, Model):
        raise TypeError(f"the builder of model {name!r} returned {type(model).__name__}, not Model")
    return model


def guidance_of(
    config: dict[str, Any],
) -> tuple[Guidance, tuple[dict[str, Any], int]] | None:
    """``(Guidance, (guide model section, guide training steps))`` when ``config["model"]``
    asks for a guide, else ``None``."""
    entry, section = _entry(config)
    if entry.guidance is None:
        return None
    guide = entry.guidance.config(section)
    return None if guide is None else (entry.guidance, guide)
