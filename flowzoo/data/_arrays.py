"""Array data: loading ``.npy``/``.npz`` files, validation, standardisation and batch functions.

Batch functions have the signature ``batch_fn(key, step) -> (batch_size, *event_shape)`` and
are pure functions of ``(key, step)``: the training loop passes its data key and the step
number, so a run resumed from a checkpoint at step ``s`` sees exactly the batches the
uninterrupted run would have seen. They work with a traced ``step`` under ``jax.jit`` and
inside ``lax.scan``.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, ArrayLike, Batch, Float, Key, Scalar, Shaped
from ._shuffle import keyed_permutation

DataLike = Shaped[ArrayLike, "batch *event"]
"""NumPy or JAX data with a leading example axis (any real dtype)."""

BatchFn = Callable[[Key, ArrayLike], Batch]
"""``batch_fn(key, step) -> (batch_size, *event_shape)``; pure in ``(key, step)``."""

_MIN_SCALE = 1e-6


class DataError(ValueError):
    """Bad data: a missing or unreadable file, a wrong shape or dtype, NaN/inf values."""


# --------------------------------------------------------------------------- loading


def _nonfinite_message(arr: np.ndarray, what: str) -> str | None:
    """One-line description of the non-finite entries of ``arr`` (or None if all finite)."""
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count == 0:
        return None
    n_nan = int(np.isnan(arr).sum())
    rows = bad.reshape(arr.shape[0], -1).any(axis=1) if arr.ndim > 1 else bad
    first = int(np.argmax(rows))
    return (
        f"{what}: {count} non-finite value(s) ({n_nan} NaN, {count - n_nan} inf) in "
        f"{int(rows.sum())} of {arr.shape[0]} rows, first bad row index {first}; "
        "drop or impute those rows before training"
    )


def _read(path: Path, key: str | None) -> tuple[np.ndarray, str]:
    """Read the raw array from ``path``; returns it and a label for messages."""
    try:
        # open the file ourselves: np.load leaks its handle when a .npz is not a valid zip
        with open(path, "rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded, str(path)
            with loaded as npz:
                return _pick(path, npz, key)
    except DataError:
        raise
    except ValueError as err:
        if "Object arrays" in str(err):
            raise DataError(
                f"{path}: the array has dtype object (pickled Python objects), not numbers; "
                "convert it to a numeric array (e.g. np.asarray(x, np.float32)) and save again"
            ) from None
        raise _corrupt(path, err) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        raise _corrupt(path, err) from None


def _pick(path: Path, npz, key: str | None) -> tuple[np.ndarray, str]:
    names = list(npz.files)
    if not names:
        raise DataError(f"{path}: the .npz file holds no arrays; save one with np.savez")
    if key is None:
        if len(names) != 1:
            raise DataError(
                f"{path}: the .npz file holds {len(names)} arrays ({', '.join(names)}); "
                "pass key= (CLI: --key) to choose one"
            )
        key = names[0]
    elif key not in names:
        raise DataError(
            f"{path}: no array named {key!r} in the .npz file; available: {', '.join(names)}"
        )
    return npz[key], f"{path}[{key}]"


def _corrupt(path: Path, err: Exception) -> DataError:
    detail = " ".join(str(err).split()) or type(err).__name__
    return DataError(
        f"{path}: could not read the file as {path.suffix.lower()} ({detail}); it is "
        "corrupt, truncated or not a NumPy file; re-create it with np.save / np.savez"
    )


def load_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Load a numeric array from a ``.npy`` or ``.npz`` file as float32, checking it.

    Args:
      path: a ``.npy`` file (one array) or ``.npz`` archive.
      key: for ``.npz``, the name of the array to load; may be omitted when the archive
        holds exactly one array. Ignored for ``.npy``.

    Returns:
      A float32 NumPy array of the file's shape ``(n, *event_shape)`` (host memory; the
      batch functions move it to the device). Boolean and integer data are converted.

    Raises:
      DataError: missing file, unsupported extension, unreadable or corrupt file, missing or
        ambiguous ``.npz`` key, non-numeric or complex dtype, a 0-d or empty array, or
        NaN/inf values (the message gives their count and the first bad row index).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path (cwd is {Path.cwd()})")
    if not path.is_file():
        raise DataError(f"{path}: is not a file; pass the path of a .npy or .npz file")
    if path.suffix.lower() not in (".npy", ".npz"):
        raise DataError(
            f"{path}: unsupported extension {path.suffix!r}; save the array with np.save "
            "(.npy) or np.savez (.npz)"
        )
    arr, what = _read(path, key)

    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.issubdtype(
        arr.dtype, np.complexfloating
    ):
        raise DataError(
            f"{what}: dtype {arr.dtype} is not real numeric; store float, int or bool values"
        )
    if arr.ndim == 0:
        raise DataError(f"{what}: is a 0-d scalar; expected an array of shape (n, *event_shape)")
    if arr.size == 0:
        raise DataError(f"{what}: is empty (shape {arr.shape}); expected at least one example")
    message = _nonfinite_message(arr, what) if np.issubdtype(arr.dtype, np.floating) else None
    if message:
        raise DataError(message)
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    message = _nonfinite_message(out, f"{what} (after conversion to float32)")
    if message:
        raise DataError(message.replace("drop or impute", "rescale (values exceed float32 range)"))
    return out


def check_batch(x: ArrayLike, event_shape: int | Sequence[int], what: str = "data") -> None:
    """Raise :class:`DataError` unless ``x`` has shape ``(n, *event_shape)`` and is all finite.

    The shape check works on tracers; the finiteness check needs concrete values and is
    skipped for traced arrays (inside ``jit``).
    """
    event = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(map(int, event_shape))
    shape = tuple(np.shape(x))
    if len(shape) != 1 + len(event) or shape[1:] != event:
        raise DataError(
            f"{what}: expected shape (n, {', '.join(map(str, event))}), got {shape}; "
            "reshape the data to one example per row"
        )
    if isinstance(x, jax.core.Tracer):
        return
    arr = np.asarray(x)
    if arr.dtype.kind in "fc" and arr.size:
        message = _nonfinite_message(arr, what)
        if message:
            raise DataError(message)


# --------------------------------------------------------------------------- standardising


class Standardizer(NamedTuple):
    """Per-feature affine map ``standardize(x) = (x - shift) / scale``; arrays of event shape."""

    shift: Float[Array, "*event"]
    scale: Float[Array, "*event"]


def fit_standardizer(x: DataLike) -> Standardizer:
    """Per-feature mean and standard deviation over axis 0, std floored at ``1e-6``.

    Concrete inputs (NumPy or JAX arrays) are reduced in float64 on the host, so a constant
    feature gets a shift equal to its value and standardises to exactly 0 (a float32 mean is
    off by ~1e-7 relative, which the ``1e-6`` floor would blow up to O(1)). Traced inputs
    (inside ``jit``) are reduced in float32.

    Args:
      x: ``(n, *event)`` data in raw units, ``n >= 1``.

    Returns:
      :class:`Standardizer` with float32 ``shift`` (mean) and ``scale`` (std) of shape
      ``event``.
    """
    if np.ndim(x) < 1 or np.shape(x)[0] == 0:
        raise DataError(f"fit_standardizer: need at least one example, got shape {np.shape(x)}")
    if isinstance(x, jax.core.Tracer):
        x = x.astype(jnp.float32)
        return Standardizer(x.mean(axis=0), jnp.maximum(x.std(axis=0), _MIN_SCALE))
    x = np.asarray(x)
    shift = np.mean(x, axis=0, dtype=np.float64)
    scale = np.maximum(np.std(x, axis=0, dtype=np.float64), _MIN_SCALE)
    return Standardizer(jnp.asarray(shift, jnp.float32), jnp.asarray(scale, jnp.float32))


def _float(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _lift(v: Array, x: Array) -> Array:
    """Reshape the event-shaped ``v`` to broadcast against ``x`` under strict rank promotion."""
    v = jnp.asarray(v)
    return v.reshape((1,) * (x.ndim - v.ndim) + v.shape)


def standardize(s: Standardizer, x: Shaped[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """Raw units -> standardised units: ``(x - shift) / scale``; ``x`` is ``(..., *event)``."""
    x = _float(x)
    return (x - _lift(s.shift, x)) / _lift(s.scale, x)


def unstandardize(s: Standardizer, x: Shaped[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """Standardised units -> raw units: ``x * scale + shift``; ``x`` is ``(..., *event)``."""
    x = _float(x)
    return x * _lift(s.scale, x) + _lift(s.shift, x)


def standardizer_log_det(s: Standardizer) -> Scalar:
    """``log|det d standardize(x) / dx| = -sum(log scale)`` for one example (nats).

    Converts a log-density of the model fitted in standardised units to raw units:
    ``log p_raw(x) = log p_std(standardize(s, x)) + standardizer_log_det(s)``.
    """
    return -jnp.sum(jnp.log(jnp.asarray(s.scale)))


# --------------------------------------------------------------------------- batches


def array_batches(x: DataLike, batch_size: int) -> BatchFn:
    """Minibatches of a fixed array, reshuffled every epoch, as a pure function of the step.

    ``x`` is moved to the device once. With ``steps_per_epoch = n // batch_size`` (the
    remainder of each epoch's permutation is dropped), step ``s`` belongs to epoch
    ``e = s // steps_per_epoch``, whose order is the keyed permutation
    ``perm = keyed_permutation(jax.random.fold_in(key, e), arange(n), n)`` (a Feistel
    network, :func:`flowzoo.data.keyed_permutation`), and returns ``x[perm[i * B:(i + 1) * B]]``
    with ``i = s % steps_per_epoch``. Every example appears exactly once per epoch. ``step``
    may be a Python int or a traced integer (``jit``, ``lax.scan``). Only the ``B`` indices of
    the batch are computed, so a step costs ``O(B)`` however large ``n`` is (sorting all
    ``n`` indices with ``jax.random.permutation`` every step costs ``O(n log n)``).

    Args:
      x: ``(n, *event)`` data (NumPy or JAX).
      batch_size: static Python int, ``1 <= batch_size <= n``.

    Returns:
      ``batch_fn(key, step) -> (batch_size, *event)`` with the dtype of ``x``.
    """
    data = jnp.asarray(x)
    if data.ndim < 1:
        raise DataError(f"array_batches: x must have a leading example axis, got {data.shape}")
    n = int(data.shape[0])
    batch_size = int(batch_size)
    if batch_size < 1:
        raise DataError(f"array_batches: batch_size must be >= 1, got {batch_size}")
    if batch_size > n:
        raise DataError(
            f"array_batches: batch_size {batch_size} exceeds the {n} examples; "
            "lower the batch size or add data"
        )
    steps_per_epoch = n // batch_size

    def batch_fn(key: Key, step: ArrayLike) -> Batch:
        step = jnp.asarray(step)
        epoch = step // steps_per_epoch
        i = step % steps_per_epoch
        positions = i * batch_size + jnp.arange(batch_size)
        idx = keyed_permutation(jax.random.fold_in(key, epoch), positions, n)
        return jnp.take(data, idx.astype(jnp.int32), axis=0)

    return batch_fn


def sampler_batches(sample_fn: Callable[[Key, int], Batch], batch_size: int) -> BatchFn:
    """Fresh samples every step: ``batch_fn(key, step) = sample_fn(fold_in(key, step), B)``.

    Args:
      sample_fn: ``(key, n) -> (n, *event)``, e.g. a toy target such as
        :func:`flowzoo.data.two_moons` or ``functools.partial(toy, "rings")``.
      batch_size: static Python int.

    Returns:
      ``batch_fn(key, step) -> (batch_size, *event)``.
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise DataError(f"sampler_batches: batch_size must be >= 1, got {batch_size}")

    def batch_fn(key: Key, step: ArrayLike) -> Batch:
        return sample_fn(jax.random.fold_in(key, step), batch_size)

    return batch_fn
