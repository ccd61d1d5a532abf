"""``fit``: the training loop (scan over steps, metrics log, checkpoints, resume, NaN stop)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from .. import checkpoint as ckpt
from .._types import Key, Params
from ._step import LossFn, TrainState, init_train_state, make_multi_step


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/inf; ``step`` and ``metric`` say where. Nothing bad was saved."""

    def __init__(self, step: int, metric: str, value: float, checkpoint_step: int | None):
        self.step, self.metric, self.value = step, metric, value
        where = (
            f"the last good checkpoint (step {checkpoint_step}) is intact"
            if checkpoint_step is not None
            else "no checkpoint was written"
        )
        super().__init__(
            f"non-finite {metric} ({value}) at step {step}; training stopped and {where}. "
            "Lower the learning rate, clip gradients, or check the data for NaN/inf."
        )


class FitResult(NamedTuple):
    """What :func:`fit` returns: the final state and the logged metrics (list of dicts)."""

    state: TrainState
    history: list[dict[str, float]]


class MetricsWriter:
    """Appends one JSON object per line to ``path`` (flushes every write)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


def _first_bad(metrics: dict[str, np.ndarray]) -> tuple[int, str, float]:
    finite = metrics["finite"]
    idx = int(np.argmin(finite))
    for name in ["loss", *sorted(k for k in metrics if k not in ("loss", "finite"))]:
        value = float(metrics[name][idx])
        if not math.isfinite(value):
            return idx, name, value
    return idx, "gradient", float("nan")


def fit(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    batch_fn: Callable[[Key, Any], Any],
    *,
    key: Key,
    num_steps: int,
    steps_per_call: int = 100,
    eval_fn: Callable[[TrainState], dict[str, float]] | None = None,
    eval_every: int | None = None,
    workdir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    ema_decay: float | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``params`` for ``num_steps`` optimizer updates.

    Args:
      loss_fn: ``loss(params, key, batch) -> (scalar, metrics)``.
      optimizer: an optax transformation.
      params: initial parameters (ignored when resuming from a checkpoint in ``workdir``).
      batch_fn: ``batch_fn(data_key, step) -> batch``, a pure function of the step number
        (see :func:`flowzoo.data.array_batches`), so that a resumed run sees exactly the
        batches of an uninterrupted one.
      key: the run's key; split once into a data key and a training key, and every step
        derives its loss key with ``fold_in(train_key, step)``.
      num_steps: total number of updates (a resumed run continues up to this number).
      steps_per_call: updates per compiled call (``lax.scan``). One metrics record (means
        over the call) is written per call; calls also end at eval and checkpoint steps.
      eval_fn: called as ``eval_fn(state)`` on the host every ``eval_every`` steps and at the
        end; returns a dict of floats that is logged with an ``eval/`` prefix.
      workdir: where ``metrics.jsonl`` and ``checkpoints/`` go (``None``: nothing written).
        If it holds checkpoints, training resumes from the newest readable one.
      checkpoint_every: save every this many steps (and always at the end, and on Ctrl-C).
      keep_checkpoints: how many checkpoints to keep.
      ema_decay: keep an exponential moving average of params with this decay.
      progress: show a progress bar (loss, samples/s) on stderr.
      metadata: JSON-serialisable dict stored with each checkpoint.

    Returns:
      :class:`FitResult` with the final :class:`TrainState` and the logged records.

    Raises:
      NonFiniteError: a loss or gradient became NaN/inf; the step and metric are named and
        no checkpoint of the bad state is written.
    """
    if num_steps < 0 or steps_per_call < 1:
        raise ValueError("num_steps must be >= 0 and steps_per_call >= 1")
    data_key, train_key = jax.random.split(key)
    state = init_train_state(params, optimizer, ema=ema_decay is not None)
    ckpt_dir = None if workdir is None else Path(workdir) / "checkpoints"
    writer = MetricsWriter(None if workdir is None else Path(workdir) / "metrics.jsonl")
    last_saved = None
    if ckpt_dir is not None and ckpt.latest_step(ckpt_dir) is not None:
        state, last_saved = ckpt.restore(ckpt_dir, state)
    start = int(state.step)

    example = jax.eval_shape(batch_fn, data_key, state.step)
    batch_size = jax.tree.leaves(example)[0].shape[0]
    run = make_multi_step(loss_fn, optimizer, batch_fn, ema_decay=ema_decay)
    history: list[dict[str, float]] = []

    def save(state: TrainState) -> None:
        nonlocal last_saved
        if ckpt_dir is not None and int(state.step) != last_saved:
            ckpt.save(ckpt_dir, int(state.step), state, keep=keep_checkpoints, metadata=metadata)
            last_saved = int(state.step)

    def log(record: dict[str, float]) -> None:
        history.append(record)
        writer.write(record)

    def evaluate(state: TrainState) -> None:
        if eval_fn is not None:
            t0 = time.perf_counter()
            out = {f"eval/{k}": float(v) for k, v in eval_fn(state).items()}
            log({"step": int(state.step), **out, "eval_seconds": time.perf_counter() - t0})
            if bar is not None:
                bar.write(
                    " ".join(f"{k}={v:.4f}" for k, v in out.items()) + f" (step {state.step})"
                )

    def boundary(step: int) -> int:  # next step at which to stop the scan
        nxt = [num_steps, (step // steps_per_call + 1) * steps_per_call]
        for every in (eval_every, checkpoint_every):
            if every:
                nxt.append((step // every + 1) * every)
        return min(nxt)

    bar = _progress(num_steps, start, progress)
    step = start
    try:
        while step < num_steps:
            num = boundary(step) - step
            t0 = time.perf_counter()
            new_state, metrics = run(state, data_key, train_key, num)
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - t0
            if not np.all(metrics["finite"]):
                idx, name, value = _first_bad(metrics)
                raise NonFiniteError(step + idx, name, value, last_saved)
            state, step = new_state, step + num
            record = {
                "step": step,
                **{k: float(np.mean(v)) for k, v in metrics.items() if k != "finite"},
            }
            record["samples_per_sec"] = num * batch_size / elapsed
            log(record)
            if bar is not None:
                bar.update(num)
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_sec']:.3g}"
                )
            if eval_every and step % eval_every == 0 and step < num_steps:
                evaluate(state)
            if checkpoint_every and step % checkpoint_every == 0:
                save(state)
        evaluate(state)  # inside the try: Ctrl-C in the final eval still saves
        save(state)
    except KeyboardInterrupt:
        save(state)
        raise
    finally:
        if bar is not None:
            bar.close()
    return FitResult(state, history)
