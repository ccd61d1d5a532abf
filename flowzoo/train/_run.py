"""``train_and_evaluate(config, workdir)``: the function behind ``flowzoo train``.

A run directory holds ``run.json`` (config, data standardiser, event shape, version),
``metrics.jsonl``, ``checkpoints/``, ``summary.json``, ``samples.png`` and ``density.png``.
"""

from __future__ import annotations

import json
import math
import os
import time
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
from ._config import ConfigError, validate_config
from ._distributed import Distributed, initialize_distributed, is_primary
from ._fit import NonFiniteError, fit
from ._registry import Trainable, build_model
from ._step import TrainState, init_train_state


def build_optimizer(config: dict[str, Any]) -> optax.GradientTransformation:
    """Adam with linear warm-up, cosine decay and optional global-norm clipping."""
    t = config["train"]
    steps = max(int(t["steps"]), 1)
    warmup = min(int(t.get("warmup_steps", 0)), steps - 1) if steps > 1 else 0
    schedule = optax.warmup_cosine_decay_schedule(
        0.0 if warmup else t["lr"],
        t["lr"],
        warmup,
        steps,
        t["lr"] * t.get("final_lr_fraction", 1.0),
    )
    parts = [optax.clip_by_global_norm(t["grad_clip"])] if t.get("grad_clip", 0) > 0 else []
    return optax.chain(*parts, optax.adam(schedule))


def load_data(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` float32 arrays in raw units, as the config describes."""
    d = config["data"]
    key = jax.random.key(config["seed"])
    if _image_levels(config) is not None:  # uint8 NHWC images with a fixed split
        images = fzdata.image_dataset(d["name"], pad_to=d.get("pad_to") or None)
        # data.n_test caps the evaluated test images (the first of the fixed split order), for
        # likelihoods too slow to evaluate on all of them; the default 5000 keeps every image
        return images.train, images.test[: int(d.get("n_test") or len(images.test))]
    if d["name"] == "file":
        if not d.get("path"):
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
    kwargs = {"noise": d["noise"]} if "noise" in _params_of(d["name"]) else {}
    ktr, kte = jax.random.split(jax.random.fold_in(key, 1))
    try:
        train = fzdata.toy(d["name"], ktr, d["n_train"], **kwargs)
        test = fzdata.toy(d["name"], kte, d["n_test"], **kwargs)
    except ValueError as err:
        raise ConfigError(f"data.name: {err}") from err
    return np.asarray(train), np.asarray(test)


def _image_levels(config: dict[str, Any]) -> int | None:
    """Grey levels of the config's image data set, or ``None`` for vector data."""
    return fzdata.IMAGE_LEVELS.get(str(config["data"]["name"]).lower())


def _model_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``model.data_levels`` filled in for image data (a copy; not saved)."""
    levels = _image_levels(config)
    if levels is None:
        return config
    model = dict(config["model"])
    if model.get("data_levels", levels) not in (0, levels):
        raise ConfigError(
            f"model.data_levels={model['data_levels']} contradicts data.name="
            f"{config['data']['name']!r}, which has {levels} grey levels"
        )
    model["data_levels"] = levels
    return {**config, "model": model}


def _params_of(name: str) -> set[str]:
    import inspect

    fn = fzdata.TOY_TARGETS.get(name.lower().replace("-", "_"))
    return set(inspect.signature(fn).parameters) if fn is not None else set()


class Run(NamedTuple):
    """A trained run loaded from disk (see :func:`load_run`)."""

    config: dict[str, Any]
    model: Trainable
    params: Any
    standardizer: fzdata.Standardizer
    step: int

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Log-density in nats of raw-unit points ``(n, *event)``.

        Image runs: ``x`` holds grey levels ``0 .. L-1`` and the result is the dequantization
        bound on ``log P(x)`` in nats per image.
        """
        if self.model.log_prob is None:
            raise ConfigError(f"model {self.config['model']['name']!r} has no tractable likelihood")
        levels = _image_levels(self.config)
        if levels is not None:  # integer grey levels 0..levels-1, checked (DataError if not)
            x = fzdata.check_images(x, levels, "eval data").astype(np.float32)
        return _raw_log_prob(self.model, self.params, self.standardizer, x)

    def sample(self, key, n: int, temperature: float = 1.0) -> np.ndarray:
        """``n`` samples in raw units."""
        return _raw_sample(self.model, self.params, self.standardizer, key, n, temperature)


def _raw_log_prob(model, params, s, x, batch: int = 8192) -> np.ndarray:
    fn = jax.jit(lambda p, v: model.log_prob(p, fzdata.standardize(s, v)))
    out = [np.asarray(fn(params, jnp.asarray(x[i : i + batch]))) for i in range(0, len(x), batch)]
    return np.concatenate(out) + float(fzdata.standardizer_log_det(s))


def _raw_sample(model, params, s, key, n, temperature=1.0) -> np.ndarray:
    fn = jax.jit(lambda p, k: model.sample(p, k, n, temperature))
    return np.asarray(fzdata.unstandardize(s, fn(params, key)))


def _chunked_nll(model: Trainable, x: jax.Array, chunk: int = 250):
    """``params -> mean(-model.log_prob(params, x))`` over ``x`` in jitted chunks of ``chunk``."""
    fn = jax.jit(lambda p, v: -jnp.sum(model.log_prob(p, v)))

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
    }


_RESUMABLE = {
    ("train", "steps_per_call"),
    ("train", "steps"),
    ("train", "eval_every"),
    ("train", "checkpoint_every"),
    ("train", "keep_checkpoints"),
    ("train", "data_parallel"),
    ("plot", "n_samples"),
    ("plot", "grid"),
    ("plot", "temperature"),
}


_ADDED_DEFAULTS = {("train", "compute_dtype"): "float32", ("train", "data_parallel"): False}
"""Keys added after runs were first written: a run.json without them had these values."""


def _check_same_run(old: dict[str, Any], new: dict[str, Any], workdir: Path) -> None:
    old = {k: dict(v) if isinstance(v, dict) else v for k, v in old.items()}
    for (section, key), value in _ADDED_DEFAULTS.items():
        if isinstance(old.get(section), dict):
            old[section].setdefault(key, value)
    diffs = []
    for section in set(old) | set(new):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for k in set(a) | set(b):
                if a.get(k) != b.get(k) and (section, k) not in _RESUMABLE:
                    diffs.append(f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}")
        elif a != b:
            diffs.append(f"{section}: {a!r} -> {b!r}")
    if diffs:
        raise ConfigError(
            f"{workdir} holds a run with a different config ({'; '.join(sorted(diffs))}); "
            "pass --name NEW_NAME for a new run, or delete that directory to start over"
        )


def _run_mesh(config: dict[str, Any], mesh: Any) -> Any:
    """The mesh ``fit`` trains on: the given one, else all devices when ``train.data_parallel``
    is set or several processes run, else ``None`` (one device)."""
    if mesh is None and (config["train"].get("data_parallel") or jax.process_count() > 1):
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
    dtype = config["train"].get("compute_dtype", "float32")
    return None if dtype == "float32" else dtype


def train_and_evaluate(
    config: dict[str, Any],
    workdir: str | os.PathLike,
    *,
    progress: bool = True,
    distributed: Distributed | None = None,
    mesh: Any = None,
) -> dict[str, Any]:
    """Train the model ``config`` describes, evaluate held-out NLL, write plots and a summary.

    If ``workdir`` already holds this run (the same config except for ``train.steps``, the
    eval/checkpoint/logging intervals and plot settings), training resumes from its newest
    checkpoint; asking for fewer steps than the run already has is refused. Note that the
    cosine learning-rate schedule is defined by ``train.steps``, so extending a run changes
    the schedule of its remaining steps. Returns the summary dict (also written to
    ``workdir/summary.json``): ``test_nll`` (nats per example, standardised units; ``None``
    for families without a tractable likelihood), ``test_nll_raw`` (raw units),
    ``energy_distance`` (model samples vs held-out data, standardised units), ``steps``,
    ``train_seconds``, ``wall_seconds``.

    Image data (``data.name`` ``"digits"`` or ``"mnist"``, :func:`flowzoo.data.image_dataset`)
    is not standardised: dequantization and preprocessing are part of the model
    (:mod:`flowzoo.flows._recipe`), ``model.data_levels`` is filled in from the data set,
    ``test_nll`` is the dequantization bound on ``-log P(x)`` in nats per image, every eval
    also logs ``eval/test_bpd`` (bits per dimension) to ``metrics.jsonl``, the summary holds
    ``test_bpd`` and ``samples.png`` is a grid of samples (``plot.temperature``, default 1)
    beside held-out images.
    """
    t_start = time.perf_counter()
    validate_config(config)
    if distributed is not None:  # before any JAX computation
        initialize_distributed(distributed)
    primary = is_primary()  # only process 0 writes run.json, plots and summary.json
    mesh = _run_mesh(config, mesh)
    workdir = Path(workdir)
    info_path = workdir / "run.json"
    if info_path.exists():
        try:
            old = json.loads(info_path.read_text())["config"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ConfigError(
                f"{info_path} is unreadable ({err}); move the directory away"
            ) from err
        _check_same_run(old, config, workdir)
        done = ckpt.latest_step(workdir / "checkpoints")
        if done is not None and done > config["train"]["steps"]:
            raise ConfigError(
                f"{workdir} already holds {done} training steps, more than train.steps="
                f"{config['train']['steps']}; raise train.steps or use another --name"
            )
    train_x, test_x = load_data(config)
    fzdata.check_batch(train_x, train_x.shape[1:], "training data")
    event_shape = tuple(train_x.shape[1:])
    levels = _image_levels(config)  # images: no standardiser, preprocessing is in the model
    s = (
        fzdata.fit_standardizer(train_x)
        if config["data"]["standardize"] and levels is None
        else (_identity_standardizer(event_shape))
    )
    s = fzdata.Standardizer(np.asarray(s.shift, np.float32), np.asarray(s.scale, np.float32))
    train_std = np.asarray(fzdata.standardize(s, train_x))
    test_std = jnp.asarray(fzdata.standardize(s, test_x))

    t = config["train"]
    if t["batch_size"] > len(train_std):
        raise ConfigError(
            f"train.batch_size {t['batch_size']} exceeds the {len(train_std)} training rows"
        )
    model = build_model(_model_config(config), event_shape)
    optimizer = build_optimizer(config)
    key = jax.random.key(config["seed"])
    init_key, fit_key, sample_key = jax.random.split(key, 3)
    params = model.init(init_key, jnp.asarray(train_std[: min(len(train_std), 1024)]))

    workdir.mkdir(parents=True, exist_ok=True)
    if primary:
        tmp = info_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_run_info(config, s, event_shape), indent=2))
        os.replace(tmp, info_path)

    has_nll = model.log_prob is not None
    test_nll = jax.jit(lambda p: -jnp.mean(model.log_prob(p, test_std))) if has_nll else None
    if has_nll and levels is not None:  # images: chunked eval, nats per image (discrete)
        test_nll = _chunked_nll(model, test_std)
    bpd_per_nat = 1.0 / (math.prod(event_shape) * math.log(2.0))
    ema = t.get("ema_decay", 0.0) > 0

    def eval_params(state: TrainState):
        return state.ema_params if ema else state.params

    last_eval: dict[str, Any] = {}  # the final eval inside fit is reused for the summary

    def evaluate(state: TrainState) -> dict[str, Any]:
        nll = test_nll(eval_params(state))
        last_eval.update(step=int(state.step), nll=nll)
        return (
            {"test_nll": nll}
            if levels is None
            else {"test_nll": nll, "test_bpd": nll * bpd_per_nat}
        )

    t_fit = time.perf_counter()
    result = fit(
        model.loss,
        optimizer,
        params,
        fzdata.array_batches(train_std, t["batch_size"]),
        key=fit_key,
        num_steps=t["steps"],
        steps_per_call=t["steps_per_call"],
        eval_fn=evaluate if has_nll else None,
        eval_every=t["eval_every"] or None,
        workdir=workdir,
        checkpoint_every=t["checkpoint_every"] or None,
        keep_checkpoints=t["keep_checkpoints"],
        ema_decay=t["ema_decay"] if ema else None,
        progress=progress,
        metadata={"name": config["name"]},
        mesh=mesh,
        compute_dtype=_compute_dtype(config),
    )
    train_seconds = time.perf_counter() - t_fit
    final = eval_params(result.state)
    nll = None
    if (
        has_nll
    ):  # test likelihoods are deterministic (fixed keys), so an eval at this step is reused
        same_step = last_eval.get("step") == int(result.state.step)
        nll = float(last_eval["nll"] if same_step else test_nll(final))
    if nll is not None and not math.isfinite(nll):
        raise NonFiniteError(
            int(result.state.step), "test_nll", nll, ckpt.latest_step(workdir / "checkpoints")
        )
    p = config.get("plot", {})
    samples = _raw_sample(
        model, final, s, sample_key, int(p.get("n_samples", 5000)), float(p.get("temperature", 1.0))
    )
    n_cmp = min(len(samples), len(test_x), 2000)
    summary = {
        "name": config["name"],
        "steps": int(result.state.step),
        "test_nll": nll,
        "test_nll_raw": None if nll is None else nll - float(fzdata.standardizer_log_det(s)),
        # sample quality in standardised units, against held-out data (same n both sides)
        "energy_distance": float(
            metrics.energy_distance(
                fzdata.standardize(s, samples[:n_cmp]), test_std[:n_cmp].reshape(n_cmp, -1)
            )
        ),
        "train_seconds": train_seconds,
    }
    if levels is not None and nll is not None and primary:
        summary["test_bpd"] = nll * bpd_per_nat  # discrete-data bits per dimension
        title = f"{config['name']}: test {summary['test_bpd']:.3f} bits/dim"
        plots.plot_image_grid(workdir / "samples.png", samples, levels, title, data=test_x)
    elif primary and event_shape[0] >= 2 and len(event_shape) == 1:
        title = f"test NLL {nll:.3f} nats (standardised)" if has_nll else "samples"
        plots.plot_samples(workdir / "samples.png", test_x, samples, f"{config['name']}: {title}")
        if event_shape[0] == 2 and has_nll:
            xs, ys, logp = plots.density_grid(
                lambda pts: _raw_log_prob(model, final, s, pts), test_x, int(p.get("grid", 200))
            )
            plots.plot_density(workdir / "density.png", xs, ys, logp, f"{config['name']} density")
    summary["wall_seconds"] = time.perf_counter() - t_start
    if primary:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_run(run_dir: str | os.PathLike, step: int | None = None) -> Run:
    """Rebuild the model of a run directory and restore its newest (or ``step``) checkpoint.

    Raises:
      ConfigError: ``run.json`` is missing or unreadable.
      flowzoo.checkpoint.CheckpointError: no readable checkpoint.
    """
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not run_dir.is_dir():
        raise ConfigError(
            f"run directory {str(run_dir)!r} does not exist; train one with `flowzoo train`"
        )
    if not info_path.is_file():
        raise ConfigError(f"{run_dir} is not a flowzoo run (no run.json)")
    try:
        info = json.loads(info_path.read_text())
        config, event_shape = info["config"], tuple(info["event_shape"])
        s = fzdata.Standardizer(
            np.asarray(info["standardizer"]["shift"], np.float32),
            np.asarray(info["standardizer"]["scale"], np.float32),
        )
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{info_path} is corrupt ({type(err).__name__}: {err})") from err
    model = build_model(_model_config(config), event_shape)
    optimizer = build_optimizer(config)
    dummy = jnp.zeros((2, *event_shape), jnp.float32)
    params = model.init(jax.random.key(0), dummy)
    ema = config["train"].get("ema_decay", 0.0) > 0
    target = init_train_state(params, optimizer, ema=ema)
    state, restored_step = ckpt.restore(run_dir / "checkpoints", target, step)
    return Run(config, model, state.ema_params if ema else state.params, s, restored_step)
