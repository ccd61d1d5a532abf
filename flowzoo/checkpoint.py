"""Checkpoints: atomic save / robust restore of training state (the only orbax import).

Four pure functions over a checkpoint directory, plus one error type::

    save(directory, step, tree, keep=3, metadata=None)
    restore(directory, target, step=None) -> (tree, step)
    restore_metadata(directory, step=None) -> dict
    all_steps(directory) -> [int, ...];  latest_step(directory) -> int | None

What is on disk (orbax-checkpoint's ``CheckpointManager`` layout)::

    directory/
      <step>/                       one finished checkpoint per saved step
        _CHECKPOINT_METADATA        orbax bookkeeping (timestamps)
        state/                      the pytree: an OCDBT/zarr array store
                                    (manifest.ocdbt, d/, ocdbt.process_0/) and
                                    _METADATA (tree structure, shapes, dtypes)
        metadata/metadata           the user's ``metadata`` dict, as JSON
      <step>.orbax-checkpoint-tmp/  a save in progress, or one a killed process
                                    left behind: never listed or restored

Atomicity: orbax writes every file of a checkpoint into
``<step>.orbax-checkpoint-tmp`` and only when all of them are written (and the
save has been waited on) renames that directory to ``<step>``: a single
``rename`` of a directory, atomic on a POSIX filesystem. A process killed at any
point leaves either no ``<step>`` directory or a complete one. Older checkpoints
beyond ``keep`` are deleted only after the rename, so the previous good
checkpoint survives any interruption of a save. Saves here are synchronous.

Restoring goes into the structure of a ``target`` pytree (arrays or
``jax.ShapeDtypeStruct``; NamedTuples such as optax states come back as the same
NamedTuple types), each array read straight into the target leaf's sharding: a
checkpoint saved on one mesh (8 devices, parameters split over ``fsdp``) restores onto
any other (4 devices replicated, one device). Without an explicit step the newest readable checkpoint wins:
a corrupt one (truncated or deleted array files, garbage metadata) is reported
with ``warnings.warn`` and the next older one is tried. Where a checkpoint holds a
tuple of ``n`` subtrees in place of the target's arrays stacked along a leading
axis of size ``n`` (the per-layer params of a ``bijectors.stack``, and their
optimizer moments), the tuple's entries are stacked into the target's layout.

A stack's params have one saved layout: a ``bijectors.Layers`` node (a short stack of many
parameters holds its layers so in memory) is saved as its layers' leaves stacked along a
leading axis (``bijectors.saved_layout``), and restored into whichever layout the target
has (``bijectors.memory_layout``). So the files never depend on how a stack loops.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .bijectors import Layers, memory_layout, saved_layout

__all__ = [
    "CheckpointError",
    "all_steps",
    "latest_step",
    "quarantine",
    "restore",
    "restore_metadata",
    "save",
]

_STATE = "state"  # item holding the pytree
_META = "metadata"  # item holding the user's JSON metadata
_MAX_ERR = 240  # characters of an underlying error quoted in our messages


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the target; the message says why."""


# ----------------------------------------------------------------------------- helpers


def _path(directory: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(directory))


def _short(err: BaseException) -> str:
    """One line, bounded length: orbax/tensorstore errors can span pages."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= _MAX_ERR else text[: _MAX_ERR - 3] + "..."


def _manager(directory: str, *, keep: int | None = None, write: bool = False):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=write,
        read_only=not write,
        cleanup_tmp_directories=write,  # drop leftovers of interrupted saves
        enable_async_checkpointing=False,  # save() returns once the rename is done
        lightweight_initialize=True,  # do not parse every step's metadata on open
    )
    handlers = {_STATE: ocp.StandardCheckpointHandler(), _META: ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _drop_async_noise(previous):
    """An unraisable hook that drops orbax's asyncio leftovers after a failed read."""

    def hook(unraisable):
        exc, obj = unraisable.exc_value, unraisable.object
        code = getattr(obj, "cr_code", None)
        if (isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)) or (
            code is not None and "orbax" in code.co_filename
        ):
            return
        previous(unraisable)

    hook.drops_orbax_noise = True
    return hook


_DROPPING = False


class _OrbaxTaskNoise(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" reports of orbax's coroutines.

    asyncio logs them when the abandoned task is collected, which can happen long after the
    failed read was reported and the fallback succeeded (even at exit)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "never retrieved" not in text:
            return True
        if "orbax" in text:
            return False
        tb = record.exc_info[2] if record.exc_info else None
        files = [frame.filename for frame in traceback.extract_tb(tb)] if tb else []
        return not any("orbax" in name for name in files)


_TASK_NOISE = _OrbaxTaskNoise()


def _keep_dropping_async_noise() -> None:
    """From now on, drop orbax's abandoned-coroutine reports for good (once per process):
    a failed read leaves coroutines that Python reports whenever it collects them, often
    after the fallback succeeded, as pages of tracebacks of an error already reported."""
    global _DROPPING
    if not _DROPPING:
        # the aborted gather also leaves coroutines that were never started; Python warns
        # about each when it is collected. flowzoo itself runs no asyncio code.
        warnings.filterwarnings(
            "ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning
        )
    _DROPPING = True  # _quiet installs the other filters for good when it exits


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence orbax's absl messages and the asyncio debris of a failed read.

    Errors are not lost: every exception reaches the caller (as a warning or a
    CheckpointError that quotes it).
    """
    absl_log, aio_log = logging.getLogger("absl"), logging.getLogger("asyncio")
    levels = absl_log.level, aio_log.level
    hook = sys.unraisablehook
    absl_log.setLevel(logging.CRITICAL)
    aio_log.setLevel(logging.CRITICAL)
    sys.unraisablehook = _drop_async_noise(hook)
    try:
        yield
    finally:
        if _DROPPING and not getattr(hook, "drops_orbax_noise", False):
            hook = _drop_async_noise(hook)
        if _DROPPING and _TASK_NOISE not in aio_log.filters:
            aio_log.addFilter(_TASK_NOISE)
        sys.unraisablehook = hook
        absl_log.setLevel(levels[0])
        aio_log.setLevel(levels[1])


def _flat_shapes(tree) -> dict[tuple, tuple]:
    """{key path: shape} in orbax's own flattening of a pytree (NamedTuples -> fields)."""
    flat = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(tree, keep_empty_nodes=True))
    return {k: _stored_shape(v) for k, v in flat.items()}


def _stored_shape(leaf) -> tuple:
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        leaf = jax.eval_shape(jax.random.key_data, leaf)  # typed keys are stored as key data
    return tuple(getattr(leaf, "shape", np.shape(leaf)))


def _mismatch(saved, target) -> str | None:
    """Why the saved tree (orbax metadata) cannot be restored into ``target``, or None."""
    on_disk, wanted = _flat_shapes(saved), _flat_shapes(target)
    name = ".".join
    missing = sorted(name(k) for k in wanted.keys() - on_disk.keys())
    extra = sorted(name(k) for k in on_disk.keys() - wanted.keys())
    if missing or extra:
        return (
            f"tree structures differ (in target only: {missing[:5]}, "
            f"in checkpoint only: {extra[:5]})"
        )
    for k in sorted(wanted):
        if wanted[k] != on_disk[k]:
            return f"shapes differ at {name(k)}: checkpoint {on_disk[k]} vs target {wanted[k]}"
    return None


def _tuple_entries(on_disk: dict, key: tuple, shape: tuple) -> list[tuple] | None:
    """The checkpoint keys of the ``shape[0]`` entries of a tuple saved in place of the
    target leaf ``key`` of ``shape`` (the entry's index inserted at one level of the key,
    each entry of shape ``shape[1:]``), or ``None``.

    The outermost level that fits wins: a stack of blocks that are themselves tuples (a
    stack of chains) saved as a tuple has the layer index above the block's own indices,
    and where both fit (as many layers as entries per block, all of one shape) the inner
    one would transpose layers and entries."""
    if not shape or shape[0] == 0:
        return None
    for level in range(len(key) + 1):
        entries = [(*key[:level], str(i), *key[level:]) for i in range(shape[0])]
        if all(on_disk.get(e) == shape[1:] for e in entries):
            return entries
    return None


def _stacking_sources(on_disk: dict, wanted: dict) -> dict[tuple, list[tuple]] | None:
    """``{target key: checkpoint keys}`` when the checkpoint fits the target once its
    tuples of per-layer leaves are stacked (one key for a leaf saved as it is), or ``None``
    when some leaf on either side is left unaccounted for."""
    sources = {}
    for key, shape in wanted.items():
        sources[key] = [key] if on_disk.get(key) == shape else _tuple_entries(on_disk, key, shape)
        if sources[key] is None:
            return None
    used = {k for keys in sources.values() for k in keys}
    return sources if used == on_disk.keys() else None


def _restore_stacking(mngr, step: int, target: Any, sources: dict) -> Any:
    """Restore ``step`` as saved, then stack its tuples into ``target``'s layout, dtypes
    and shardings (``sources`` from :func:`_stacking_sources`)."""
    # arrays saved on devices this process does not have are read whole onto every device
    everywhere = NamedSharding(Mesh(np.asarray(jax.devices()), ("devices",)), P())
    args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(fallback_sharding=everywhere)})
    raw = mngr.restore(step, args=args)[_STATE]
    flat = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(raw, keep_empty_nodes=True))
    values = {
        key: flat[keys[0]] if keys == [key] else jax.numpy.stack([flat[k] for k in keys])
        for key, keys in sources.items()
    }
    tree = ocp.tree.deserialize_tree(ocp.tree.from_flat_dict(values), target)
    return jax.tree.map(_like, target, tree)


def _like(target: Any, x: Any) -> Any:
    """``x`` with the dtype (and sharding) of the target leaf ``target``."""
    if isinstance(target, np.generic):
        return target.dtype.type(x)
    if not hasattr(target, "dtype"):  # a Python scalar
        return type(target)(np.asarray(x))
    if not jax.dtypes.issubdtype(target.dtype, jax.dtypes.prng_key):
        x = np.asarray(x, target.dtype)
    sharding = getattr(target, "sharding", None)
    if sharding is None or isinstance(x, jax.Array):
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(target.shape, sharding, lambda index: x[index])


def _abstract(target: Any) -> Any:
    """What orbax restores into: each ``jax.Array`` leaf of ``target`` as a
    ``jax.ShapeDtypeStruct`` with its sharding, so every array is read straight into the
    target's layout (any mesh or device count, whatever the checkpoint was saved from);
    NumPy scalars as 0-d arrays (orbax restores them only so)."""

    def leaf(x):
        if isinstance(x, np.generic):
            return np.asarray(x)
        if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(leaf, target)


def _candidates(directory: str, step: int | None) -> list[int]:
    """Steps to try, newest first; raises CheckpointError when there are none."""
    if not os.path.isdir(directory):
        raise CheckpointError(
            f"no checkpoint in {directory}: the directory does not exist; "
            "train first with `flowzoo train` (or check the path)"
        )
    steps = all_steps(directory)
    if not steps:
        raise CheckpointError(f"no checkpoint in {directory}: train first with `flowzoo train`")
    if step is None:
        return steps[::-1]
    if step not in steps:
        raise CheckpointError(
            f"no checkpoint for step {step} in {directory}: available steps are {steps}"
        )
    return [step]


def _first_readable(directory: str, step: int | None, read) -> tuple[Any, int]:
    """``read(manager, step)`` on the newest readable step, warning about corrupt ones."""
    candidates, errors = _candidates(directory, step), []
    with _quiet(), _manager(directory) as mngr:
        for i, s in enumerate(candidates):
            try:
                return read(mngr, s), s
            except (CheckpointError, MemoryError):
                raise
            except Exception as err:  # any other failure to read means corrupt
                errors.append(_short(err))
                _keep_dropping_async_noise()  # abandoned reads may be collected much later
                time.sleep(0.05)  # let orbax's abandoned reads finish and be
                gc.collect()  # collected while their debris is still silenced
            if step is None:
                older = candidates[i + 1] if i + 1 < len(candidates) else None
                then = "no older checkpoint left" if older is None else f"trying step {older}"
                warnings.warn(
                    f"checkpoint step {s} in {directory} is corrupt/unreadable "
                    f"({errors[-1]}); {then}",
                    stacklevel=3,
                )
    if step is not None:
        raise CheckpointError(
            f"checkpoint step {step} in {directory} is corrupt/unreadable: {errors[0]}; "
            "restore another step (step=None picks the newest readable one)"
        )
    raise CheckpointError(
        f"no readable checkpoint in {directory}: steps {candidates} are all "
        f"corrupt/unreadable (newest: {errors[0]}); delete them and train again"
    )


# ----------------------------------------------------------------------------- public API


def all_steps(directory: str | os.PathLike) -> list[int]:
    """Sorted steps of the finished checkpoints in ``directory`` ([] if it does not exist).

    Directories of unfinished saves (``<step>.orbax-checkpoint-tmp``) are not listed.
    """
    directory = _path(directory)
    if not os.path.isdir(directory):
        return []
    with _quiet(), _manager(directory) as mngr:
        return sorted(int(s) for s in mngr.all_steps())


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest finished step in ``directory``, or None when there is none."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def save(
    directory: str | os.PathLike,
    step: int,
    tree: Any,
    *,
    keep: int | None = 3,
    metadata: dict | None = None,
) -> None:
    """Save ``tree`` as ``directory/<step>``, atomically, and return once it is on disk.

    Args:
      directory: the run's checkpoint directory (created if missing).
      step: the training step; the checkpoint's name.
      tree: any pytree of arrays / numpy arrays / Python scalars (params, optax states,
        step counters, PRNG keys as ``jax.random.key_data`` or typed keys).
      keep: keep at most this many most recent checkpoints (None: keep all). Older ones
        are deleted only after the new one is complete.
      metadata: a JSON-serialisable dict stored next to the arrays
        (``<step>/metadata/metadata``); read it back with :func:`restore_metadata`.

    Saving a step that already exists is a no-op: the existing checkpoint is kept
    (checkpoints are immutable once written). A leftover ``*.orbax-checkpoint-tmp``
    directory of an interrupted save is removed first.
    """
    directory, step = _path(directory), int(step)
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1 or None, got {keep}")
    metadata = {} if metadata is None else metadata
    try:
        if not isinstance(metadata, dict):
            raise TypeError(f"got a {type(metadata).__name__}")
        json.dumps(metadata)
    except (TypeError, ValueError) as err:
        raise TypeError(f"checkpoint metadata must be a JSON-serialisable dict: {err}") from err
    # every process creates the directory before listing it, so that in a multi-process
    # run all of them take the same path through orbax (whose managers synchronise)
    os.makedirs(directory, exist_ok=True)
    if step in all_steps(directory):
        return
    tree = saved_layout(tree)  # one saved layout for every stack (Layers are stacked)
    args = ocp.args.Composite(
        **{_STATE: ocp.args.StandardSave(tree), _META: ocp.args.JsonSave(metadata)}
    )
    try:
        with _quiet(), _manager(directory, keep=keep, write=True) as mngr:
            mngr.save(step, args=args, force=True)
            mngr.wait_until_finished()
    except Exception as err:
        raise CheckpointError(
            f"saving checkpoint step {step} in {directory} failed ({_short(err)}); "
            "earlier checkpoints are untouched"
        ) from err


def quarantine(directory: str | os.PathLike, steps: list[int]) -> list[str]:
    """Move the checkpoints ``steps`` out of ``directory`` (e.g. corrupt ones), keeping them.

    Each ``directory/<step>`` goes to ``<directory>_corrupt/<step>`` (with a numeric suffix
    if that exists), so the step can be written again and the bad files stay available for
    inspection. In a multi-process run only process 0 moves files; all processes wait.

    Returns:
      The new paths.
    """
    directory = _path(directory)
    dest_root = directory.rstrip(os.sep) + "_corrupt"
    moved = []
    for step in steps:
        src = os.path.join(directory, str(int(step)))
        dest, n = os.path.join(dest_root, str(int(step))), 1
        while os.path.exists(dest):
            dest, n = os.path.join(dest_root, f"{int(step)}-{n}"), n + 1
        moved.append(dest)
        if jax.process_index() == 0 and os.path.isdir(src):
            os.makedirs(dest_root, exist_ok=True)
            os.replace(src, dest)
            warnings.warn(f"moved unreadable checkpoint {src} to {dest}", stacklevel=2)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("flowzoo.checkpoint.quarantine")
    return moved


def restore(directory: str | os.PathLike, target: Any, step: int | None = None) -> tuple[Any, int]:
    """Restore a checkpoint into the structure, shapes and dtypes of ``target``.

    Args:
      directory: the checkpoint directory given to :func:`save`.
      target: a pytree like the saved one, of arrays or ``jax.ShapeDtypeStruct``
        (e.g. a freshly initialised TrainState or its ``jax.eval_shape``). The result
        has the same treedef (NamedTuples come back as the same types); arrays take
        the target's dtype (and sharding, for ``jax.Array`` leaves).
      step: the step to restore; None restores the newest readable checkpoint, warning
        (``warnings.warn``) about each corrupt newer one it skips.

    Returns:
      ``(tree, step)``: the restored pytree and the step it came from.

    Raises:
      CheckpointError: no checkpoint, none readable, the requested step is missing or
        corrupt, or the checkpoint's tree structure / shapes differ from ``target``'s
        other than by tuples of per-layer subtrees where ``target`` stacks them (those
        are stacked into ``target``'s layout).
    """
    directory = _path(directory)
    if _has_layers(target):  # read the saved (stacked) layout, then cut it into Layers
        tree, s = restore(directory, _saved_target(target), step)
        return _in_layout_of(target, tree), s

    def read(mngr, s):
        saved = mngr.item_metadata(s)[_STATE]
        if saved is None:
            raise ValueError(f"item {_STATE!r} is missing")
        why = _mismatch(saved.tree, target)
        if why is not None:
            sources = _stacking_sources(_flat_shapes(saved.tree), _flat_shapes(target))
            if sources is not None:
                return _restore_stacking(mngr, s, target, sources)
            raise CheckpointError(
                f"checkpoint step {s} in {directory} does not fit the target: {why}; "
                "was it saved by a different model or config?"
            )
        args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(_abstract(target))})
        tree = mngr.restore(s, args=args)[_STATE]
        return jax.tree.map(
            lambda t, x: t.dtype.type(x) if isinstance(t, np.generic) else x, target, tree
        )

    return _first_readable(directory, step, read)


def _is_layers(node: Any) -> bool:
    return isinstance(node, Layers)


def _has_layers(tree: Any) -> bool:
    return any(_is_layers(n) for n in jax.tree.leaves(tree, is_leaf=_is_layers))


def _saved_target(target: Any) -> Any:
    """``target`` in the saved layout, its ``Layers``' device arrays made abstract first (so
    nothing is stacked on the devices only to be overwritten)."""

    def abstract(x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    def node(n):
        return jax.tree.map(abstract, n) if _is_layers(n) else n

    return saved_layout(jax.tree.map(node, target, is_leaf=_is_layers))


def _in_layout_of(target: Any, tree: Any) -> Any:
    """``tree`` (saved layout) cut into ``target``'s ``Layers``, each layer's arrays on the
    target leaf's sharding."""

    def place(t, x):
        if isinstance(t, jax.Array) and isinstance(x, jax.Array) and x.sharding != t.sharding:
            return jax.device_put(x, t.sharding)
        return x

    return jax.tree.map(place, target, memory_layout(tree, target))


def restore_metadata(directory: str | os.PathLike, step: int | None = None) -> dict:
    """The ``metadata`` dict saved with a checkpoint ({} if none was given).

    With ``step=None`` it is read from the newest checkpoint whose metadata is
    readable (warning about unreadable newer ones), like :func:`restore`.
    """
    directory = _path(directory)

    def read(mngr, s):
        meta = mngr.restore(s, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]
        if not isinstance(meta, dict):
            raise ValueError(f"metadata is a {type(meta).__name__}, not a dict")
        return meta

    return _first_readable(directory, step, read)[0]
