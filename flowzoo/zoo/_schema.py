"""The config schema: every key of every section, its type, its allowed range and its
default, in one place.

A run's config is completed from this schema (:func:`complete_config`: each key it leaves
out that has a default gets that default) and checked against it (:func:`validate_config`)
before any data is loaded or anything is compiled. The common sections (top level,
``data``, ``train``, ``plot``) are described here; each model's ``model`` section is
described beside its builder and registered with it (:func:`flowzoo.zoo.register_model`'s
``schema``). The functions here take that table of registered models as an argument
(``models``: model name -> :class:`~flowzoo.zoo.ModelEntry`). An unknown key is an error,
so a typo fails before the run instead of being ignored; an error names the key, the
value and what is allowed.

The keys of the ``data`` section depend on the data set (:func:`data_schema`): a toy
target uses ``n_train``, ``n_test``, ``standardize`` and, when it takes one, ``noise``; an
image set ``n_test`` and ``pad_to``; ``"file"`` uses ``path``, ``test_fraction`` and
``standardize``. A key of another data set does not apply to the run, and
:func:`applicable_config` drops it (a config made from the two-moons default with another
``data.name`` carries some).

Conventions: ``0`` disables periodic work where the doc says so (``train.eval_every``,
``train.checkpoint_every``); counts are never negative; real numbers must be finite.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Mapping
from typing import Any, Protocol

from .. import data as fzdata
from ..integrate import SOLVERS
from ..nets import ACTIVATIONS
from ._spec import (
    Bool,
    Choice,
    ConfigError,
    Float,
    Int,
    Positive,
    Schema,
    SectionCheck,
    Seed,
    Spec,
    Widths,
    complete_section,
)


class ModelSchema(Protocol):
    """What the schema reads of a registered model (:class:`~flowzoo.zoo.ModelEntry`)."""

    schema: Schema | None
    checks: tuple[SectionCheck, ...]


Models = Mapping[str, ModelSchema]
"""The registered models, by ``model.name``."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _in_range(spec: Spec, v: float) -> bool:
    if spec.lo is not None and (v <= spec.lo if spec.lo_open else v < spec.lo):
        return False
    return spec.hi is None or not (v >= spec.hi if spec.hi_open else v > spec.hi)


def value_ok(spec: Spec, v: Any) -> bool:
    """Whether ``v`` has the kind and range ``spec`` allows (its ``check`` aside)."""
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
        if not value_ok(spec, value):
            raise ConfigError(f"bad config: {key}={value!r}{where}; expected {spec.describe()}")
        if spec.check is not None and (problem := spec.check(value)):
            raise ConfigError(f"bad config: {key}={value!r}{where}: {problem}")
    for rule in checks:
        if all(k in node for k in rule.keys) and (problem := rule.test(node)):
            keys = ", ".join(f"{prefix}.{k}" for k in rule.keys)
            raise ConfigError(f"bad config: {keys}{where}: {problem}")


# --------------------------------------------------------------------------- sections


def _plain_name(v: str) -> str | None:
    if not v or "/" in v or "\\" in v or v in (".", ".."):
        return "must be a non-empty plain directory name (no '/')"
    return None


TOP: Schema = {
    "name": Spec("str", required=True, check=_plain_name),
    "seed": Seed(default=0),
    "data": Spec("section", required=True),
    "model": Spec("section", required=True),
    "train": Spec("section", required=True),
    "plot": Spec("section", default={}),
}

_N_TEST = Int(1, default=5000)
"""Toy targets: test points drawn; image sets: the first ``n_test`` images of the fixed test
split (5000 keeps all of digits' and mnist's)."""

_STANDARDIZE = Bool(default=True)

TOY_DATA: Schema = {
    "n_train": Int(2, default=20000),
    "n_test": _N_TEST,
    "standardize": _STANDARDIZE,
}
"""The data keys of a toy target (:data:`flowzoo.data.TOY_TARGETS`); those that take a
``noise`` level also have ``noise``, whose default is the target's own."""

IMAGE_DATA: Schema = {"n_test": _N_TEST, "pad_to": Int(0, default=0)}
"""The data keys of an image set (:data:`flowzoo.data.IMAGE_LEVELS`); ``pad_to`` 0 keeps the
images' size. Images are never standardised."""

FILE_DATA: Schema = {
    "path": Spec("str", default=""),
    "test_fraction": Float(0.0, 1.0, lo_open=True, hi_open=True, default=0.1),
    "standardize": _STANDARDIZE,
}
"""The data keys of ``data.name="file"``: ``path`` (a ``.npy``/``.npz`` of shape ``(n, dim)``),
the held-out share ``test_fraction`` (last rows after a seeded shuffle)."""

DATASET_DATA: Schema = {
    "path": Spec("str", default=""),
    "n_test": Int(1, default=10000),
    "stream": Bool(default=True),
    "flip": Bool(default=False),
    "workers": Int(0, default=0),
}
"""The data keys of a data set read from local files (:data:`flowzoo.data.DATASETS`):
``path`` (required), the first ``n_test`` test images evaluated (10000: all of CIFAR's),
``stream`` (read batches from a memory map on host workers,
:func:`flowzoo.data.streamed_batches`; ``false`` holds the training set on the device),
``flip`` (random horizontal flips of training images, a pure function of the seed and the
step; needs ``stream``) and ``workers`` (host reader threads; 0: one per core). Some sets
add their reader's options (:data:`DATASET_OPTIONS`)."""

DATASET_OPTIONS: Schema = {
    "image_size": Int(0, default=0),
    "crop": Choice("center", "resize", default="center"),
    "test_fraction": Float(0.0, 1.0, lo_open=True, hi_open=True, default=0.1),
}
"""Reader options of :func:`flowzoo.data.dataset` that the config exposes, for the data sets
whose reader takes them (``image_folder``: ``image_size`` (required), ``crop``,
``test_fraction``; ``image_array``: ``test_fraction``)."""

_ANY_DATA: Schema = {
    **TOY_DATA,
    **IMAGE_DATA,
    **FILE_DATA,
    **DATASET_DATA,
    **DATASET_OPTIONS,
    "noise": Float(0.0),
}


def _data_names() -> tuple[str, ...]:
    return (
        *sorted(fzdata.TOY_TARGETS),
        *sorted(fzdata.IMAGE_LEVELS),
        *sorted(fzdata.DATASETS),
        "file",
    )


def data_schema(name: Any) -> Schema:
    """The keys of the ``data`` section for data set ``name`` (every data set's keys when
    ``name`` names none, so that the error is about the name)."""
    if name == "file":
        keys = FILE_DATA
    elif isinstance(name, str) and name in fzdata.DATASETS:
        options = fzdata.DATASETS[name].options
        keys = {**DATASET_DATA, **{k: v for k, v in DATASET_OPTIONS.items() if k in options}}
    elif isinstance(name, str) and name in fzdata.IMAGE_LEVELS:
        keys = IMAGE_DATA
    elif isinstance(name, str) and name in fzdata.TOY_TARGETS:
        noise = inspect.signature(fzdata.TOY_TARGETS[name]).parameters.get("noise")
        keys = (
            TOY_DATA if noise is None else {"noise": Float(0.0, default=noise.default), **TOY_DATA}
        )
    else:
        keys = _ANY_DATA
    return {"name": Spec("str", choices=_data_names(), required=True), **keys}


def _path_missing(s: dict[str, Any]) -> str | None:
    if s["path"]:
        return None
    if s["name"] == "file":
        return "data.name='file' needs data.path=/path/to/array.npy"
    info = fzdata.DATASETS.get(s["name"])
    return None if info is None else f"data.name={s['name']!r} needs data.path=PATH ({info.path})"


def _dataset_checks(s: dict[str, Any]) -> str | None:
    if s["name"] not in fzdata.DATASETS:
        return None
    if s.get("flip") and not s.get("stream"):
        return "data.flip=true needs data.stream=true (flips are drawn on the host workers)"
    if "image_size" in fzdata.DATASETS[s["name"]].required and not s.get("image_size"):
        return f"data.name={s['name']!r} needs data.image_size (pixels of the square images)"
    return None


DATA_CHECKS = (
    SectionCheck(("name", "path"), _path_missing),
    SectionCheck(("name",), _dataset_checks),
)

TRAIN: Schema = {
    "steps": Int(0, required=True),
    "batch_size": Int(1, required=True),
    "lr": Positive(required=True),
    "warmup_steps": Int(0, default=100),
    "final_lr_fraction": Float(0.0, 1.0, default=0.01),
    "grad_clip": Float(0.0, default=1.0),
    "weight_decay": Float(0.0, default=0.0),
    "ema_decay": Float(0.0, 1.0, hi_open=True, default=0.0),
    "ema_warmup": Bool(default=False),
    "compute_dtype": Choice("float32", "bfloat16", default="float32"),
    "data_parallel": Bool(default=False),
    "param_sharding": Choice("replicated", "fsdp", default="replicated"),
    "mesh_shape": Spec(
        "ints",
        1,
        None,
        length=(0, 2),
        check=lambda v: None if len(v) in (0, 2) else "give [D, F] (two integers) or []",
        default=[],
    ),
    "steps_per_call": Int(1, required=True),
    "eval_every": Int(0, required=True),
    "checkpoint_every": Int(0, required=True),
    "keep_checkpoints": Int(1, required=True),
    "tensorboard": Bool(default=False),
}
"""``eval_every``/``checkpoint_every``: 0 means only at the end; ``grad_clip`` 0 disables;
``weight_decay`` > 0 makes the optimiser AdamW (decoupled decay, scaled by the schedule);
``ema_decay`` 0 disables the EMA; ``ema_warmup`` ramps the decay up as
:func:`flowzoo.train.ema_warmup` does (no weight left on the initial params);
``param_sharding`` ``"fsdp"`` splits params, optimizer state and EMA over the mesh's
``fsdp`` axis (:class:`flowzoo.train.DataParallel`); ``mesh_shape`` ``[D, F]`` trains on a
``D x F`` ``("data", "fsdp")`` mesh of all devices (:func:`flowzoo.train.make_mesh`), ``[]``
on ``[1, N]`` with ``fsdp``, else as ``data_parallel`` says."""

QUALITY_SAMPLES = 1000
"""Default ``plot.quality_samples``: generated images scored by the image-quality metric."""

PLOT: Schema = {
    "n_samples": Int(1, default=5000),
    "grid": Int(2, 2000, default=200),
    "temperature": Positive(default=1.0),
    "quality_samples": Int(0, default=QUALITY_SAMPLES),
    "fid_samples": Int(0, default=10_000),
    "sample_batch": Int(0, default=0),
}
"""``sample_batch``: points drawn per compiled sampling call (:func:`flowzoo.zoo.sample_batch`;
0: 1,000 for images, all at once for vector data)."""


def _model_schema(config: Any, models: Models) -> ModelSchema | None:
    """The registry entry of ``config["model"]["name"]`` when it has a schema, else ``None``."""
    model = config.get("model") if isinstance(config, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    entry = models.get(name) if isinstance(name, str) else None
    return entry if entry is not None and entry.schema is not None else None


def _section_schema(config: Any, section: str, models: Models) -> Schema | None:
    """The schema of ``section`` (``""``: the top level) of this config, or ``None``."""
    if section == "model":
        entry = _model_schema(config, models)
        return None if entry is None else entry.schema
    if section == "data":
        data = config.get("data") if isinstance(config, dict) else None
        return data_schema(data.get("name") if isinstance(data, dict) else None)
    return {"": TOP, "train": TRAIN, "plot": PLOT}.get(section)


def applicable_config(config: Any) -> Any:
    """A copy of ``config`` without the ``data`` keys that belong only to other data sets
    (:func:`data_schema`); unknown keys stay, for :func:`validate_config` to refuse."""
    config = copy.deepcopy(config)
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, dict):
        own = data_schema(data.get("name"))
        other = set(_ANY_DATA) - set(own)
        config["data"] = {k: v for k, v in data.items() if k not in other}
    return config


def complete_config(config: Any, models: Models) -> Any:
    """:func:`applicable_config` of ``config`` with every key it leaves out that has a
    default in the schema set to that default (``plot`` included); sections that are not
    dicts, and a model without a schema, are left as they are."""
    config = applicable_config(config)
    if not isinstance(config, dict):
        return config
    config = complete_section(TOP, config)
    for section in ("data", "train", "plot", "model"):
        schema = _section_schema(config, section, models)
        if schema is not None and isinstance(config.get(section), dict):
            config[section] = complete_section(schema, config[section])
    return config


def validate_config(config: Any, models: Models) -> None:
    """Check ``config`` as a run uses it (:func:`complete_config`: the keys that apply to
    it, with their defaults) against the schema, the model section against its entry in
    ``models``; raise :class:`ConfigError` naming the first bad key, its value and what is
    allowed. Nothing is loaded or compiled."""
    config = complete_config(config, models)
    check_section("", TOP, config)
    check_section("data", _section_schema(config, "data", models), config["data"], DATA_CHECKS)
    check_section("train", TRAIN, config["train"])
    check_section("plot", PLOT, config["plot"])
    model = config["model"]
    name = model.get("name")
    if not isinstance(name, str) or name not in models:
        raise ConfigError(
            f"bad config: model.name={name!r} is not a model; available: {', '.join(sorted(models))}"
        )
    entry = _model_schema(config, models)
    if entry is not None:  # models registered without a schema are checked by their builder
        check_section("model", entry.schema, model, entry.checks, where=f" (model {name!r})")


def schema_of(config: dict[str, Any], key: str, models: Models) -> Spec | None:
    """The :class:`Spec` of a dotted key (``"train.steps"``) for this config, or ``None``."""
    parts = key.split(".")
    if len(parts) == 1:
        return TOP.get(parts[0])
    if len(parts) != 2:
        return None
    schema = _section_schema(config, parts[0], models)
    return None if schema is None else schema.get(parts[1])


def schema_keys(config: dict[str, Any], section: str, models: Models) -> list[str]:
    """The keys the schema allows in ``section`` (``""``: the top level) of this config
    (empty for a section without a schema)."""
    return list(_section_schema(config, section, models) or {})


# --------------------------------------------------------------------------- model pieces
# Keys shared by several model sections, used by the family modules' schemas.


def activation_spec(**kw) -> Spec:
    """A named activation (:data:`flowzoo.nets.ACTIVATIONS`)."""
    return Choice(*ACTIVATIONS, **kw)


def solver_spec(**kw) -> Spec:
    """An ODE solver name (:data:`flowzoo.integrate.SOLVERS`)."""
    return Choice(*SOLVERS, **kw)


def unet_keys() -> dict[str, Spec]:
    """Keys of the UNets a continuous-time model builds for images. ``net: unet``
    (:func:`flowzoo.nets.unet`): ``channels`` per level (32, 64), ``num_blocks`` per level
    (one entry: the same at every level; default 1), ``attention_heads`` (0), ``embed_dim``
    (64). ``net: adm_unet`` (:func:`flowzoo.nets.adm_unet`, torchcfm's CIFAR-10 UNet):
    ``num_channels`` (128), ``channel_mult`` ([1, 2, 2, 2]), ``num_res_blocks`` (2),
    ``num_heads`` (4), ``num_head_channels`` (64; -1: ``num_heads`` heads) and
    ``attention_resolutions`` ([16]). Both: ``conv`` (``"im2col"``), ``dropout`` (0)."""
    return {
        "channels": Widths(default=[32, 64]),
        "num_blocks": Widths(default=[1]),
        "attention_heads": Int(0, default=0),
        "conv": Choice("im2col", "xla", default="im2col"),
        "dropout": Float(0.0, 1.0, hi_open=True, default=0.0),
        "embed_dim": Int(1, default=64),
        # net "adm_unet" (flowzoo.nets.adm_unet, torchcfm's CIFAR-10 UNet); dropout, conv
        # and remat are shared with the UNet
        "num_channels": Int(1, default=128),
        "channel_mult": Spec(
            "floats", 0.0, None, lo_open=True, length=(1, 8), default=[1, 2, 2, 2]
        ),
        "num_res_blocks": Int(1, default=2),
        "num_heads": Int(1, default=4),
        "num_head_channels": Int(-1, default=64),
        "attention_resolutions": Spec("ints", 1, None, length=(1, 8), default=[16]),
    }


def image_keys(*preprocess: str) -> dict[str, Spec]:
    """Keys of models that can wrap quantised images: ``data_levels`` (filled in by
    ``flowzoo train`` for image data; 0: none), ``preprocess`` (one of ``preprocess``, the
    first by default) and the logit ``alpha`` (0.05)."""
    return {
        "data_levels": Int(0, default=0),
        "preprocess": Choice(*preprocess, default=preprocess[0]),
        "alpha": Float(0.0, 0.5, lo_open=True, hi_open=True, default=0.05),
    }
