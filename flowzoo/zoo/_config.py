"""Experiment configs: nested dicts, the built-in default, strict ``key=value`` overrides,
and the schema (``_schema``) applied to the registered models (``_registry``).

A config is a plain nested ``dict`` (JSON-serialisable). An experiment is a Python file with
``get_config() -> dict``; ``flowzoo train NAME`` finds ``experiments/NAME.py``. A config
states the keys that apply to its run (:func:`applicable_config`); each key it leaves out
takes the default of its schema :class:`~flowzoo.zoo.Spec` (:func:`complete_config`).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import flowzoo

from . import _schema
from ._registry import MODELS, ModelEntry
from ._schema import applicable_config
from ._spec import ConfigError, Spec


def validate_config(config: Any, models: Mapping[str, ModelEntry] | None = None) -> None:
    """Check every key of ``config`` that applies to it against the schema (the ``model``
    section against its model's, from ``models``, default :data:`~flowzoo.zoo.MODELS`);
    raise :class:`ConfigError` naming the first bad key, its value and what is allowed.
    Nothing is loaded or compiled."""
    _schema.validate_config(config, MODELS if models is None else models)


def complete_config(config: Any, models: Mapping[str, ModelEntry] | None = None) -> Any:
    """A copy of ``config`` holding the keys that apply to it, each key it leaves out that
    has a schema default set to that default (``models``: as for :func:`validate_config`)."""
    return _schema.complete_config(config, MODELS if models is None else models)


def schema_of(config: dict[str, Any], key: str) -> Spec | None:
    """The :class:`~flowzoo.zoo.Spec` of a dotted key (``"train.steps"``) for this config
    (the data set's and the registered model's schema), or ``None``."""
    return _schema.schema_of(config, key, MODELS)


def default_config() -> dict[str, Any]:
    """The built-in default: RealNVP (12 affine couplings, 2x64 GELU MLPs) on two moons.

    Units: NLL in nats per example, on standardised data (zero mean, unit variance per
    coordinate, statistics of the training split).
    """
    return {
        "name": "moons_realnvp",
        "seed": 0,
        "data": {
            "name": "two_moons",  # a toy target (flowzoo.data.TOY_TARGETS), image set or "file"
            "noise": 0.05,  # toy targets that take a noise level
            "n_train": 20000,
            "n_test": 5000,
            "standardize": True,
        },
        "model": {
            "name": "realnvp",
            "num_layers": 12,
            "hidden": [64, 64],
            "activation": "gelu",
            "scale_bound": 1.0,  # tanh bound on the log-scale: bijectors.DEFAULT_SCALE_BOUND
        },
        "train": {
            "steps": 2000,
            "batch_size": 256,
            "lr": 1e-3,
            "warmup_steps": 100,
            "final_lr_fraction": 0.01,  # cosine decay to lr * this
            "grad_clip": 1.0,
            "ema_decay": 0.0,  # 0 disables EMA
            "ema_warmup": False,  # True: decay min(ema_decay, (1 + n) / (10 + n)) at update n
            "compute_dtype": "float32",  # "bfloat16": mixed precision (f32 params and loss)
            "data_parallel": False,  # True: split each batch over all devices (a mesh)
            "steps_per_call": 100,
            "eval_every": 500,
            "checkpoint_every": 500,
            "keep_checkpoints": 3,
            "tensorboard": False,  # True: also write TensorBoard event files (tensorboardX)
        },
        "plot": {"n_samples": 5000, "grid": 200},
    }


def _builtin_experiments() -> Path:
    package = Path(flowzoo.__file__).resolve().parent
    installed = package / "experiments"  # where a wheel puts the repository's experiments/
    return installed if installed.is_dir() else package.parent / "experiments"


BUILTIN_EXPERIMENTS = _builtin_experiments()
"""The built-in experiments: the repository's top-level ``experiments/`` in a source checkout
or an editable install, ``flowzoo/experiments/`` inside an installed wheel (the build maps the
folder there, never to a top-level ``experiments`` package)."""


def builtin_experiment(name: str) -> ModuleType:
    """The module of the built-in experiment ``name`` (``experiments/NAME.py``), loaded from
    its file; experiments that start from another one's config call it (a ``./experiments``
    file of the same name does not replace it here)."""
    path = BUILTIN_EXPERIMENTS / f"{name}.py"
    if not path.is_file():
        raise ConfigError(f"no built-in experiment {name!r} in {BUILTIN_EXPERIMENTS}")
    return _exec_file(path)


def _exec_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"flowzoo_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def experiment_dirs() -> list[Path]:
    """Where ``flowzoo train NAME`` looks for ``NAME.py``: ``./experiments``, then the
    built-in ones (:data:`BUILTIN_EXPERIMENTS`)."""
    dirs = [Path.cwd() / "experiments", BUILTIN_EXPERIMENTS]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def available_experiments() -> list[str]:
    """Names of the experiments found in :func:`experiment_dirs` (plus ``default``)."""
    names = {"default"}
    for d in experiment_dirs():
        names.update(p.stem for p in d.glob("*.py") if not p.name.startswith("_"))
    return sorted(names)


class ExperimentSource(NamedTuple):
    """Where an experiment name resolved: ``path`` (``None`` for the built-in default) and
    ``shadows``, a built-in file of the same name that a working-directory file replaces."""

    path: Path | None
    shadows: Path | None = None


def resolve_experiment(name: str | None) -> ExperimentSource:
    """The file ``flowzoo train NAME`` runs: ``./experiments/NAME.py`` before the built-in
    ``experiments/NAME.py``, or ``NAME`` itself when it is a path to a ``.py`` file."""
    if name in (None, "default"):
        return ExperimentSource(None)
    path = Path(name)
    if path.suffix == ".py":
        if not path.is_file():
            raise ConfigError(f"experiment file {str(path)!r} does not exist")
        return ExperimentSource(path)
    found = [d / f"{name}.py" for d in experiment_dirs() if (d / f"{name}.py").is_file()]
    if not found:
        raise ConfigError(
            f"unknown experiment {name!r}; available: {', '.join(available_experiments())}"
        )
    return ExperimentSource(found[0], found[1] if len(found) > 1 else None)


def load_experiment(name: str | None) -> dict[str, Any]:
    """The config of experiment ``name`` (a name in ``experiments/`` or a path to a ``.py``).

    ``None`` or ``"default"`` gives :func:`default_config`. An experiment file is Python
    code: loading it runs it (see :func:`resolve_experiment` for which file a name means).
    The config holds the keys that apply to it (:func:`applicable_config`): a ``data`` key
    of another data set, left by an experiment that starts from :func:`default_config` and
    changes ``data.name``, is dropped.
    """
    path = resolve_experiment(name).path
    if path is None:
        return default_config()
    try:
        module = _exec_file(path)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"experiment {str(path)!r} defines no get_config()")
        config = module.get_config()
    except ConfigError:
        raise
    except Exception as err:  # a broken experiment file: say which and why
        raise ConfigError(
            f"cannot load experiment {str(path)!r}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(config, dict):
        raise ConfigError(f"get_config() of {str(path)!r} must return a dict")
    return applicable_config(config)


_NONFINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def _parse_value(text: str) -> Any:
    if text.lower() in _NONFINITE:  # parsed as numbers so that the range check names them
        return _NONFINITE[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text  # a bare string such as two_moons


def _coerce(old: Any, new: Any, key: str, spec: Any = None) -> Any:
    if isinstance(old, bool):
        if isinstance(new, str) and new.lower() in ("true", "false", "yes", "no", "1", "0"):
            return new.lower() in ("true", "yes", "1")
        if isinstance(new, bool):
            return new
        if isinstance(new, int) and new in (0, 1):
            return bool(new)
    elif isinstance(old, int) and isinstance(new, int) and not isinstance(new, bool):
        return new
    elif isinstance(old, int) and isinstance(new, list) and len(new) == 1:
        return new  # a conditioner width given as [64]
    elif isinstance(old, float) and isinstance(new, int | float) and not isinstance(new, bool):
        return float(new)
    elif isinstance(old, str):
        return str(new)
    elif isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return list(new)
    elif old is None:
        return new
    if spec is not None:
        raise ConfigError(f"override {key}={new!r}: expected {spec.describe()}")
    raise ConfigError(
        f"override {key}={new!r}: expected a value of type {type(old).__name__} "
        f"(current value {old!r})"
    )


_EXAMPLE = {"int": 0, "float": 0.0, "bool": False, "str": "", "ints": [], "floats": [], "width": 0}
"""A value of each schema kind, to coerce an override of a key without a value or default."""


def _section_name_first(item: str) -> bool:
    """Sort key of an override: ``data.name``/``model.name`` first (they decide which keys
    their section has)."""
    key = item.partition("=")[0].strip()
    return not (key.count(".") == 1 and key.endswith(".name"))


def _unknown_key(item: str, parts: list[str], known: list[str]) -> ConfigError:
    key = ".".join(parts)
    section = ".".join(parts[:-1])
    valid = ", ".join(sorted(f"{section}.{k}" if section else k for k in known))
    return ConfigError(f"bad override {item!r}: unknown key {key!r}; valid keys here: {valid}")


def _spec_of(config: dict[str, Any], parts: list[str]) -> tuple[Spec | None, bool]:
    """``(spec, applies)`` of an overridden key: the config's own spec, else, for a ``data``
    key of another data set, that key's spec and ``False`` (the override is checked, then
    dropped as not applying)."""
    spec = _schema.schema_of(config, ".".join(parts), MODELS)
    if spec is None and parts[:-1] == ["data"]:
        return _schema.data_schema(None).get(parts[-1]), False
    return spec, True


def apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """A copy of ``config`` with ``["a.b=value", ...]`` applied; values parsed as Python literals.

    A key must exist in the config or in its schema (:func:`validate_config`), and a value
    must keep the key's type (that of its current value, else of its schema default; ints
    widen to floats), so a typo fails loudly instead of being ignored. ``data.name`` and
    ``model.name`` are applied first, since they decide which keys their section has; the
    result holds the keys that apply to it (:func:`applicable_config`: a ``data`` key of
    another data set is dropped). Ranges are checked by :func:`validate_config`.
    """
    config = copy.deepcopy(config)
    for item in sorted(overrides or [], key=_section_name_first):
        if "=" not in item:
            raise ConfigError(f"bad override {item!r}: expected key=value, e.g. train.steps=500")
        key, _, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    f"bad override {item!r}: no config section {'.'.join(parts[: i + 1])!r}"
                )
            node = node[part]
        leaf = parts[-1]
        value = _parse_value(text.strip())
        spec, applies = _spec_of(config, parts)
        known = _schema.schema_keys(config, ".".join(parts[:-1]), MODELS)
        if spec is None and (known or leaf not in node):
            raise _unknown_key(item, parts, known or list(node))
        if spec is not None and spec.kind == "dict":  # keyword arguments, e.g. model.options
            if not isinstance(value, dict):
                raise ConfigError(f"override {key}={value!r}: expected {spec.describe()}")
            node[leaf] = value
        elif leaf in node and not isinstance(node[leaf], dict):
            node[leaf] = _coerce(node[leaf], value, key, spec)
        elif spec is None or spec.kind == "section":
            raise _unknown_key(item, parts, known or list(node))
        else:  # a key the schema knows but this config leaves unset
            example = spec.default if spec.has_default else _EXAMPLE[spec.kind]
            node[leaf] = _coerce(example, value, key, spec)
        if not applies:  # dropped below, but a bad value is still an error
            _schema.check_section("data", {leaf: spec}, {leaf: node[leaf]})
    return applicable_config(config)
