"""Experiment configs: nested dicts, the built-in default, strict ``key=value`` overrides.

A config is a plain nested ``dict`` (JSON-serialisable). An experiment is a Python file with
``get_config() -> dict``; ``flowzoo train NAME`` finds ``experiments/NAME.py``.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
from pathlib import Path
from typing import Any

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
            "scale_bound": 2.0,  # tanh-bounded log-scale; 3.0 showed loss spikes on some seeds
        },
        "train": {
            "steps": 2000,
            "batch_size": 256,
            "lr": 1e-3,
            "warmup_steps": 100,
            "final_lr_fraction": 0.01,  # cosine decay to lr * this
            "grad_clip": 1.0,
            "ema_decay": 0.0,  # 0 disables EMA
            "compute_dtype": "float32",  # "bfloat16": mixed precision (f32 params and loss)
            "data_parallel": False,  # True: split each batch over all devices (a mesh)
            "steps_per_call": 100,
            "eval_every": 500,
            "checkpoint_every": 500,
            "keep_checkpoints": 3,
        },
        "plot": {"n_samples": 5000, "grid": 200},
    }


def experiment_dirs() -> list[Path]:
    """Where ``flowzoo train NAME`` looks for ``NAME.py``: ``./experiments`` then the repo's."""
    dirs = [Path.cwd() / "experiments", Path(flowzoo.__file__).resolve().parents[1] / "experiments"]
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


def load_experiment(name: str | None) -> dict[str, Any]:
    """The config of experiment ``name`` (a name in ``experiments/`` or a path to a ``.py``).

    ``None`` or ``"default"`` gives :func:`default_config`.
    """
    if name in (None, "default"):
        return default_config()
    path = Path(name)
    if path.suffix != ".py":
        found = [d / f"{name}.py" for d in experiment_dirs() if (d / f"{name}.py").is_file()]
        if not found:
            raise ConfigError(
                f"unknown experiment {name!r}; available: {', '.join(available_experiments())}"
            )
        path = found[0]
    elif not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"flowzoo_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a broken experiment file: say which and why
        raise ConfigError(
            f"cannot load experiment {str(path)!r}: {type(err).__name__}: {err}"
        ) from err
    if not hasattr(module, "get_config"):
        raise ConfigError(f"experiment {str(path)!r} defines no get_config()")
    config = module.get_config()
    if not isinstance(config, dict):
        raise ConfigError(f"get_config() of {str(path)!r} must return a dict")
    return config


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string such as two_moons


def _coerce(old: Any, new: Any, key: str) -> Any:
    if isinstance(old, bool):
        if isinstance(new, str) and new.lower() in ("true", "false", "yes", "no", "1", "0"):
            return new.lower() in ("true", "yes", "1")
        if isinstance(new, bool):
            return new
        if isinstance(new, int) and new in (0, 1):
            return bool(new)
    elif isinstance(old, int) and isinstance(new, int) and not isinstance(new, bool):
        return new
    elif isinstance(old, float) and isinstance(new, int | float) and not isinstance(new, bool):
        return float(new)
    elif isinstance(old, str):
        return str(new)
    elif isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return list(new)
    elif old is None:
        return new
    raise ConfigError(
        f"override {key}={new!r}: expected a value of type {type(old).__name__} "
        f"(current value {old!r})"
    )


def apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """A copy of ``config`` with ``["a.b=value", ...]`` applied; values parsed as Python literals.

    Keys must already exist and values must keep their type (ints widen to floats), so a
    typo fails loudly instead of being ignored.
    """
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
        if leaf not in node or isinstance(node[leaf], dict):
            valid = ", ".join(sorted(".".join([*parts[:-1], k]) for k in node))
            raise ConfigError(
                f"bad override {item!r}: unknown key {key!r}; valid keys here: {valid}"
            )
        node[leaf] = _coerce(node[leaf], _parse_value(text.strip()), key)
    return config


def validate_config(config: dict[str, Any]) -> None:
    """Check the values a run depends on; raise :class:`ConfigError` naming the bad key."""

    def need(cond: bool, key: str, what: str) -> None:
        if not cond:
            raise ConfigError(f"bad config: {key} {what}")

    for section in ("data", "model", "train"):
        need(isinstance(config.get(section), dict), section, "must be a section (dict)")
    t = config["train"]
    need(isinstance(config.get("name"), str) and config["name"] != "", "name", "must be a name")
    need(t["steps"] >= 0, "train.steps", "must be >= 0")
    need(t["batch_size"] >= 1, "train.batch_size", "must be >= 1")
    need(t["lr"] > 0, "train.lr", "must be > 0")
    need(t["steps_per_call"] >= 1, "train.steps_per_call", "must be >= 1")
    need(0.0 <= t.get("ema_decay", 0.0) < 1.0, "train.ema_decay", "must be in [0, 1)")
    need(t.get("grad_clip", 0.0) >= 0.0, "train.grad_clip", "must be >= 0 (0 disables)")
    need(
        t.get("compute_dtype", "float32") in ("float32", "bfloat16"),
        "train.compute_dtype",
        "must be 'float32' or 'bfloat16'",
    )
    need(
        "/" not in config["name"] and config["name"] not in (".", ".."),
        "name",
        "must be a plain directory name",
    )
