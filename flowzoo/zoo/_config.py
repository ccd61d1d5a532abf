"""Experiment configs: nested dicts, the built-in default, strict ``key=value`` overrides.

A config is a plain nested ``dict`` (JSON-serialisable). An experiment is a Python file with
``get_config() -> dict``; ``flowzoo train NAME`` finds ``experiments/NAME.py``.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import math
from pathlib import Path
from typing import Any, NamedTuple

import flowzoo


class ConfigError(ValueError):
    """A bad experiment name, config value or override (the message says which and why)."""


def default_config() -> dict[str, Any]:
    """The built-in default: RealNVP (12 affine couplings, 2x64 GELU MLPs) on two moons.

    Units: NLL in nats per example, on standardised data (zero mean, unit variance per
    coordinate, statistics of the training split).
    """
    return {
        "name": "moons_realnvp",
        "seed": 0,
        "data": {
            "name": "two_moons",  # a toy target (flowzoo.data.TOY_TARGETS) or "file"
            "noise": 0.05,  # toy targets that take a noise level
            "n_train": 20000,
            "n_test": 5000,
            "path": "",  # for name="file": a .npy/.npz of shape (n, dim)
            "test_fraction": 0.1,  # for name="file": held-out share (last rows after a shuffle)
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


BUILTIN_EXPERIMENTS = Path(flowzoo.__file__).resolve().parent / "experiments"
"""The built-in experiments, shipped inside the package (``flowzoo/experiments/``)."""


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
    """
    path = resolve_experiment(name).path
    if path is None:
        return default_config()
    spec = importlib.util.spec_from_file_location(f"flowzoo_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
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
    return config


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
"""A value of each schema kind, to coerce an override of a key the config leaves unset."""


def apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """A copy of ``config`` with ``["a.b=value", ...]`` applied; values parsed as Python literals.

    A key must exist in the config or in its schema (:mod:`flowzoo.zoo`'s ``validate_config``),
    and a value must keep the key's type (ints widen to floats), so a typo fails loudly
    instead of being ignored. Ranges are checked by ``validate_config``.
    """
    from ._schema import schema_keys, schema_of

    config = copy.deepcopy(config)
    for item in overrides or []:
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
        spec = schema_of(config, key)
        if spec is not None and spec.kind == "dict":  # keyword arguments, e.g. model.options
            if not isinstance(value, dict):
                raise ConfigError(f"override {key}={value!r}: expected {spec.describe()}")
            node[leaf] = value
            continue
        if leaf in node and not isinstance(node[leaf], dict):
            node[leaf] = _coerce(node[leaf], value, key, spec)
            continue
        # else: a key the schema knows but this config leaves unset
        if spec is None or spec.kind in ("dict", "section"):
            known = set(node) | set(schema_keys(config, ".".join(parts[:-1])))
            valid = ", ".join(sorted(".".join([*parts[:-1], k]) for k in known))
            raise ConfigError(
                f"bad override {item!r}: unknown key {key!r}; valid keys here: {valid}"
            )
        node[leaf] = _coerce(_EXAMPLE[spec.kind], value, key, spec)
    return config
