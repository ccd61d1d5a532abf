"""The config schema: every key of every section, its type and its allowed range, in one place.

A run's config is checked against this schema before any data is loaded or anything is
compiled (:func:`validate_config`). The common sections (top level, ``data``, ``train``,
``plot``) are described here; each model's ``model`` section is described beside its builder
and registered with it (:func:`flowzoo.zoo.register_model`'s ``schema``). An unknown key is an
error, so a typo fails before the run instead of being ignored; an error names the key, the
value and what is allowed.

Conventions: ``0`` disables periodic work where the doc says so (``train.eval_every``,
``train.checkpoint_every``); counts are never negative; real numbers must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ._config import ConfigError


class Spec(NamedTuple):
    """One config key: its kind, range and choices.

    ``kind``: ``"int"``, ``"float"`` (finite; ints accepted), ``"bool"``, ``"str"``, ``"ints"``
    / ``"floats"`` (a list of those, ``length`` = allowed list lengths), ``"width"`` (an int or a
    one-element list of one), ``"dict"`` (free keyword arguments checked by ``check``).
    ``lo``/``hi``: bounds of the value (or of each list item); ``lo_open``/``hi_open`` make them
    strict. ``choices``: allowed values (strings). ``required``: must be present.
    ``check``: extra test of the value, returning an error text or ``None``.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[Any, ...] = ()
    length: tuple[int, int] | None = None
    required: bool = False
    check: Callable[[Any], str | None] | None = None

    def describe(self) -> str:
        """What is allowed, in words (``"an integer >= 1"``)."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = {
            "int": "an integer",
            "float": "a finite number",
            "bool": "true or false",
            "str": "a string",
            "ints": "a list of integers",
            "floats": "a list of finite numbers",
            "width": "an integer (or a list holding one)",
            "dict": "a dict of keyword arguments",
            "section": "a section (a dict of keys)",
        }[self.kind]
        bounds = _bounds_text(self)
        if self.kind in ("ints", "floats"):
            n = self.length or (1, 1 << 30)
            count = f"{n[0]}" if n[0] == n[1] else f"at least {n[0]}" if n[1] >= 1 << 30 else f"{n}"
            return f"{noun} ({count} entries){', each ' + bounds if bounds else ''}"
        return f"{noun}{' ' + bounds if bounds else ''}"


def _bounds_text(spec: Spec) -> str:
    fmt = (lambda v: str(int(v))) if spec.kind in ("int", "ints", "width") else (lambda v: f"{v:g}")
    lo = None if spec.lo is None else fmt(spec.lo)
    hi = None if spec.hi is None else fmt(spec.hi)
    if lo is not None and hi is not None:
        return f"in {'(' if spec.lo_open else '['}{lo}, {hi}{')' if spec.hi_open else ']'}"
    if lo is not None:
        return f"{'>' if spec.lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if spec.hi_open else '<='} {hi}"
    return ""


def Int(lo: int | None = 0, hi: int | None = None, **kw) -> Spec:  # noqa: N802
    """An integer in ``[lo, hi]`` (default: >= 0)."""
    return Spec("int", lo, hi, **kw)


def Float(lo: float | None = None, hi: float | None = None, **kw) -> Spec:  # noqa: N802
    """A finite real number in the given range."""
    return Spec("float", lo, hi, **kw)


def Positive(**kw) -> Spec:  # noqa: N802
    """A finite real number > 0."""
    return Spec("float", 0.0, None, lo_open=True, **kw)


def Choice(*choices: str, **kw) -> Spec:  # noqa: N802
    """One of the given strings."""
    return Spec("str", choices=tuple(choices), **kw)


def Widths(**kw) -> Spec:  # noqa: N802
    """A list of layer widths (integers >= 1, at least one)."""
    return Spec("ints", 1, None, length=(1, 1 << 30), **kw)


BOOL = Spec("bool")
STR = Spec("str")
SEED = Int(0, 2**63 - 1)

Schema = Mapping[str, Spec]
"""A section's keys; a section check (:class:`SectionCheck`) may add cross-key rules."""


class SectionCheck(NamedTuple):
    """A rule over several keys of one section: ``test(section) -> error text or None``."""

    keys: tuple[str, ...]
    test: Callable[[dict[str, Any]], str | None]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _in_range(spec: Spec, v: float) -> bool:
    if spec.lo is not None and (v <= spec.lo if spec.lo_open else v < spec.lo):
        return False
    return spec.hi is None or not (v >= spec.hi if spec.hi_open else v > spec.hi)


def _value_ok(spec: Spec, v: Any) -> bool:
    kind = spec.kind
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str) and (not spec.choices or v in spec.choices)
    if kind in ("dict", "section"):
        return isinstance(v, dict)
    if kind == "width":
        if isinstance(v, list | tuple) and len(v) == 1:
            v = v[0]
        return _is_int(v) and _in_range(spec, v)
    if kind in ("ints", "floats"):
        if not isinstance(v, list | tuple):
            return False
        lo, hi = spec.length or (0, 1 << 30)
        item_ok = _is_int if kind == "ints" else _is_real
        return lo <= len(v) <= hi and all(item_ok(x) and _in_range(spec, x) for x in v)
    ok = _is_int(v) if kind == "int" else _is_real(v)
    return ok and _in_range(spec, v)


def check_section(prefix: str, schema: Schema, node: Any, checks=(), where: str = "") -> None:
    """Check one section against its schema; raise :class:`ConfigError` naming the bad key."""
    if not isinstance(node, dict):
        raise ConfigError(f"bad config: {prefix} must be a section (a dict), got {node!r}")
    unknown = sorted(set(node) - set(schema))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        valid = ", ".join(sorted(schema))
        raise ConfigError(f"bad config: unknown key {key}{where}; valid keys: {valid}")
    for name, spec in schema.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in node:
            if spec.required:
                raise ConfigError(f"bad config: {key} is required{where} ({spec.describe()})")
            continue
        value = node[name]
        if not _value_ok(spec, value):
            raise ConfigError(f"bad config: {key}={value!r}{where}; expected {spec.describe()}")
        if spec.check is not None and (problem := spec.check(value)):
            raise ConfigError(f"bad config: {key}={value!r}{where}: {problem}")
    for rule in checks:
        if all(k in node for k in rule.keys) and (problem := rule.test(node)):
            keys = ", ".join(f"{prefix}.{k}" for k in rule.keys)
            raise ConfigError(f"bad config: {keys}{where}: {problem}")


def kwargs_of(fn: Callable, skip: tuple[str, ...] = ()) -> Callable[[Any], str | None]:
    """A ``check`` for a ``dict`` key: its keys must be keyword parameters of ``fn``."""
    import inspect

    params = inspect.signature(fn).parameters
    names = sorted(n for n, p in params.items() if p.default is not p.empty and n not in skip)

    def check(value: dict) -> str | None:
        bad = sorted(set(value) - set(names))
        if bad:
            return f"{bad[0]!r} is not an option of {fn.__name__}(); options: {', '.join(names)}"
        return None

    return check


def ordered(lo_key: str, hi_key: str) -> SectionCheck:
    """The rule ``section[lo_key] < section[hi_key]``."""
    return SectionCheck(
        (lo_key, hi_key),
        lambda s: None if s[lo_key] < s[hi_key] else f"{lo_key} must be < {hi_key}",
    )


# --------------------------------------------------------------------------- sections


def _plain_name(v: str) -> str | None:
    if not v or "/" in v or "\\" in v or v in (".", ".."):
        return "must be a non-empty plain directory name (no '/')"
    return None


TOP: Schema = {
    "name": Spec("str", required=True, check=_plain_name),
    "seed": SEED,
    "data": Spec("section", required=True),
    "model": Spec("section", required=True),
    "train": Spec("section", required=True),
    "plot": Spec("section"),
}


def _data_names() -> tuple[str, ...]:
    from .. import data as fzdata

    return (*sorted(fzdata.TOY_TARGETS), *sorted(fzdata.IMAGE_LEVELS), "file")


def _data_schema() -> Schema:
    return {
        "name": Spec("str", choices=_data_names(), required=True),
        "noise": Float(0.0),
        "n_train": Int(2),
        "n_test": Int(1),
        "path": STR,
        "test_fraction": Float(0.0, 1.0, lo_open=True, hi_open=True),
        "standardize": BOOL,
        "pad_to": Int(0),
    }


DATA_CHECKS = (
    SectionCheck(
        ("name", "path"),
        lambda s: (
            "data.name='file' needs data.path=/path/to/array.npy"
            if s["name"] == "file" and not s["path"]
            else None
        ),
    ),
)

TRAIN: Schema = {
    "steps": Int(0, required=True),
    "batch_size": Int(1, required=True),
    "lr": Positive(required=True),
    "warmup_steps": Int(0),
    "final_lr_fraction": Float(0.0, 1.0),
    "grad_clip": Float(0.0),
    "weight_decay": Float(0.0),
    "ema_decay": Float(0.0, 1.0, hi_open=True),
    "ema_warmup": BOOL,
    "compute_dtype": Choice("float32", "bfloat16"),
    "data_parallel": BOOL,
    "steps_per_call": Int(1, required=True),
    "eval_every": Int(0, required=True),
    "checkpoint_every": Int(0, required=True),
    "keep_checkpoints": Int(1, required=True),
    "tensorboard": BOOL,
}
"""``eval_every``/``checkpoint_every``: 0 means only at the end; ``grad_clip`` 0 disables;
``weight_decay`` > 0 makes the optimiser AdamW (decoupled decay, scaled by the schedule);
``ema_decay`` 0 disables the EMA; ``ema_warmup`` ramps the decay up as
:func:`flowzoo.train.ema_warmup` does (no weight left on the initial params)."""

PLOT: Schema = {
    "n_samples": Int(1),
    "grid": Int(2, 2000),
    "temperature": Positive(),
    "quality_samples": Int(0),
}


def validate_config(config: Any) -> None:
    """Check every key of ``config`` against the schema; raise :class:`ConfigError` naming
    the first bad key, its value and what is allowed. Nothing is loaded or compiled."""
    from ._registry import MODEL_SCHEMAS, MODELS

    check_section("", TOP, config)
    check_section("data", _data_schema(), config["data"], DATA_CHECKS)
    check_section("train", TRAIN, config["train"])
    check_section("plot", PLOT, config.get("plot", {}))
    model = config["model"]
    name = model.get("name")
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(
            f"bad config: model.name={name!r} is not a model; available: {', '.join(sorted(MODELS))}"
        )
    schema = MODEL_SCHEMAS.get(name)
    if schema is not None:  # models registered without a schema are checked by their builder
        keys, checks = schema
        check_section("model", keys, model, checks, where=f" (model {name!r})")


def schema_of(config: dict[str, Any], key: str) -> Spec | None:
    """The :class:`Spec` of a dotted key (``"train.steps"``) for this config, or ``None``."""
    from ._registry import MODEL_SCHEMAS

    parts = key.split(".")
    if len(parts) == 1:
        return TOP.get(parts[0])
    if len(parts) != 2:
        return None
    section, leaf = parts
    if section == "model":
        schema = MODEL_SCHEMAS.get(config.get("model", {}).get("name"))
        return None if schema is None else schema[0].get(leaf)
    table = {"data": _data_schema(), "train": TRAIN, "plot": PLOT}.get(section)
    return None if table is None else table.get(leaf)


def schema_keys(config: dict[str, Any], section: str) -> list[str]:
    """The keys the schema allows in ``section`` (``""``: the top level) of this config."""
    from ._registry import MODEL_SCHEMAS

    if section == "model":
        schema = MODEL_SCHEMAS.get(config.get("model", {}).get("name"))
        return [] if schema is None else list(schema[0])
    table = {"": TOP, "data": _data_schema(), "train": TRAIN, "plot": PLOT}.get(section, {})
    return list(table)


# --------------------------------------------------------------------------- model pieces
# Keys shared by several model sections, used by the family modules' schemas.


def activation_spec() -> Spec:
    """A named activation (:data:`flowzoo.nets.ACTIVATIONS`)."""
    from ..nets import ACTIVATIONS

    return Choice(*ACTIVATIONS)


def solver_spec() -> Spec:
    """An ODE solver name (:data:`flowzoo.integrate.SOLVERS`)."""
    from ..integrate import SOLVERS

    return Choice(*SOLVERS)


TOLERANCE = Float(0.0, 1.0, lo_open=True)
"""A relative or absolute ODE solver tolerance, in (0, 1]."""


def unet_keys() -> dict[str, Spec]:
    """Keys of the UNet a continuous-time model builds for images (:func:`flowzoo.nets.unet`):
    ``channels`` per level, ``num_blocks`` per level, ``attention_heads``, ``conv``,
    ``dropout``, ``embed_dim``."""
    return {
        "channels": Widths(),
        "num_blocks": Widths(),
        "attention_heads": Int(0),
        "conv": Choice("im2col", "xla"),
        "dropout": Float(0.0, 1.0, hi_open=True),
        "embed_dim": Int(1),
    }


def image_keys(*preprocess: str) -> dict[str, Spec]:
    """Keys of models that can wrap quantised images: ``data_levels`` (filled in by
    ``flowzoo train`` for image data), ``preprocess`` and the logit ``alpha``."""
    return {
        "data_levels": Int(0),
        "preprocess": Choice(*preprocess),
        "alpha": Float(0.0, 0.5, lo_open=True, hi_open=True),
    }
