"""Streamed batches: rows read from a host-side source by worker threads, ahead of the device.

For data that should not sit in memory (or on the device) as one array: a NumPy memmap
(``np.load(path, mmap_mode="r")``) or any row source (:class:`RowSource`, e.g. PNG images in
a tar read by seeking). :func:`streamed_batches` keeps the promise of
:func:`flowzoo.data.array_batches`: the batch of step ``s`` is a pure function of
``(data_key, s)``, the *same rows* ``array_batches(x, B)(data_key, s)`` takes from the same
array (its keyed Feistel permutation, evaluated by a NumPy twin on the host), so a run may
switch between in-memory and streamed data and a resumed run sees the batches of the
uninterrupted one. Random horizontal flips, when asked for, are a pure function of
``(data_key, step, row)`` too.

Each process reads only the rows ``[lo, hi)`` of each global batch that its devices hold
(:meth:`StreamBatches.read`). A pool of worker threads gathers and flips one step's rows per
task (NumPy's copies release the GIL), a bounded number of steps ahead of the training
loop: at most ``prefetch`` times the last request's steps are held. A thread pool gathers
from a memmap as fast as grain fed the same per-step work, and many times faster than
grain fed one example per element (``benchmarks/input_pipeline.py``), so flowzoo does
not depend on grain.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from .._types import ArrayLike, Batch, Key
from ._arrays import DataError
from ._png import decode_image, read_tar_member, tar_image_index
from ._shuffle import _ROUNDS, _half_bits

_FLIP_DATA = 0xFFFFFFFF  # fold_in datum of the flip key; epoch keys use fold_in(key, epoch)
_MAX_WORKERS = 16
_U32 = np.uint32


@runtime_checkable
class RowSource(Protocol):
    """A random-access source of examples for :func:`streamed_batches`.

    * ``shape``: ``(n, *event_shape)``; ``dtype``: the NumPy dtype of the rows.
    * ``rows(indices)``: the examples at the int64 ``indices`` (unique, any order), as an
      array ``(len(indices), *event_shape)`` in the order given. Called from several
      threads at once, so it must be thread-safe (``os.pread`` rather than seek + read).

    NumPy arrays and memmaps need no wrapper.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    def rows(self, indices: np.ndarray) -> np.ndarray: ...


class _ArrayRows:
    """:class:`RowSource` over a NumPy array or memmap: a fancy index in ascending order
    (sequential disk reads for a memmap), put back in the order asked for."""

    def __init__(self, x: np.ndarray):
        self.x, self.shape, self.dtype = x, tuple(x.shape), np.dtype(x.dtype)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        order = np.argsort(indices, kind="stable")
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        out[order] = self.x[indices[order]]
        return out


class TarImages:
    """:class:`RowSource` over the PNG/JPEG images of an uncompressed tar, in name order.

    Built by :func:`tar_images`. ``rows`` reads each image with one ``os.pread`` at the
    offset of :func:`~flowzoo.data.tar_image_index` and decodes it with
    :func:`~flowzoo.data.decode_image`. Pillow releases the GIL while it inflates, but
    parses the file in Python, so for small images the worker threads decode on about one
    core; for long runs, decode once into a ``.npy`` and stream its memmap. ``names[i]`` is
    the member of row ``i``.
    """

    def __init__(self, path: str | os.PathLike, *, cache: bool = True):
        self.path = os.fspath(path)
        self.index = tar_image_index(self.path, cache=cache)
        self.names = self.index.names
        self._fd = os.open(self.path, os.O_RDONLY)
        self._finalizer = weakref.finalize(self, os.close, self._fd)
        first = self._decode(0)
        self.shape = (len(self.names), *first.shape)
        self.dtype = np.dtype(np.uint8)

    def _decode(self, i: int) -> np.ndarray:
        where = f"{self.path}: {self.names[i]}"
        return decode_image(read_tar_member(self._fd, self.index, int(i)), where)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        for j, i in enumerate(indices):
            img = self._decode(i)
            if img.shape != out.shape[1:]:
                raise DataError(
                    f"{self.path}: {self.names[i]} is {img.shape}, the tar's first image "
                    f"{out.shape[1:]}; streamed images must share one size (resize them)"
                )
            out[j] = img
        return out

    def close(self) -> None:
        """Close the tar (also done when the source is garbage-collected)."""
        self._finalizer()


def tar_images(path: str | os.PathLike, *, cache: bool = True) -> TarImages:
    """The images of an uncompressed tar (PNG/JPEG, one size) as a :class:`RowSource`.

    Args:
      path: a ``.tar`` of images, e.g. downsampled ImageNet's ``train_32x32.tar``.
      cache: cache the tar's index under ``$FLOWZOO_CACHE`` (see
        :func:`~flowzoo.data.tar_image_index`).

    Returns:
      :class:`TarImages`: ``shape`` ``(n, H, W, C)`` from the first image, ``uint8`` rows
      in member-name order.

    Raises:
      DataError: what :func:`~flowzoo.data.tar_image_index` refuses; at read time, an image
        of another size or a corrupt image (the message names the member).
    """
    return TarImages(path, cache=cache)


# --------------------------------------------------------------------------- NumPy twins


def _mix_np(x: np.ndarray) -> np.ndarray:
    """``flowzoo.data._shuffle._mix`` on NumPy uint32 (products wrap modulo 2**32)."""
    x = x ^ (x >> _U32(16))
    x = x * _U32(0x7FEB352D)
    x = x ^ (x >> _U32(15))
    x = x * _U32(0x846CA68B)
    return x ^ (x >> _U32(16))


def _permute(round_keys: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """The Feistel network of ``keyed_permutation`` with its round keys given, in NumPy."""
    half = _U32(_half_bits(n))
    mask = _U32((1 << int(half)) - 1)
    keys = np.asarray(round_keys, _U32)

    def encrypt(x):
        left, right = x >> half, x & mask
        for i in range(_ROUNDS):
            left, right = right, left ^ (_mix_np(right ^ keys[i]) & mask)
        return (left << half) | right

    x = encrypt(np.asarray(idx).astype(_U32))
    out = x >= n
    while out.any():  # cycle-walk: the domain is < 4n, so walks are short
        x[out] = encrypt(x[out])
        out = x >= n
    return x


def _round_keys(key: Key) -> np.ndarray:
    return np.asarray(jax.random.bits(key, (_ROUNDS,), jnp.uint32))


def _flip_seeds(key: Key) -> np.ndarray:
    return np.asarray(jax.random.bits(jax.random.fold_in(key, _FLIP_DATA), (2,), jnp.uint32))


def _flip(seeds: np.ndarray, step: ArrayLike, rows: ArrayLike) -> np.ndarray:
    step, rows = (np.asarray(a, np.int64).astype(_U32) for a in np.broadcast_arrays(step, rows))
    h = _mix_np(step ^ seeds[0])
    h = _mix_np(h ^ rows ^ seeds[1])
    return (h >> _U32(31)).astype(bool)


def keyed_permutation_np(key: Key, idx: ArrayLike, n: int) -> np.ndarray:
    """NumPy twin of :func:`flowzoo.data.keyed_permutation`, equal to it bit for bit.

    The host side of :func:`streamed_batches`: the four round keys come from ``key`` through
    JAX (once), the Feistel rounds and the cycle-walk run in NumPy.

    Args:
      key: PRNG key.
      idx: integer positions in ``[0, n)``, any shape.
      n: Python int, ``1 <= n < 2**32``.

    Returns:
      uint32 NumPy array like ``idx``: ``keyed_permutation(key, idx, n)``.
    """
    if not 1 <= n < 2**32:
        raise ValueError(f"keyed_permutation_np needs 1 <= n < 2**32, got {n}")
    return _permute(_round_keys(key), np.asarray(idx), n)


def flip_mask(key: Key, step: ArrayLike, rows: ArrayLike) -> np.ndarray:
    """Which rows of step ``step``'s global batch :func:`streamed_batches` flips.

    A pure function of the data key, the step and the row number (``0 <= row <
    batch_size``): bit 31 of ``mix(mix(step ^ s0) ^ row ^ s1)``, where ``mix`` is the
    32-bit hash of the Feistel permutation and ``(s0, s1)`` are two words drawn from
    ``fold_in(key, 2**32 - 1)`` (epoch permutations use ``fold_in(key, epoch)``). It does not
    depend on which process reads the row or on how steps are grouped into calls; each
    row is flipped with probability 1/2, independently of the example it holds.

    Returns:
      bool NumPy array of the broadcast shape of ``step`` and ``rows``.
    """
    return _flip(_flip_seeds(key), step, rows)


# --------------------------------------------------------------------------- one step


class _Plan:
    """What one step's rows are: the source, its size, the batch and the flips (immutable)."""

    def __init__(self, source: RowSource, batch_size: int, flip: bool):
        self.source, self.batch_size, self.flip = source, batch_size, flip
        self.n = int(source.shape[0])
        self.steps_per_epoch = self.n // batch_size

    def indices(self, round_keys: np.ndarray, step: int, lo: int, hi: int) -> np.ndarray:
        """Example indices of rows ``[lo, hi)`` of step ``step`` (its epoch's round keys)."""
        i = step % self.steps_per_epoch
        positions = np.arange(i * self.batch_size + lo, i * self.batch_size + hi, dtype=np.int64)
        return _permute(round_keys, positions, self.n).astype(np.int64)

    def load(self, round_keys, seeds, step: int, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` of step ``step``: gathered, then flipped where the mask says."""
        out = np.ascontiguousarray(self.source.rows(self.indices(round_keys, step, lo, hi)))
        if self.flip:
            m = _flip(seeds, step, np.arange(lo, hi))
            # one pixel (C values) as one item: the reversed copy moves whole pixels
            pixels = out.view(np.dtype((np.void, out.shape[-1] * out.itemsize)))
            pixels[m] = pixels[m, :, ::-1]
        return out


def _key_id(key: Key) -> bytes:
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return np.asarray(jax.random.key_data(key) if typed else key).tobytes()


# --------------------------------------------------------------------------- the stream


class StreamBatches:
    """Batches streamed from a host-side source; build with :func:`streamed_batches`.

    Attributes:
      batch_size: the global batch size ``B``.
      element_shape: the event shape of one example, e.g. ``(H, W, C)``.
      dtype: what the batches hold on the device (what the loss sees).
      host_dtype: what the host reads and hands over (the source's dtype; a uint8 image
        batch crosses to the device in a quarter of float32's bytes).

    Two ways in: ``stream(key, step)`` is a batch function like
    :func:`~flowzoo.data.array_batches`' (works under ``jit`` and ``lax.scan`` through
    ``jax.pure_callback``; one step at a time, no read-ahead), and :meth:`read` gives the
    host arrays of several steps, read ahead by the worker threads, which is what
    :func:`flowzoo.train.fit` uses. :meth:`close` (or ``with``) stops the workers.
    """

    def __init__(self, plan: _Plan, dtype: np.dtype, workers: int, prefetch: int):
        self._plan, self._prefetch = plan, prefetch
        self.batch_size = plan.batch_size
        self.element_shape = tuple(plan.source.shape[1:])
        self.host_dtype = np.dtype(plan.source.dtype)
        self.dtype = np.dtype(dtype)
        self.workers = workers
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "flowzoo-stream")
        self._finalizer = weakref.finalize(self, self._pool.shutdown, False, cancel_futures=True)
        self._lock = threading.Lock()
        self._ahead: collections.deque = collections.deque()  # (step, future), ascending
        self._where: tuple | None = None  # (key id, lo, hi) of the read-ahead steps
        self._next = 0  # the first step not yet queued
        self._keys: dict[int, np.ndarray] = {}  # epoch -> round keys, for self._where's key
        self._seeds: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"StreamBatches(n={self._plan.n}, batch_size={self.batch_size}, element_shape="
            f"{self.element_shape}, flip={self._plan.flip}, workers={self.workers}, "
            f"prefetch={self._prefetch})"
        )

    def __call__(self, key: Key, step: ArrayLike) -> Batch:
        """The full batch of ``step``: ``(batch_size, *element_shape)`` of :attr:`dtype`."""
        plan = self._plan
        step = jnp.asarray(step, jnp.int32)
        epoch = step // plan.steps_per_epoch
        round_keys = jax.random.bits(jax.random.fold_in(key, epoch), (_ROUNDS,), jnp.uint32)
        seeds = jax.random.bits(jax.random.fold_in(key, _FLIP_DATA), (2,), jnp.uint32)

        def host(rk, sd, s):
            return plan.load(np.asarray(rk), np.asarray(sd), int(s), 0, plan.batch_size)

        shape = jax.ShapeDtypeStruct((self.batch_size, *self.element_shape), self.host_dtype)
        batch = jax.pure_callback(host, shape, round_keys, seeds, step, vmap_method="sequential")
        return batch.astype(self.dtype)

    def read(self, key: Key, first: int, num: int, lo: int = 0, hi: int | None = None):
        """Rows ``[lo, hi)`` of the batches of steps ``first .. first + num - 1``.

        Blocks until they are read. Steps already read ahead for the same ``(key, lo, hi)``
        are taken from the queue, the rest are read now; then the workers read the next
        ``prefetch * num`` steps ahead. A request out of sequence drops the read-ahead.

        Returns:
          host array ``(num, hi - lo, *element_shape)`` of :attr:`host_dtype`: row ``r``
          of step ``s`` is row ``lo + r`` of ``stream(key, s)``.
        """
        hi = self.batch_size if hi is None else int(hi)
        first, num, lo = int(first), int(num), int(lo)
        if not 0 <= lo < hi <= self.batch_size or num < 1 or first < 0:
            raise ValueError(
                f"StreamBatches.read: need 0 <= lo < hi <= batch_size={self.batch_size}, "
                f"num >= 1 and first >= 0; got lo={lo}, hi={hi}, num={num}, first={first}"
            )
        with self._lock:
            if self._pool is None:
                raise RuntimeError("StreamBatches.read: the stream is closed")
            where = (_key_id(key), lo, hi)
            if where != self._where or not self._ahead or self._ahead[0][0] != first:
                self._drop()
                self._where, self._next = where, first
                self._keys, self._seeds = {}, _flip_seeds(key)
            self._submit(key, first + num)
            parts = [self._ahead.popleft()[1] for _ in range(num)]
            self._submit(key, first + num * (1 + self._prefetch))
        out = np.empty((num, hi - lo, *self.element_shape), self.host_dtype)
        for j, future in enumerate(parts):
            out[j] = future.result()
        return out

    def _submit(self, key: Key, stop: int) -> None:
        """Queue steps ``self._next .. stop - 1`` for the workers."""
        _, lo, hi = self._where
        for step in range(self._next, stop):
            self._ahead.append((step, self._task(key, step, lo, hi)))
        self._next = max(self._next, stop)

    def _task(self, key: Key, step: int, lo: int, hi: int):
        epoch = step // self._plan.steps_per_epoch
        if epoch not in self._keys:
            if len(self._keys) > 4:
                self._keys.clear()
            self._keys[epoch] = _round_keys(jax.random.fold_in(key, epoch))
        return self._pool.submit(self._plan.load, self._keys[epoch], self._seeds, step, lo, hi)

    def _drop(self) -> None:
        while self._ahead:
            self._ahead.popleft()[1].cancel()

    def close(self) -> None:
        """Stop the workers and drop what was read ahead (idempotent)."""
        with self._lock:
            if self._pool is not None:
                self._drop()
                self._finalizer()
                self._pool = None

    def __enter__(self) -> StreamBatches:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_WORKERS))


def streamed_batches(
    source: np.ndarray | RowSource,
    batch_size: int,
    *,
    flip: bool = False,
    dtype: Any = None,
    workers: int | None = None,
    prefetch: int = 2,
) -> StreamBatches:
    """Batches of ``source`` read on host threads: the rows of ``array_batches(source, B)``.

    Step ``s``'s batch holds the examples ``array_batches`` would take (the same keyed
    permutation per epoch, ``n // batch_size`` steps per epoch, the remainder dropped), read
    from ``source`` on the host; with ``flip``, rows where :func:`flip_mask` is set are
    mirrored along the width axis (axis 2 of ``(n, H, W, C)`` images).

    Args:
      source: ``(n, *event)`` NumPy array or memmap (``np.load(path, mmap_mode="r")``), or a
        :class:`RowSource` (e.g. PNG images in a tar).
      batch_size: global batch size, ``1 <= batch_size <= n``.
      flip: random horizontal flips keyed by ``(data_key, step, row)`` (images only).
      dtype: what the batch holds on the device, e.g. ``np.float32`` for uint8 images (the
        values are cast, never rescaled); ``None``: the source's dtype. The host reads and
        hands over the source's dtype; the cast happens on the device.
      workers: reader threads (default: the cores this process may use, at most 16).
      prefetch: how many requests' worth of steps the workers read ahead.

    Returns:
      :class:`StreamBatches`.

    Raises:
      DataError: a source without rows or shape, a batch size out of range, ``flip`` on
        data that are not ``(n, H, W, C)`` images, ``workers < 1`` or ``prefetch < 0``.
    """
    if isinstance(source, np.ndarray):
        source = _ArrayRows(source)
    elif not isinstance(source, RowSource):
        raise DataError(
            f"streamed_batches: source must be a NumPy array/memmap or have shape, dtype and "
            f"rows(indices); got {type(source).__name__} (use np.asarray or np.load(..., "
            "mmap_mode='r'))"
        )
    shape: Sequence[int] = tuple(source.shape)
    if len(shape) < 1 or shape[0] < 1:
        raise DataError(f"streamed_batches: the source has no examples (shape {shape})")
    batch_size = int(batch_size)
    if not 1 <= batch_size <= shape[0]:
        raise DataError(
            f"streamed_batches: batch_size must be in [1, {shape[0]}] (the source's examples), "
            f"got {batch_size}"
        )
    if flip and len(shape) != 4:
        raise DataError(
            f"streamed_batches: flip needs (n, H, W, C) images, the source has shape {shape}; "
            "pass flip=False"
        )
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1 or prefetch < 0:
        raise DataError(
            f"streamed_batches: need workers >= 1 and prefetch >= 0, got {workers}, {prefetch}"
        )
    dtype = np.dtype(source.dtype if dtype is None else dtype)
    return StreamBatches(_Plan(source, batch_size, bool(flip)), dtype, workers, int(prefetch))
