"""``fit``: the training loop (scan over steps, metrics log, checkpoints, resume, NaN stop).

One device: batches are drawn inside the compiled ``lax.scan`` (no host traffic). On a
mesh (``parallel=DataParallel(mesh)``, one or many processes): each chunk's batches are
built on every host, each process keeps its rows, and
``jax.make_array_from_process_local_data`` assembles the global batch sharded over the
mesh's ``data`` (and ``fsdp``) axes; the state is replicated, or split over ``fsdp`` with
``DataParallel(param_sharding="fsdp")``.

Interruptions: SIGINT (Ctrl-C) raises ``KeyboardInterrupt`` at once and the state after
the last finished chunk is saved; SIGTERM (and, in multi-process runs, SIGINT too, so all
processes stop at the same step) lets the running chunk finish, saves, and raises
:class:`TrainingInterrupted`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from .. import checkpoint as ckpt
from .._types import Key, Params
from ..data import StreamBatches
from ._distributed import is_primary
from ._options import Checkpointing, DataParallel, Evaluation, fit_records
from ._step import (
    EmaDecay,
    LossFn,
    TrainState,
    batch_sharding,
    check_batch_divides,
    check_compute_dtype,
    check_param_sharding,
    data_mesh,
    init_train_state,
    make_mesh,
    make_multi_step,
    make_sharded_multi_step,
    per_device_bytes,
    put_state,
)


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/inf; ``step`` and ``metric`` say where. Nothing bad was saved.

    ``metric`` is the first non-finite logged metric (``loss``, then the others
    alphabetically, e.g. ``grad_norm``: an infinite global gradient norm stops training
    too), ``params`` if only the updated parameters were, or ``data`` when only the batch
    was; ``data_nonfinite`` is True when the batch of that step held NaN/inf values (the
    update was then not applied: bad data is never trained on).
    """

    def __init__(
        self,
        step: int,
        metric: str,
        value: float,
        checkpoint_step: int | None,
        data_nonfinite: bool = False,
    ):
        self.step, self.metric, self.value = step, metric, value
        self.data_nonfinite = data_nonfinite
        where = (
            f"the last good checkpoint (step {checkpoint_step}) is intact"
            if checkpoint_step is not None
            else "no checkpoint was written"
        )
        if data_nonfinite:
            why = (
                "the training batch of that step holds NaN/inf values, so it was not "
                f"trained on; training stopped and {where}. Drop or impute the non-finite "
                "rows of the data (flowzoo.data.check_batch finds them)."
            )
        else:
            why = (
                f"training stopped and {where}. Lower the learning rate, clip gradients, "
                "or check the data for NaN/inf."
            )
        super().__init__(f"non-finite {metric} ({value}) at step {step}; {why}")


class TrainingInterrupted(KeyboardInterrupt):
    """A signal stopped :func:`fit` after it saved a checkpoint at ``step`` (resume there)."""

    def __init__(self, signum: int, step: int):
        self.signum, self.step = signum, step
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: checkpoint saved at step {step}; run again to resume")


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      state: the final :class:`TrainState`.
      history: the logged metrics (a list of dicts).
      mesh_shape: the axis sizes of the mesh trained on (``{"data": D, "fsdp": F}`` for a
        :func:`~flowzoo.train.make_mesh` mesh); ``{}`` on the default device.
      device_bytes: bytes of ``params``, ``opt_state`` and ``ema_params`` held on one device
        (this process's first) during training, by :func:`~flowzoo.train.per_device_bytes`.
    """

    state: TrainState
    history: list[dict[str, float]]
    mesh_shape: dict[str, int] | None = None
    device_bytes: dict[str, int] | None = None


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None``, so that ``json.dumps`` writes
    standard JSON (``null``, never ``NaN`` or ``Infinity``)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


class MetricsWriter:
    """Appends one JSON object per line to ``path`` (flushes every write).

    Non-finite values are written as ``null`` (standard JSON). On resume ``fit`` drops the
    records past the restored step, so that each step is logged once.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def _truncate_log(path: Path | None, step: int, rewrite: bool) -> set[int]:
    """The evaluation steps ``<= step`` logged in ``path``; with ``rewrite``, also drop the
    later records (atomically) and any line cut short by a kill."""
    if path is None or not path.exists():
        return set()
    kept, evaluated = [], set()
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            at = int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
        if at <= step:
            kept.append(line)
            if any(k.startswith("eval/") for k in record):
                evaluated.add(at)
    if rewrite:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    return evaluated


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


_FLAGS = ("finite", "data_finite")  # per-step flags, not logged


def _first_bad(metrics: dict[str, np.ndarray]) -> tuple[int, str, float, bool]:
    idx = int(np.argmin(metrics["finite"]))
    bad_data = "data_finite" in metrics and not metrics["data_finite"][idx]
    names = ["loss", *sorted(k for k in metrics if k not in ("loss", *_FLAGS))]
    for name in names:
        value = float(metrics[name][idx])
        if not math.isfinite(value):
            return idx, name, value, bad_data
    return idx, "data" if bad_data else "params", float("nan"), bad_data


# --------------------------------------------------------------------------- signals


class _StopFlag:
    def __init__(self):
        self.signum: int | None = None

    def __call__(self, signum, frame):
        if self.signum is None:
            print(
                f"flowzoo: {signal.Signals(signum).name} received; saving a checkpoint "
                "after the current chunk of steps",
                file=sys.stderr,
                flush=True,
            )
        self.signum = signum


@contextlib.contextmanager
def _graceful(signums: tuple[int, ...]) -> Iterator[_StopFlag]:
    """Route ``signums`` to a flag checked between chunks (main thread only)."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag) for s in signums}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _agreed_stop(flag: _StopFlag, multi: bool) -> int | None:
    """The signal to stop on, agreed by every process (any process's signal stops all)."""
    if not multi:
        return flag.signum
    from jax.experimental import multihost_utils

    got = multihost_utils.process_allgather(np.int32(flag.signum or 0))
    got = [int(s) for s in np.ravel(got) if s]
    return got[0] if got else None


# --------------------------------------------------------------------------- mesh helpers


def _process_rows(mesh: Mesh, global_batch: int) -> tuple[int, int]:
    """``[lo, hi)``: the rows of a global batch that this process's devices hold."""
    sharding = batch_sharding(mesh)
    spans = [
        idx[0].indices(global_batch)[:2]
        for idx in sharding.addressable_devices_indices_map((global_batch,)).values()
    ]
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    if hi - lo != sum(b - a for a, b in set(spans)):
        raise ValueError("this process's devices do not hold a contiguous block of the batch")
    return lo, hi


def _local_copy(tree: Any) -> Any:
    """A process-local copy (arrays on this process's default device) of global arrays;
    arrays split over several processes' devices (FSDP) are gathered, so every process
    must call it."""
    from jax.experimental import multihost_utils

    def copy(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            x = multihost_utils.process_allgather(x, tiled=True)
        return jax.numpy.asarray(np.asarray(x))

    return jax.tree.map(copy, tree)


# --------------------------------------------------------------------------- fit


def fit(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    batch_fn: Callable[[Key, Any], Any],
    *,
    key: Key,
    num_steps: int,
    steps_per_call: int = 100,
    ema_decay: EmaDecay = None,
    compute_dtype: Any = None,
    checkpointing: Checkpointing = Checkpointing(),
    evaluation: Evaluation | None = None,
    parallel: DataParallel = DataParallel(),
    progress: bool = True,
    tensorboard: bool = False,
    **deprecated: Any,
) -> FitResult:
    """Train ``params`` for ``num_steps`` optimizer updates.

    Args:
      loss_fn: ``loss(params, key, batch) -> (scalar, metrics)``.
      optimizer: an optax transformation.
      params: initial parameters (ignored when resuming from a checkpoint in ``workdir``).
      batch_fn: ``batch_fn(data_key, step) -> batch``, a pure function of the step number
        (see :func:`flowzoo.data.array_batches`), so that a resumed run sees exactly the
        batches of an uninterrupted one. A :class:`flowzoo.data.StreamBatches` (images read
        from disk by host workers, :func:`flowzoo.data.streamed_batches`) trains through the
        sharded path (on a one-device mesh without ``parallel``), each process reading only
        its rows, ahead of the device.
      key: the run's key; split once into a data key and a training key, and every step
        derives its loss key with ``fold_in(train_key, step)``.
      num_steps: total number of updates (a resumed run continues up to this number).
      steps_per_call: updates per compiled call (``lax.scan``). One metrics record (means
        over the call) is written per call; calls also end at eval and checkpoint steps.
      ema_decay: keep an exponential moving average of params with this decay (a number, or
        a schedule of the step such as :func:`flowzoo.train.ema_warmup`).
      compute_dtype: ``"bfloat16"`` for mixed precision (bf16 forward/backward, float32
        params, optimizer state, log-densities and loss); ``None``: the params' dtype.
      checkpointing: the run's directory, how often to save, how many checkpoints to keep
        and their metadata (:class:`Checkpointing`; default: nothing written).
      evaluation: a function of the state logged every so many steps and at the end
        (:class:`Evaluation`; ``None``: no evaluation).
      parallel: the mesh to train data-parallel on, where the batch rows come from and
        whether parameters are replicated or split over the mesh's ``fsdp`` axis
        (:class:`DataParallel`; default: the default device).
      progress: show a progress bar (loss, samples/s) on stderr (process 0 only).
      tensorboard: also write every logged record as TensorBoard scalars to
        ``workdir/tensorboard/`` (needs ``tensorboardX``: ``pip install flowzoo[tensorboard]``;
        process 0 only). On resume, events past the restored step are purged.
      **deprecated: the separate keywords ``workdir``, ``checkpoint_every``,
        ``keep_checkpoints``, ``metadata``, ``eval_fn``, ``eval_every``, ``mesh`` and
        ``local_batches`` still work in flowzoo 0.1, with a ``DeprecationWarning``, and go
        in 0.2.

    Returns:
      :class:`FitResult` with the final :class:`TrainState` (in a multi-process run, a
      process-local copy), the logged records (process 0's; empty elsewhere), the mesh's
      shape and the per-device bytes of params, optimizer state and EMA.

    Raises:
      NonFiniteError: a batch, loss or gradient became NaN/inf; the step and metric are
        named and no checkpoint of the bad state is written.
      TrainingInterrupted: SIGTERM (or SIGINT in a multi-process run); a checkpoint of the
        last finished chunk was saved first.
      ValueError: the global batch does not divide over the mesh's devices.
    """
    checkpointing, evaluation, parallel = fit_records(
        deprecated, checkpointing, evaluation, parallel
    )
    eval_fn, eval_every = (None, None) if evaluation is None else evaluation
    local_batches = parallel.local_batches
    mesh = _check_fit_args(num_steps, steps_per_call, parallel)
    compute_dtype = check_compute_dtype(compute_dtype)
    data_key, train_key = jax.random.split(key)
    batch_size = jax.tree.leaves(jax.eval_shape(batch_fn, data_key, 0))[0].shape[0]
    if mesh is not None:
        batch_size *= jax.process_count() if local_batches else 1
        check_batch_divides(batch_size, mesh)
    state = init_train_state(params, optimizer, ema=ema_decay is not None)
    run_mesh = mesh
    if run_mesh is None and isinstance(batch_fn, StreamBatches):  # host batches need a mesh
        run_mesh = data_mesh(jax.devices()[:1])
    if run_mesh is not None:  # placed as the step returns it: the step compiles once
        state = put_state(state, run_mesh, parallel.param_sharding)
    book = _Bookkeeper(checkpointing.workdir, checkpointing.keep, checkpointing.metadata, eval_fn)
    state = book.restore(state)
    if tensorboard:
        book.open_tensorboard(int(state.step))
    run = _make_runner(
        loss_fn,
        optimizer,
        batch_fn,
        run_mesh,
        (data_key, train_key),
        batch_size,
        local_batches,
        ema_decay=ema_decay,
        compute_dtype=compute_dtype,
    )
    schedule = _Schedule(num_steps, steps_per_call, eval_every, checkpointing.every)
    book.bar = _progress(num_steps, int(state.step), progress and book.primary)
    try:
        state = _train_loop(run, state, schedule, book, batch_size)
    finally:
        if book.bar is not None:
            book.bar.close()
        if book.tb is not None:
            book.tb.close()
    return FitResult(
        book.host_state(state),
        book.history,
        {} if mesh is None else dict(mesh.shape),
        _device_bytes(state),
    )


def _device_bytes(state: TrainState) -> dict[str, int]:
    """Per-device bytes of the state's params, optimizer state and EMA."""
    return {
        "params": per_device_bytes(state.params),
        "opt_state": per_device_bytes(state.opt_state),
        "ema_params": per_device_bytes(state.ema_params),
    }


def _check_fit_args(num_steps: int, steps_per_call: int, parallel: DataParallel):
    """Validate ``fit``'s loop arguments; returns the mesh (``"auto"`` resolved)."""
    mesh, local_batches = parallel.mesh, parallel.local_batches
    if num_steps < 0 or steps_per_call < 1:
        raise ValueError("num_steps must be >= 0 and steps_per_call >= 1")
    fsdp = check_param_sharding(parallel.param_sharding) == "fsdp"
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"DataParallel: mesh must be a Mesh, 'auto' or None, got {mesh!r}")
        mesh = make_mesh(param_sharding="fsdp") if fsdp else data_mesh()
    if fsdp and mesh is None:
        raise ValueError(
            "DataParallel(param_sharding='fsdp') needs a mesh: 'auto' or one with an "
            "'fsdp' axis (flowzoo.train.make_mesh)"
        )
    if local_batches and mesh is None:
        raise ValueError("DataParallel(local_batches=True) needs a mesh ('auto' or a Mesh)")
    if jax.process_count() > 1 and mesh is None:
        raise ValueError(
            f"this is process {jax.process_index()} of {jax.process_count()}: pass "
            "parallel=DataParallel('auto') (or a Mesh over all processes' devices) to train "
            "data-parallel"
        )
    return mesh


def _make_runner(
    loss_fn, optimizer, batch_fn, mesh, keys, batch_size, local_batches, *, ema_decay, compute_dtype
):
    """``run(state, first, num) -> (state, metrics)``: ``num`` compiled steps from ``first``."""
    data_key, train_key = keys
    stream = isinstance(batch_fn, StreamBatches)
    if stream and local_batches:  # a stream reads on a mesh of >= 1 device (fit makes one)
        raise ValueError(
            "a StreamBatches reads this process's rows of the global batch itself; "
            "leave DataParallel(local_batches=False)"
        )
    if mesh is None:
        multi_step = make_multi_step(
            loss_fn, optimizer, batch_fn, ema_decay=ema_decay, compute_dtype=compute_dtype
        )
        return lambda state, first, num: multi_step(state, data_key, train_key, num)
    sharded = make_sharded_multi_step(
        loss_fn, optimizer, mesh, train_key, ema_decay=ema_decay, compute_dtype=compute_dtype
    )
    if local_batches:
        lo, hi = 0, batch_size // jax.process_count()
    else:
        lo, hi = _process_rows(mesh, batch_size)
    stacked = jax.jit(jax.vmap(batch_fn, in_axes=(None, 0)))
    shard = batch_sharding(mesh, leading=1)
    to_device_dtype = stream and batch_fn.dtype != batch_fn.host_dtype  # cast after transfer
    cast = jax.jit(lambda b: b.astype(batch_fn.dtype)) if to_device_dtype else None

    def run(state: TrainState, first: int, num: int):
        if stream:  # (num, hi - lo, ...) host array of the stream's host dtype
            batches = batch_fn.read(data_key, first, num, lo, hi)
        else:
            steps = np.arange(first, first + num, dtype=np.int32)
            batches = stacked(data_key, steps)  # (num, B or B_local, ...) on this host
        if not (local_batches or stream):
            batches = jax.tree.map(lambda b: b[:, lo:hi], batches)
        batches = jax.tree.map(
            lambda b: jax.make_array_from_process_local_data(
                shard, np.asarray(b), (num, batch_size, *b.shape[2:])
            ),
            batches,
        )
        return sharded(state, batches if cast is None else cast(batches))

    return run


class _Schedule(NamedTuple):
    """When ``fit`` stops a compiled call: chunk ends, evaluations and checkpoints."""

    num_steps: int
    steps_per_call: int
    eval_every: int | None
    checkpoint_every: int | None

    def boundary(self, step: int) -> int:
        """The next step at which to stop the scan."""
        nxt = [self.num_steps, (step // self.steps_per_call + 1) * self.steps_per_call]
        for every in (self.eval_every, self.checkpoint_every):
            if every:
                nxt.append((step // every + 1) * every)
        return min(nxt)


class _Bookkeeper:
    """What ``fit`` writes: checkpoints, metrics records, evaluations, the progress bar."""

    def __init__(self, workdir, keep: int, metadata, eval_fn):
        self.multi = jax.process_count() > 1
        self.primary = is_primary()
        self.ckpt_dir = None if workdir is None else Path(workdir) / "checkpoints"
        path = None if workdir is None or not self.primary else Path(workdir) / "metrics.jsonl"
        self.writer = MetricsWriter(path)
        self.log_path = None if workdir is None else Path(workdir) / "metrics.jsonl"
        self.keep, self.metadata, self.eval_fn = keep, metadata, eval_fn
        self.last_saved: int | None = None
        self.evaluated: set[int] = set()  # steps whose evaluation is already logged
        self.history: list[dict[str, float]] = []
        self.bar = None
        self.tb = None  # a tensorboardX SummaryWriter when asked for
        self.workdir = None if workdir is None else Path(workdir)

    def open_tensorboard(self, step: int) -> None:
        """Start writing TensorBoard event files (process 0, with a workdir)."""
        if self.workdir is None or not self.primary:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "tensorboard logging needs tensorboardX: pip install 'flowzoo[tensorboard]'"
            ) from err
        # purge_step drops events a killed run wrote past the step resumed from
        self.tb = SummaryWriter(str(self.workdir / "tensorboard"), purge_step=step or None)

    def restore(self, state: TrainState) -> TrainState:
        """Resume from the newest readable checkpoint; corrupt newer ones are moved aside.

        The metrics log keeps only the records up to the restored step (none for a fresh
        start), so the replayed steps appear once.
        """
        if self.ckpt_dir is not None and self.multi:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)  # all processes list one dir
        if self.ckpt_dir is None or ckpt.latest_step(self.ckpt_dir) is None:
            self._trim_log(int(state.step))
            return state
        state, self.last_saved = ckpt.restore(self.ckpt_dir, state)  # warns about corrupt ones
        newer = [s for s in ckpt.all_steps(self.ckpt_dir) if s > self.last_saved]
        if newer:  # corrupt: move them away so that this run can write those steps again
            ckpt.quarantine(self.ckpt_dir, newer)
        self._trim_log(self.last_saved)
        return state

    def _trim_log(self, step: int) -> None:
        """Drop log records past ``step`` (process 0 rewrites; every process reads which
        evaluations are already logged, so all skip the same ones)."""
        self.evaluated = _truncate_log(self.log_path, step, rewrite=self.primary)

    def save(self, state: TrainState) -> None:
        if self.ckpt_dir is not None and int(state.step) != self.last_saved:
            ckpt.save(self.ckpt_dir, int(state.step), state, keep=self.keep, metadata=self.metadata)
            self.last_saved = int(state.step)

    def log(self, record: dict[str, float]) -> None:
        if self.primary:
            self.history.append(record)
            self.writer.write(record)
            if self.tb is not None:
                step = int(record["step"])
                for name, value in record.items():
                    if name != "step" and value is not None and math.isfinite(value):
                        self.tb.add_scalar(name, value, step)
                self.tb.flush()

    def host_state(self, state: TrainState) -> TrainState:
        return _local_copy(state) if self.multi else state

    def evaluate(self, state: TrainState) -> None:
        if self.eval_fn is None or int(state.step) in self.evaluated:
            return
        self.evaluated.add(int(state.step))
        t0 = time.perf_counter()
        out = {f"eval/{k}": float(v) for k, v in self.eval_fn(self.host_state(state)).items()}
        self.log({"step": int(state.step), **out, "eval_seconds": time.perf_counter() - t0})
        if self.bar is not None:
            self.bar.write(
                " ".join(f"{k}={v:.4f}" for k, v in out.items()) + f" (step {state.step})"
            )

    def progress(self, num: int, record: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(num)
            self.bar.set_postfix(
                loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_sec']:.3g}"
            )


def _train_loop(run, state: TrainState, schedule: _Schedule, book: _Bookkeeper, batch_size: int):
    """Compiled chunks until ``num_steps``; evaluations, checkpoints and stops between them."""
    step, num_steps = int(state.step), schedule.num_steps
    graceful = (signal.SIGTERM, signal.SIGINT) if book.multi else (signal.SIGTERM,)
    try:
        with _graceful(graceful) as stop:
            while step < num_steps:
                num = schedule.boundary(step) - step
                t0 = time.perf_counter()
                new_state, metrics = run(state, step, num)
                metrics = jax.device_get(metrics)
                elapsed = time.perf_counter() - t0
                if not np.all(metrics["finite"]):
                    idx, name, value, bad_data = _first_bad(metrics)
                    raise NonFiniteError(step + idx, name, value, book.last_saved, bad_data)
                state, step = new_state, step + num
                record = {
                    "step": step,
                    **{k: float(np.mean(v)) for k, v in metrics.items() if k not in _FLAGS},
                }
                record["samples_per_sec"] = num * batch_size / elapsed
                book.log(record)
                book.progress(num, record)
                signum = _agreed_stop(stop, book.multi) if step < num_steps else None
                if signum is not None:
                    book.save(state)
                    raise TrainingInterrupted(signum, step)
                # save before evaluating: a failing evaluation never costs the trained state
                if schedule.checkpoint_every and step % schedule.checkpoint_every == 0:
                    book.save(state)
                if schedule.eval_every and step % schedule.eval_every == 0 and step < num_steps:
                    book.evaluate(state)
            book.save(state)
            # a stop asked for during the last chunk: the trained state is saved, and the
            # final evaluation (an image model's likelihood pass can take many minutes) is
            # left to the resumed run, which goes straight to it
            signum = _agreed_stop(stop, book.multi)
            if signum is not None:
                raise TrainingInterrupted(signum, step)
        # outside the signal routing: a SIGTERM during the final evaluation acts at once
        # (the previous handler, by default ending the process) instead of being held for a
        # chunk boundary that never comes
        book.evaluate(state)
    except KeyboardInterrupt:
        if not book.multi:  # multi-process: only agreed stops save (a lone save would hang)
            book.save(state)
        raise
    return state
