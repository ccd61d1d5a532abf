"""``train_and_evaluate(config, workdir)``: the function behind ``flowzoo train``.

A run directory holds ``run.json`` (config, data standardiser, event shape, version),
``metrics.jsonl``, ``checkpoints/``, ``summary.json``, ``samples.png``, ``density.png`` and
``.lock``, the lock that lets one process at a time train it (:func:`flowzoo.train.run_lock`).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowzoo

from .. import checkpoint as ckpt
from .. import data as fzdata
from .. import metrics, plots
from .._compile import jit as _jit
from ..malloc import loaded_allocator
from ..train import (
    DATA_AXIS,
    FSDP_AXIS,
    Checkpointing,
    DataParallel,
    Distributed,
    EmaDecay,
    Evaluation,
    NonFiniteError,
    TrainState,
    ema_warmup,
    fit,
    init_train_state,
    initialize_distributed,
    is_primary,
    json_safe,
    make_mesh,
    run_lock,
)
from ._config import complete_config, validate_config
from ._quality import image_classifier, image_quality
from ._registry import MODELS, Model, build_model, guidance_of
from ._schema import DATASET_OPTIONS, TRAIN, applicable_config
from ._spec import ConfigError, complete_section


def build_optimizer(config: dict[str, Any]) -> optax.GradientTransformation:
    """Adam with linear warm-up, cosine decay and optional global-norm clipping.

    ``train.weight_decay > 0`` gives AdamW (Loshchilov & Hutter 2019): each step also takes
    ``lr_t * weight_decay * p`` off every parameter, decoupled from the gradient's moments.
    Keys the train section leaves out take their schema defaults.
    """
    t = complete_section(TRAIN, config["train"])
    steps = max(int(t["steps"]), 1)
    warmup = min(int(t["warmup_steps"]), steps - 1) if steps > 1 else 0
    schedule = optax.warmup_cosine_decay_schedule(
        0.0 if warmup else t["lr"],
        t["lr"],
        warmup,
        steps,
        t["lr"] * t["final_lr_fraction"],
    )
    parts = [optax.clip_by_global_norm(t["grad_clip"])] if t["grad_clip"] > 0 else []
    decay = float(t["weight_decay"])
    adam = optax.adamw(schedule, weight_decay=decay) if decay > 0 else optax.adam(schedule)
    return optax.chain(*parts, adam)


def _streamed(config: dict[str, Any]) -> bool:
    """Whether the run's training batches stream from host memory (``data.stream``)."""
    d = config["data"]
    return d["name"] in fzdata.DATASETS and bool(d["stream"])


def _dataset_images(d: dict[str, Any]) -> fzdata.ImageData:
    """The ``data`` section's data set read from ``data.path`` (:func:`flowzoo.data.dataset`);
    the training split is a memory map when ``data.stream`` is set."""
    info = fzdata.DATASETS[d["name"]]
    options = {k: d[k] for k in DATASET_OPTIONS if k in info.options}
    if "workers" in info.options and d["workers"]:
        options["workers"] = d["workers"]
    return fzdata.dataset(d["name"], d["path"], mmap=bool(d["stream"]), **options)


def load_data(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` arrays in raw units, as the config describes (keys it leaves out
    take their schema defaults): float32 for vector data, the images' integer grey levels
    for image sets (a memory-mapped training split when ``data.stream`` is set)."""
    config = complete_config(config)
    d = config["data"]
    key = jax.random.key(config["seed"])
    if d["name"] in fzdata.DATASETS:  # read from local files in their published format
        images = _dataset_images(d)
        return images.train, np.asarray(images.test[: int(d["n_test"])])
    if _image_levels(config) is not None:  # uint8 NHWC images with a fixed split
        images = fzdata.image_dataset(d["name"], pad_to=d["pad_to"] or None)
        # data.n_test caps the evaluated test images (the first of the fixed split order), for
        # likelihoods too slow to evaluate on all of them; the default 5000 keeps every image
        return images.train, images.test[: int(d["n_test"])]
    if d["name"] == "file":
        if not d["path"]:
            raise ConfigError("data.name='file' needs data.path=/path/to/array.npy")
        x = fzdata.load_array(d["path"])
        if x.ndim != 2:
            raise fzdata.DataError(
                f"{d['path']}: expected an array of shape (n, dim), got {x.shape}; "
                "flatten each example first"
            )
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 7), len(x)))
        n_test = max(1, int(round(len(x) * d["test_fraction"])))
        if len(x) - n_test < 2:
            raise fzdata.DataError(f"{d['path']}: {len(x)} rows are too few to train on")
        return x[perm[n_test:]], x[perm[:n_test]]
    kwargs = {"noise": d["noise"]} if "noise" in d else {}  # the targets that take one
    ktr, kte = jax.random.split(jax.random.fold_in(key, 1))
    try:
        train = fzdata.toy(d["name"], ktr, d["n_train"], **kwargs)
        test = fzdata.toy(d["name"], kte, d["n_test"], **kwargs)
    except ValueError as err:
        raise ConfigError(f"data.name: {err}") from err
    return np.asarray(train), np.asarray(test)


def _image_levels(config: dict[str, Any]) -> int | None:
    """Grey levels of the config's image data set, or ``None`` for vector data."""
    name = str(config["data"]["name"]).lower()
    info = fzdata.DATASETS.get(name)
    return info.levels if info is not None else fzdata.IMAGE_LEVELS.get(name)


def _model_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``model.data_levels`` filled in for image data (a copy; not saved)."""
    levels = _image_levels(config)
    if levels is None:
        return config
    model = dict(config["model"])
    if model.get("data_levels") not in (None, 0, levels):
        raise ConfigError(
            f"model.data_levels={model['data_levels']} contradicts data.name="
            f"{config['data']['name']!r}, which has {levels} grey levels"
        )
    model["data_levels"] = levels
    return {**config, "model": model}


class Run(NamedTuple):
    """A trained run loaded from disk (see :func:`load_run`); ``config`` is its saved config
    completed from the schema (:func:`~flowzoo.zoo.complete_config`)."""

    config: dict[str, Any]
    model: Model
    params: Any
    standardizer: fzdata.Standardizer
    step: int

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Log-density in nats of raw-unit points ``(n, *event)``.

        Image runs: ``x`` holds grey levels ``0 .. L-1`` and the result is the dequantization
        bound on ``log P(x)`` in nats per image.
        """
        if self.model.distribution is None:
            raise ConfigError(f"model {self.config['model']['name']!r} has no tractable likelihood")
        levels = _image_levels(self.config)
        if levels is not None:  # integer grey levels 0..levels-1, checked (DataError if not)
            x = fzdata.check_images(x, levels, "eval data").astype(np.float32)
        batch = IMAGE_LOG_PROB_BATCH if levels is not None else VECTOR_LOG_PROB_BATCH
        return _raw_log_prob(self.model, self.params, self.standardizer, x, batch)

    def sample(self, key, n: int, temperature: float = 1.0) -> np.ndarray:
        """``n`` samples in raw units, drawn ``plot.sample_batch`` per compiled call
        (:func:`sample_batch`)."""
        return _raw_sample(
            self.model, self.params, self.standardizer, key, n, temperature,
            batch=sample_batch(self.config),
        )  # fmt: skip

    def fid(
        self, key, n: int, weights: str | os.PathLike | None = None, temperature: float = 1.0
    ) -> dict[str, Any]:
        """FID of ``n`` samples (drawn as :meth:`sample` draws them) against the training
        split of the run's data set (a data set read from files, :data:`flowzoo.data.DATASETS`;
        its statistics cached by :func:`flowzoo.data.dataset_fid_statistics`).

        ``weights``: the converted Inception weights (``flowzoo fid-weights convert``), else
        ``$FLOWZOO_FID_WEIGHTS``. Returns ``{"fid", "fid_samples", "fid_reference"}``, or
        ``{"fid": None, "fid_skipped": why}`` without weights. FID-10k and FID-50k are not
        comparable (the estimate is biased upwards at fewer samples): papers report FID-50k.
        """
        name = str(self.config["data"]["name"]).lower()
        if name not in fzdata.DATASETS:
            raise ConfigError(
                f"FID needs a data set read from files ({', '.join(fzdata.DATASETS)}); "
                f"this run trained on {name!r}"
            )
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
            raise ConfigError(f"FID needs at least 2 samples, got {n!r}")
        path = metrics.fid_weights_path(weights)
        if path is None:
            return {"fid": None, "fid_skipped": _NO_FID_WEIGHTS}
        return _fid_figures(self.config, self.sample(key, int(n), temperature), path)


IMAGE_SAMPLE_BATCH = 1000
"""Images drawn per compiled sampling call when ``plot.sample_batch`` is 0 (automatic)."""

VECTOR_LOG_PROB_BATCH = 8192
"""Points per compiled likelihood call of vector data (:meth:`Run.log_prob`, density grids)."""

IMAGE_LOG_PROB_BATCH = 250
"""Images per compiled likelihood call of :meth:`Run.log_prob`, and examples per chunk of the
train-time test NLL."""


def sample_batch(config: dict[str, Any]) -> int | None:
    """Points drawn per compiled sampling call for ``config``: ``plot.sample_batch`` when
    positive; when 0, :data:`IMAGE_SAMPLE_BATCH` for image data and ``None`` (all at once)
    for vector data.

    A draw of ``n <= batch`` is one call, ``model.sample(params, key, n)``; a larger one is
    ``ceil(n / batch)`` calls of ``batch`` points with keys ``fold_in(key, i)``, the last
    cut to ``n`` (one compiled program, whatever ``n``). A network's activations at once
    for 10,000 CIFAR-10 images would not fit a GPU's memory.
    """
    value = int(config["plot"]["sample_batch"])
    if value > 0:
        return value
    return IMAGE_SAMPLE_BATCH if _image_levels(config) is not None else None


def _raw_log_prob(model: Model, params, s, x, batch: int = VECTOR_LOG_PROB_BATCH) -> np.ndarray:
    fn = _jit(lambda p, v: model.distribution.log_prob(p, fzdata.standardize(s, v)))
    out = [np.asarray(fn(params, jnp.asarray(x[i : i + batch]))) for i in range(0, len(x), batch)]
    return np.concatenate(out) + float(fzdata.standardizer_log_det(s))


def _raw_sample(model, params, s, key, n, temperature=1.0, batch: int | None = None) -> np.ndarray:
    """``n`` samples in raw units, ``batch`` per compiled call (see :func:`sample_batch`)."""
    size = n if batch is None or n <= batch else batch
    fn = _jit(lambda p, k: model.sample(p, k, size, temperature=temperature))
    if size == n:
        return np.asarray(fzdata.unstandardize(s, fn(params, key)))
    keys = [jax.random.fold_in(key, i) for i in range(-(-n // size))]
    chunks = [np.asarray(fzdata.unstandardize(s, fn(params, k))) for k in keys]
    return np.concatenate(chunks)[:n]


def _chunked_nll(model: Model, x: jax.Array, chunk: int = IMAGE_LOG_PROB_BATCH):
    """``params -> mean(-log_prob(params, x))`` over ``x`` in jitted chunks of ``chunk``."""
    fn = _jit(lambda p, v: -jnp.sum(model.distribution.log_prob(p, v)))

    def nll(params):
        total = sum(fn(params, x[i : i + chunk]) for i in range(0, len(x), chunk))
        return total / len(x)

    return nll


def _identity_standardizer(dim_shape) -> fzdata.Standardizer:
    return fzdata.Standardizer(np.zeros(dim_shape, np.float32), np.ones(dim_shape, np.float32))


def _run_info(config, s, event_shape) -> dict[str, Any]:
    return {
        "config": config,
        "event_shape": list(event_shape),
        "standardizer": {
            "shift": np.asarray(s.shift).tolist(),
            "scale": np.asarray(s.scale).tolist(),
        },
        "flowzoo_version": flowzoo.__version__,
        "params_format": PARAMS_FORMAT,
    }


PARAMS_FORMAT = 5
"""What a run's parameters mean, recorded in ``run.json`` (one without the key is format 1).

Format 5: affine couplings multiply by the scale in the density direction
(``bijectors.affine_transformer``'s ``"density"`` orientation), and every
``bijectors.stack`` holds its per-layer params stacked along a leading layer axis, whatever
its size. Formats 2 to 4 hold the same params, some short stacks as a tuple of per-layer
params, which :func:`flowzoo.checkpoint.restore` stacks when it loads or resumes them.
Refused (:func:`_check_params_format`): coupling-flow runs of format 1, whose couplings
divided by the scale, and runs of a format newer than this one."""

_COUPLING_MODELS = ("realnvp", "maf", "glow", "realnvp_image", "image_coupling")
"""Models built from affine transformers, whose checkpoints format 1 reads differently."""


def _check_params_format(info: dict[str, Any], config: dict[str, Any], where: Path) -> None:
    """Refuse a run whose parameters this version would misread or cannot read: a format-1
    coupling flow, or a format newer than :data:`PARAMS_FORMAT`."""
    model = config.get("model", {}).get("name") if isinstance(config, dict) else None
    found = int(info.get("params_format", 1))
    if found > PARAMS_FORMAT:
        writer = info.get("flowzoo_version")
        writer = f"flowzoo {writer}" if writer else "a newer flowzoo"
        raise ConfigError(
            f"{where} holds params format {found}, written by {writer}; this flowzoo "
            f"{flowzoo.__version__} reads formats up to {PARAMS_FORMAT}: load it with {writer}"
        )
    if model in _COUPLING_MODELS and found < 2:
        raise ConfigError(
            f"{where} holds a {model} run of params format 1, whose "
            "affine couplings divided by the scale in the density direction; this version "
            "multiplies, so its checkpoints would describe another model. Retrain it (pass "
            "--name NEW_NAME, or delete the directory), or read it with the flowzoo version "
            "that wrote it"
        )


_RESUMABLE = {
    ("train", "steps_per_call"),
    ("train", "steps"),
    ("train", "eval_every"),
    ("train", "checkpoint_every"),
    ("train", "keep_checkpoints"),
    ("train", "data_parallel"),
    ("train", "param_sharding"),
    ("train", "mesh_shape"),
    ("train", "tensorboard"),
    ("model", "remat"),
    ("data", "workers"),
    ("plot", "n_samples"),
    ("plot", "grid"),
    ("plot", "temperature"),
    ("plot", "quality_samples"),
}


def _check_same_run(old: dict[str, Any], new: dict[str, Any], workdir: Path) -> None:
    """Refuse ``new`` (a completed config) unless it is the run ``old`` (a saved config,
    completed here: a key it lacks, or one added since it was written, has its default)."""
    old = complete_config(old)
    resumable = set(_RESUMABLE)
    guidance = MODELS[new["model"]["name"]].guidance
    if guidance is not None:  # the guide's keys leave the main model's training as it was
        resumable |= {("model", k) for k in guidance.keys}
    diffs = []
    for section in set(old) | set(new):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for k in set(a) | set(b):
                if a.get(k) != b.get(k) and (section, k) not in resumable:
                    diffs.append(f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}")
        elif a != b:
            diffs.append(f"{section}: {a!r} -> {b!r}")
    if diffs:
        raise ConfigError(
            f"{workdir} holds a run with a different config ({'; '.join(sorted(diffs))}); "
            "pass --name NEW_NAME for a new run, or delete that directory to start over"
        )


def _run_mesh(config: dict[str, Any], mesh: Any) -> Any:
    """The mesh ``fit`` trains on: the given one; else a ``train.mesh_shape`` ``("data",
    "fsdp")`` mesh of all devices when that is set or ``train.param_sharding`` is
    ``"fsdp"`` (default shape ``[1, N]``); else all devices on ``data`` when
    ``train.data_parallel`` is set or several processes run; else ``None`` (one device)."""
    t = config["train"]
    if mesh is None and (t["mesh_shape"] or t["param_sharding"] == "fsdp"):
        try:
            mesh = make_mesh(tuple(t["mesh_shape"]) or None, param_sharding=t["param_sharding"])
        except ValueError as err:
            raise ConfigError(f"bad config: train.mesh_shape={t['mesh_shape']!r}: {err}") from err
    if mesh is None and (t["data_parallel"] or jax.process_count() > 1):
        mesh = "auto"
    n = jax.device_count() if mesh == "auto" else (1 if mesh is None else mesh.size)
    if config["train"]["batch_size"] % n:
        raise ConfigError(
            f"train.batch_size {config['train']['batch_size']} does not divide evenly over "
            f"the {n} devices of the data-parallel mesh; use a multiple of {n}"
        )
    return mesh


def _compute_dtype(config: dict[str, Any]) -> str | None:
    """``train.compute_dtype`` for ``fit``: ``None`` for float32 (the params' dtype)."""
    dtype = config["train"]["compute_dtype"]
    return None if dtype == "float32" else dtype


class RunData(NamedTuple):
    """The data of a run: raw splits, the standardiser and the standardised splits.

    ``train_std`` is the training split as the batches are drawn from it: float32 on the
    device, or for streamed data (``data.stream``) the raw integer images on the host,
    which the input pipeline casts to float32 batch by batch."""

    train_x: np.ndarray
    test_x: np.ndarray
    standardizer: fzdata.Standardizer
    train_std: np.ndarray
    test_std: jax.Array
    event_shape: tuple[int, ...]
    levels: int | None


def _check_resume(config: dict[str, Any], workdir: Path) -> None:
    """Refuse to reuse ``workdir`` for a different run or for fewer steps than it holds."""
    info_path = workdir / "run.json"
    if not info_path.exists():
        return
    try:
        info = json.loads(info_path.read_text())
        old = info["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{info_path} is unreadable ({err}); move the directory away") from err
    _check_same_run(old, config, workdir)
    _check_params_format(info, old, workdir)
    done = ckpt.latest_step(workdir / "checkpoints")
    if done is not None and done > config["train"]["steps"]:
        raise ConfigError(
            f"{workdir} already holds {done} training steps, more than train.steps="
            f"{config['train']['steps']}; raise train.steps or use another --name"
        )


def prepare_data(config: dict[str, Any]) -> RunData:
    """Load the config's data and standardise it (images are never standardised)."""
    config = complete_config(config)
    train_x, test_x = load_data(config)
    fzdata.check_batch(train_x, train_x.shape[1:], "training data")
    event_shape = tuple(train_x.shape[1:])
    levels = _image_levels(config)
    if levels is None and config["data"]["standardize"]:
        s = fzdata.fit_standardizer(train_x)
    else:
        s = _identity_standardizer(event_shape)
    s = fzdata.Standardizer(np.asarray(s.shift, np.float32), np.asarray(s.scale, np.float32))
    # streamed images stay integers (the standardiser is the identity for images)
    train_std = train_x if _streamed(config) else np.asarray(fzdata.standardize(s, train_x))
    if config["train"]["batch_size"] > len(train_std):
        raise ConfigError(
            f"train.batch_size {config['train']['batch_size']} exceeds the {len(train_std)} "
            "training rows"
        )
    test_std = jnp.asarray(fzdata.standardize(s, test_x))
    return RunData(train_x, test_x, s, train_std, test_std, event_shape, levels)


def _write_run_info(workdir: Path, config: dict[str, Any], data: RunData) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if is_primary():
        info_path = workdir / "run.json"
        tmp = info_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_run_info(config, data.standardizer, data.event_shape), indent=2))
        os.replace(tmp, info_path)


class _Evaluator(NamedTuple):
    evaluate: Any  # TrainState -> metrics dict, or None without a likelihood
    test_nll: Any  # params -> scalar, or None
    last: dict[str, Any]  # step and nll of the latest evaluation


def _evaluator(model: Model, data: RunData, ema: bool) -> _Evaluator:
    """The periodic test-NLL evaluation; the final one is reused for the summary."""
    if model.distribution is None:
        return _Evaluator(None, None, {})
    if data.levels is None:
        test_nll = _jit(lambda p: -jnp.mean(model.distribution.log_prob(p, data.test_std)))
    else:  # images: chunked eval, nats per image (discrete)
        test_nll = _chunked_nll(model, data.test_std)
    last: dict[str, Any] = {}

    def evaluate(state: TrainState) -> dict[str, Any]:
        nll = test_nll(state.ema_params if ema else state.params)
        last.update(step=int(state.step), nll=nll)
        out = {"test_nll": nll}
        if data.levels is not None:
            out["test_bpd"] = metrics.bits_per_dim(-nll, data.event_shape)
        return out

    return _Evaluator(evaluate, test_nll, last)


def _ema_decay(t: dict[str, Any]) -> EmaDecay:
    """``train.ema_decay`` for ``fit``: ``None`` when 0, warmed up when ``train.ema_warmup``."""
    decay = t["ema_decay"]
    if decay <= 0:
        return None
    return ema_warmup(decay) if t["ema_warmup"] else decay


def _fit_run(config, model, params, data: RunData, ev: _Evaluator, key, workdir, mesh, progress):
    t, d = config["train"], config["data"]
    if _streamed(config):  # host workers read, flip and hand over the batches ahead
        if model.batches is not None:
            raise ConfigError(
                f"model {config['model']['name']!r} draws its own batches (minibatch OT "
                "couplings), which streamed data does not support; set data.stream=false"
            )
        stream = fzdata.streamed_batches(
            data.train_std,
            t["batch_size"],
            flip=bool(d["flip"]),
            dtype=jnp.float32,
            workers=int(d["workers"]) or None,
        )
        batch_fn, close = stream, stream.close
    elif model.batches is None:
        batch_fn, close = fzdata.array_batches(data.train_std, t["batch_size"]), None
    else:  # the model's own batches (exact-OT pairs prefetched on host threads)
        batch_fn, close = model.batches(data.train_std, t["batch_size"])
    try:
        return _fit(config, model, params, batch_fn, ev, key, workdir, mesh, progress)
    finally:
        if close is not None:
            close()


def _fit(config, model, params, batch_fn, ev: _Evaluator, key, workdir, mesh, progress):
    t = config["train"]
    return fit(
        model.loss,
        build_optimizer(config),
        params,
        batch_fn,
        key=key,
        num_steps=t["steps"],
        steps_per_call=t["steps_per_call"],
        ema_decay=_ema_decay(t),
        compute_dtype=_compute_dtype(config),
        checkpointing=Checkpointing(
            workdir,
            t["checkpoint_every"] or None,
            t["keep_checkpoints"],
            {"name": config["name"]},
        ),
        evaluation=Evaluation(ev.evaluate, t["eval_every"] or None),
        parallel=DataParallel(mesh, param_sharding=t["param_sharding"]),
        progress=progress,
        tensorboard=bool(t["tensorboard"]),
    )


def _final_nll(ev: _Evaluator, state: TrainState, params, workdir: Path) -> float | None:
    """The test NLL at the final step: the last periodic evaluation if it was at this step
    (test likelihoods are deterministic), else computed once; non-finite stops the run."""
    if ev.test_nll is None:
        return None
    same_step = ev.last.get("step") == int(state.step)
    nll = float(ev.last["nll"] if same_step else ev.test_nll(params))
    if not math.isfinite(nll):
        raise NonFiniteError(
            int(state.step), "test_nll", nll, ckpt.latest_step(workdir / "checkpoints")
        )
    return nll


def _sample_energy_distance(samples: np.ndarray, data: RunData) -> float:
    """Energy distance of raw-unit model samples to the held-out split, ``n`` of each with
    ``n = min(len(samples), len(test), 2000)``, both in one space: standardised units for
    vector data, pixel values in ``[0, 1]`` (grey level / ``(levels - 1)``) for images.

    It uses every sample drawn (for images the ``plot.quality_samples``, not only the
    ``plot.n_samples`` plotted): the unbiased estimator's noise grows as ``n`` shrinks and,
    at a few dozen images, exceeds a good image model's distance (the estimate can then be
    negative)."""
    n = min(len(samples), len(data.test_x), 2000)
    x = fzdata.standardize(data.standardizer, samples[:n])
    y = data.test_std[:n]
    if data.levels is not None:
        x, y = x / (data.levels - 1), y / (data.levels - 1)
    return float(metrics.energy_distance(x, y))


_NO_FID_WEIGHTS = (
    "no FID Inception weights: pass --fid-weights PATH or set "
    f"{metrics.FID_WEIGHTS_ENV} (make the file with: flowzoo fid-weights convert PATH)"
)
"""Why a run that would report FID did not (its warning and ``summary["fid_skipped"]``)."""


def _fid_figures(config, samples: np.ndarray, weights) -> dict[str, Any]:
    """FID of ``samples`` (grey levels) against the data set's training split
    (:func:`flowzoo.data.dataset_fid_statistics`, cached), or why it was skipped."""
    d = config["data"]
    if weights is None:
        return {"fid": None, "fid_skipped": _NO_FID_WEIGHTS}
    info = fzdata.DATASETS[d["name"]]
    options = {k: d[k] for k in DATASET_OPTIONS if k in info.options}
    reference = fzdata.dataset_fid_statistics(d["name"], d["path"], weights, **options)
    images = np.clip(np.floor(samples), 0, info.levels - 1)
    if info.levels == 256:
        images = images.astype(np.uint8)  # the network reads uint8 as x / 255
    else:
        images = (images / (info.levels - 1)).astype(np.float32)
    params = metrics.load_fid_weights(weights)
    stats = metrics.fid_image_statistics(params, images, batch_size=min(100, len(images)))
    value = metrics.fid(stats, reference)
    return {
        "fid": float(value),
        "fid_samples": len(images),
        "fid_reference": f"{d['name']} training split",
    }


def _summarise(
    config, model, params, data: RunData, nll, result, key, fid_weights=None
) -> tuple[dict, np.ndarray]:
    """The summary of a finished run (``result``: fit's :class:`~flowzoo.train.FitResult`)
    and its plotted samples."""
    p = config["plot"]
    steps = int(result.state.step)
    s = data.standardizer
    n_plot = int(p["n_samples"])
    # the quality classifiers are trained on the image sets that ship in packages
    in_package = config["data"]["name"] in fzdata.IMAGE_LEVELS
    n_quality = int(p["quality_samples"]) if data.levels and in_package else 0
    # FID: images of a data set read from files, with the Inception weights given
    with_fid = config["data"]["name"] in fzdata.DATASETS and int(p["fid_samples"]) > 0
    n_fid = int(p["fid_samples"]) if with_fid and fid_weights is not None else 0
    n_draw = max(n_plot, n_quality, n_fid)
    samples = _raw_sample(
        model, params, s, key, n_draw, float(p["temperature"]), batch=sample_batch(config)
    )
    quality = (
        image_quality(image_classifier(config["data"]["name"]), samples[:n_quality])
        if n_quality >= 2
        else {}
    )
    summary = {
        "name": config["name"],
        "steps": steps,
        "test_nll": nll,
        "test_nll_raw": None if nll is None else nll - float(fzdata.standardizer_log_det(s)),
        "energy_distance": _sample_energy_distance(samples, data),
        "mesh_shape": [result.mesh_shape.get(a, 1) for a in (DATA_AXIS, FSDP_AXIS)],
        "param_sharding": config["train"]["param_sharding"],
        "device_bytes": dict(result.device_bytes),
    }
    if data.levels is not None and nll is not None:  # discrete-data bits per dimension
        summary["test_bpd"] = float(metrics.bits_per_dim(-nll, data.event_shape))
    summary.update(quality)  # images: FD, legibility, class histogram and their floors
    if with_fid:
        summary.update(_fid_figures(config, samples[:n_fid], fid_weights))
    return summary, samples[:n_plot]


def _plot_run(workdir: Path, config, model, params, data: RunData, summary, samples) -> None:
    name, nll = config["name"], summary["test_nll"]
    shape = data.event_shape
    if data.levels is not None and nll is not None:
        title = f"{name}: test {summary['test_bpd']:.3f} bits/dim"
        plots.plot_image_grid(
            workdir / "samples.png", samples, data.levels, title, data=data.test_x
        )
    elif len(shape) == 1 and shape[0] >= 2:
        title = f"test NLL {nll:.3f} nats (standardised)" if nll is not None else "samples"
        plots.plot_samples(workdir / "samples.png", data.test_x, samples, f"{name}: {title}")
        if shape[0] == 2 and nll is not None:
            grid = int(config["plot"]["grid"])
            xs, ys, logp = plots.density_grid(
                lambda pts: _raw_log_prob(model, params, data.standardizer, pts), data.test_x, grid
            )
            plots.plot_density(workdir / "density.png", xs, ys, logp, f"{name} density")


def train_and_evaluate(
    config: dict[str, Any],
    workdir: str | os.PathLike,
    *,
    progress: bool = True,
    distributed: Distributed | None = None,
    mesh: Any = None,
    fid_weights: str | os.PathLike | None = None,
    init: Any = None,
) -> dict[str, Any]:
    """Train the model ``config`` describes, evaluate held-out NLL, write plots and a summary.

    If ``workdir`` already holds this run (the same config except for ``train.steps``, the
    eval/checkpoint/logging intervals, plot settings and, for a guided run, the guide keys
    of its :class:`~flowzoo.zoo.Guidance`), training resumes from its newest
    checkpoint; asking for fewer steps than the run already has is refused. Note that the
    cosine learning-rate schedule is defined by ``train.steps``, so extending a run changes
    the schedule of its remaining steps. Returns the summary dict (also written to
    ``workdir/summary.json``): ``test_nll`` (nats per example, standardised units; ``None``
    for families without a tractable likelihood), ``test_nll_raw`` (raw units),
    ``energy_distance`` (model samples vs held-out data, up to 2000 of each, standardised
    units; for images pixel values in ``[0, 1]`` on the ``plot.quality_samples`` samples),
    ``steps``, ``train_seconds``, ``wall_seconds``, and where it trained: ``mesh_shape``
    (``[data, fsdp]`` devices), ``param_sharding`` and ``device_bytes`` (bytes of
    ``params``, ``opt_state`` and ``ema_params`` held on one device,
    :func:`flowzoo.train.per_device_bytes`).

    One process at a time trains a run directory: the run holds its lock
    (:func:`flowzoo.train.run_lock`) from its config check to the end, and a
    second ``train_and_evaluate`` of it raises :class:`flowzoo.train.RunLockedError`.

    Image data (``data.name`` ``"digits"`` or ``"mnist"``, :func:`flowzoo.data.image_dataset`,
    or a data set read from ``data.path``, :data:`flowzoo.data.DATASETS`: CIFAR-10/100,
    downsampled ImageNet, a folder of images) is not standardised: dequantization and preprocessing are part of the model,
    ``model.data_levels`` is filled in from the data set, ``test_nll`` is the dequantization
    bound on ``-log P(x)`` in nats per image, every eval also logs ``eval/test_bpd`` (bits
    per dimension) to ``metrics.jsonl``, the summary holds ``test_bpd`` and ``samples.png``
    is a grid of samples (``plot.temperature``, default 1) beside held-out images. The
    summary of a digits or mnist run also holds the sample-quality figures of
    :func:`flowzoo.zoo.image_quality` on ``plot.quality_samples`` generated images (default
    1000; 0 skips them): ``fd``, ``legibility``, ``class_histogram`` and their real-image
    ``*_floor`` values. The summary of a run on a data set read from files
    (:data:`flowzoo.data.DATASETS`) holds ``fid``: the Fréchet Inception Distance of
    ``plot.fid_samples`` generated images (default 10,000: FID-10k; 0 skips it) against
    the data set's training split (:func:`flowzoo.metrics.fid`, the statistics cached by
    :func:`flowzoo.data.dataset_fid_statistics`), with ``fid_samples`` and ``fid_reference``;
    it needs the converted Inception weights, ``fid_weights`` (else
    ``$FLOWZOO_FID_WEIGHTS``). Without them ``fid`` is ``None`` and ``fid_skipped`` says why
    (also warned at the start of the run); a named file that does not exist fails before
    training.

    A flow-matching run with a guide (``model.guide_steps > 0``) first trains the guide as its
    own run in ``workdir/guide``, then the main model; its samples, ``test_nll`` and quality
    figures are those of the guided field ``guide + w (main - guide)``
    (:func:`flowzoo.nets.guided`), and the summary adds ``guide_train_seconds`` and the main
    model's own likelihood, ``unguided_test_nll`` (and ``unguided_test_bpd`` for images).

    ``init``: a :class:`~flowzoo.zoo.Pretrained` (:func:`flowzoo.zoo.pretrained_parts`) to
    fine-tune from: training starts from its params with a new optimizer state (and EMA
    equal to them), a guided run reuses its guide (written to ``workdir/guide``, not
    trained), and the summary records ``init``. The config's model must be the one the
    weights were trained with (else ConfigError). A run that already has checkpoints resumes
    from them.
    """
    t_start = time.perf_counter()
    given = applicable_config(config)  # what run.json records
    config = complete_config(given)  # every default filled in from the schema, once
    validate_config(config)
    if distributed is not None:  # before any JAX computation
        initialize_distributed(distributed)
    mesh = _run_mesh(config, mesh)
    fid_weights = _fid_weights(config, fid_weights)
    workdir = Path(workdir)
    _check_resume(config, workdir)  # reads only: a refused config leaves the directory as is
    with run_lock(workdir, enabled=is_primary()):  # one trainer per run directory
        return _train_locked(config, given, workdir, mesh, progress, t_start, fid_weights, init)


def _fid_weights(config: dict[str, Any], given) -> Path | None:
    """The FID weights file of a run that reports FID (checked now, before training), or
    ``None``, with a warning when the run would report FID but no weights are given."""
    if config["data"]["name"] not in fzdata.DATASETS or not config["plot"]["fid_samples"]:
        return None
    path = metrics.fid_weights_path(given)
    if path is None and is_primary():
        warnings.warn(f"FID will be skipped: {_NO_FID_WEIGHTS}", stacklevel=3)
    return path


def _train_locked(
    config, given, workdir: Path, mesh, progress: bool, t_start: float, fid_weights=None, init=None
):
    """``train_and_evaluate`` once the run directory's lock is held."""
    _check_resume(config, workdir)  # again: another process may have trained it meanwhile
    if init is not None and init.guide_params is not None:
        guide = _pretrained_guide(given, config, workdir, init)
    else:
        guide = _train_guide(given, config, workdir, progress, mesh)
    data = prepare_data(config)
    model = build_model(_model_config(config), data.event_shape)
    init_key, fit_key, sample_key = jax.random.split(jax.random.key(config["seed"]), 3)
    params = model.init(init_key, jnp.asarray(data.train_std[:1024], jnp.float32))
    if init is not None:
        params = _initial_params(params, init.main.params, init.card["name"])
    _write_run_info(workdir, given, data)
    ema = config["train"]["ema_decay"] > 0
    ev = _evaluator(model, data, ema)
    t_fit = time.perf_counter()
    try:
        result = _fit_run(config, model, params, data, ev, fit_key, workdir, mesh, progress)
    except Exception as err:  # failed in fit's final evaluation, after the final save?
        done = ckpt.latest_step(workdir / "checkpoints")
        if done is not None and done >= config["train"]["steps"]:
            raise EvaluationError(workdir, done, err) from err
        raise
    train_seconds = time.perf_counter() - t_fit
    final = result.state.ema_params if ema else result.state.params
    steps = int(result.state.step)
    try:  # the trained state is checkpointed: a failure from here on loses nothing
        nll = main_nll = _final_nll(ev, result.state, final, workdir)
        if guide is not None:  # sample and evaluate the guided model (its own likelihood)
            model, final = _guided(config, data.event_shape, final, guide[0])
            nll = _final_nll(_evaluator(model, data, ema), result.state, final, workdir)
        summary, samples = _summarise(
            config, model, final, data, nll, result, sample_key, fid_weights
        )
        summary["train_seconds"] = train_seconds
        summary["allocator"] = loaded_allocator()  # the malloc the step's buffers came from
        if init is not None:
            summary["init"] = f"pretrained:{init.card['name']} (sha256 {init.card['sha256']})"
        if guide is not None:
            summary["guide_train_seconds"] = guide[1]
            summary["unguided_test_nll"] = main_nll
            if data.levels is not None and main_nll is not None:
                summary["unguided_test_bpd"] = float(
                    metrics.bits_per_dim(-main_nll, data.event_shape)
                )
        if is_primary():  # only process 0 writes plots and summary.json
            _plot_run(workdir, config, model, final, data, summary, samples)
            summary["wall_seconds"] = time.perf_counter() - t_start
            tmp = workdir / "summary.json.tmp"
            tmp.write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False))
            os.replace(tmp, workdir / "summary.json")
        else:
            summary["wall_seconds"] = time.perf_counter() - t_start
    except Exception as err:
        raise EvaluationError(workdir, steps, err) from err
    return summary


def _guide_run_config(given: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """The config of the guide's run (:class:`~flowzoo.zoo.Guidance`) of the run ``given``
    (``config``: ``given`` completed), or ``None``. Like ``given``, it states only the keys
    set in ``given`` and those the guide changes; the others take their defaults."""
    found = guidance_of(config)
    if found is None:
        return None
    model, steps = found[1]
    main = config["model"]
    model = {k: v for k, v in model.items() if k in given["model"] or v != main.get(k)}
    train = {**given["train"], "steps": steps, "eval_every": 0}
    plot = {**given.get("plot", {}), "quality_samples": 0}
    return {
        **given,
        "name": f"{given['name']}_guide",
        "model": model,
        "train": train,
        "plot": plot,
    }


def _train_guide(given, config, workdir: Path, progress: bool, mesh) -> tuple[Any, float] | None:
    """Train (or resume, or find finished) the guide in ``workdir/guide``; ``(its EMA or
    final params, its training seconds in this call)``, or ``None`` without a guide."""
    guide_config = _guide_run_config(given, config)
    if guide_config is None:
        return None
    try:
        summary = train_and_evaluate(guide_config, workdir / "guide", progress=progress, mesh=mesh)
    except ConfigError as err:
        raise ConfigError(f"the guide run {workdir / 'guide'}: {err}") from err
    return load_run(workdir / "guide").params, float(summary["train_seconds"])


def _initial_params(template: Any, weights: Any, name: str) -> Any:
    """``weights`` cast to ``template``'s dtypes, refused unless they have its structure and
    shapes (``name``: the pretrained model, for the message)."""
    shapes = lambda tree: jax.tree.map(lambda a: tuple(jnp.shape(a)), tree)
    same = jax.tree.structure(template) == jax.tree.structure(weights)
    if not same or shapes(template) != shapes(weights):
        raise ConfigError(
            f"the pretrained weights of {name} do not fit this config's model: fine-tune with "
            "the model settings they were trained with (leave the model.* keys as the "
            "experiment sets them)"
        )
    return jax.tree.map(lambda a, b: jnp.asarray(b, jnp.result_type(a)), template, weights)


def _pretrained_guide(given, config, workdir: Path, init: Any) -> tuple[Any, float]:
    """The guide of a fine-tuned guided run: the pretrained one, written once as a finished
    run in ``workdir/guide`` (so that :func:`load_run` finds it), never trained."""
    guide_dir = workdir / "guide"
    if (guide_dir / "run.json").is_file():
        return load_run_parts(guide_dir).params, 0.0
    given_guide = _guide_run_config(given, config)
    guide_config = complete_config(given_guide)
    info = {**init.main.info, "config": given_guide}
    _, event_shape, _, model = model_of_info(info, guide_dir)
    template = model.init(jax.random.key(0), jnp.zeros((2, *event_shape), jnp.float32))
    params = _initial_params(template, init.guide_params, init.card["name"])
    ema = guide_config["train"]["ema_decay"] > 0
    state = init_train_state(params, build_optimizer(guide_config), ema=ema)
    steps = int(guide_config["train"]["steps"])
    state = state._replace(step=jnp.asarray(steps, jnp.int32))
    if is_primary():
        guide_dir.mkdir(parents=True, exist_ok=True)
        ckpt.save(guide_dir / "checkpoints", steps, state, metadata={"name": guide_config["name"]})
        (guide_dir / "run.json").write_text(json.dumps(info, indent=2))
    return params, 0.0


def _guided(config: dict[str, Any], event_shape, main: Any, guide: Any) -> tuple[Model, Any]:
    """The guided Model of ``config`` and its params from the main and guide params."""
    guidance = guidance_of(config)[0]
    cfg = _model_config(config)["model"]
    try:
        return guidance.build(cfg, tuple(event_shape)), guidance.params(cfg, main, guide)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"model: bad guide config: {err}") from err


class EvaluationError(RuntimeError):
    """Training finished and was checkpointed, but the final evaluation, plots or summary
    failed; the message says how to evaluate the saved run again."""

    def __init__(self, workdir: Path, step: int, cause: BaseException):
        self.workdir, self.step, self.cause = workdir, step, cause
        what = (
            str(cause) if isinstance(cause, NonFiniteError) else f"{type(cause).__name__}: {cause}"
        )
        super().__init__(
            f"training finished and its checkpoint (step {step}) is saved in {workdir}, but "
            f"the final evaluation failed: {what}. Nothing was lost: evaluate it with "
            f"`flowzoo eval {workdir} --data FILE` or `flowzoo sample {workdir} --out FILE`, "
            "or run the same `flowzoo train` command again (it trains no further and redoes "
            "the evaluation)"
        )


class RunParts(NamedTuple):
    """A run as stored: its ``run.json`` (``info``), the model it builds and the params it
    samples with (EMA where the run keeps it), unguided; see :func:`load_run`."""

    info: dict[str, Any]
    config: dict[str, Any]  # completed from the schema
    model: Model
    params: Any
    standardizer: fzdata.Standardizer
    step: int


def _read_info(run_dir: Path) -> dict[str, Any]:
    info_path = run_dir / "run.json"
    if not run_dir.is_dir():
        raise ConfigError(
            f"run directory {str(run_dir)!r} does not exist; train one with `flowzoo train`"
        )
    if not info_path.is_file():
        raise ConfigError(f"{run_dir} is not a flowzoo run (no run.json)")
    try:
        return json.loads(info_path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{info_path} is corrupt ({type(err).__name__}: {err})") from err


def model_of_info(info: dict[str, Any], where: Any):
    """``(config, event_shape, standardizer, model)`` of a run's ``run.json`` contents.

    Raises ConfigError (naming ``where``) for a corrupt record, a params format this version
    cannot read, or an invalid config."""
    try:
        config, event_shape = info["config"], tuple(info["event_shape"])
        s = fzdata.Standardizer(
            np.asarray(info["standardizer"]["shift"], np.float32),
            np.asarray(info["standardizer"]["scale"], np.float32),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"the run record in {where} is corrupt ({type(err).__name__}: {err})"
        ) from err
    _check_params_format(info, config, where)
    config = complete_config(config)  # a key the run leaves out has its default
    try:
        validate_config(config)
    except ConfigError as err:
        raise ConfigError(f"the run record in {where} holds an invalid config: {err}") from err
    return config, event_shape, s, build_model(_model_config(config), event_shape)


def load_run_parts(run_dir: str | os.PathLike, step: int | None = None) -> RunParts:
    """The newest (or ``step``) checkpoint of a run directory, unguided (see :class:`RunParts`).

    Raises:
      ConfigError: ``run.json`` is missing or unreadable.
      flowzoo.checkpoint.CheckpointError: no readable checkpoint.
    """
    run_dir = Path(run_dir)
    info = _read_info(run_dir)
    config, event_shape, s, model = model_of_info(info, run_dir / "run.json")
    optimizer = build_optimizer(config)
    dummy = jnp.zeros((2, *event_shape), jnp.float32)
    params = model.init(jax.random.key(0), dummy)
    ema = config["train"]["ema_decay"] > 0
    target = init_train_state(params, optimizer, ema=ema)
    state, restored_step = ckpt.restore(run_dir / "checkpoints", target, step)
    params = state.ema_params if ema else state.params
    return RunParts(info, config, model, params, s, restored_step)


def guided_run(config, event_shape, main: RunParts | Run, guide_params: Any) -> Run:
    """The :class:`Run` that samples ``main``'s model with its guide's params."""
    model, params = _guided(config, event_shape, main.params, guide_params)
    return Run(config, model, params, main.standardizer, main.step)


def load_run(run_dir: str | os.PathLike, step: int | None = None) -> Run:
    """Rebuild the model of a run directory and restore its newest (or ``step``) checkpoint.

    A guided run (``model.guide_steps > 0``) samples and evaluates with its guide, read from
    ``run_dir/guide``.

    Raises:
      ConfigError: ``run.json`` is missing or unreadable.
      flowzoo.checkpoint.CheckpointError: no readable checkpoint.
    """
    run_dir = Path(run_dir)
    parts = load_run_parts(run_dir, step)
    config = parts.config
    if guidance_of(config) is None:
        return Run(config, parts.model, parts.params, parts.standardizer, parts.step)
    if not (run_dir / "guide" / "run.json").is_file():
        raise ConfigError(
            f"{run_dir} samples with a guide (model.guide_steps > 0), but its guide run "
            f"{run_dir / 'guide'} is missing; run the same `flowzoo train` command again "
            "to train the guide (the main model's checkpoints are kept)"
        )
    event_shape = tuple(parts.info["event_shape"])
    return guided_run(config, event_shape, parts, load_run_parts(run_dir / "guide").params)
