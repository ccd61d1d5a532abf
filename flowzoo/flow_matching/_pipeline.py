"""Exact-OT paired batches computed ahead of the train step, on host threads.

The exact-OT pairing of a minibatch depends only on the data and the noise, never on the
parameters, so it need not sit on the critical path of the step: :func:`ot_paired_batches`
draws step ``s``'s data rows and noise on the host as a pure function of ``(key, s)``,
pairs them by the exact assignment, and hands the pairs to the compiled step through a
``jax.pure_callback``, while a thread pool already pairs the next steps' batches. The step
trains on them with ``cfm_loss(..., source="paired")``. Time convention: t=0 noise ``x0``,
t=1 data ``x1``.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, ArrayLike, Key
from ..data import DataError, check_batch
from ._assignment import host_assignment, solver_order

Words = tuple[int, ...]


class OTBatches(NamedTuple):
    """What :func:`ot_paired_batches` returns.

    * ``batch_fn(key, step) -> (batch, 2, *event)``: the pairs of step ``step``, noise ``x0``
      at index 0 of axis 1 and data ``x1`` at index 1, for ``cfm_loss(source="paired")``
      and :func:`flowzoo.train.fit`; works under ``jit``, ``vmap`` (over steps) and inside
      ``lax.scan`` with a traced ``step``.
    * ``host_batch(key, step) -> np.ndarray``: the same batch computed directly on the host,
      bypassing the prefetch cache.
    * ``draw(key, step) -> (x0, x1)``: the unpaired noise and data rows of that step, each
      ``(batch, *event)``.
    * ``close()``: stop the prefetch threads (``batch_fn`` then computes on demand).
    """

    batch_fn: Callable[[Key, ArrayLike], Array]
    host_batch: Callable[[Any, int], np.ndarray]
    draw: Callable[[Any, int], tuple[np.ndarray, np.ndarray]]
    close: Callable[[], None]


def _words(key: Any) -> Words:
    """The ``uint32`` words of a JAX key (typed or raw), as Python ints."""
    arr = jnp.asarray(key) if not isinstance(key, np.ndarray) else key
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        arr = jax.random.key_data(arr)
    arr = np.asarray(arr)
    if arr.dtype != np.uint32 or arr.ndim != 1:
        raise TypeError(f"key must be a JAX PRNG key, got an array {arr.dtype}{arr.shape}")
    return tuple(int(w) for w in arr)


def _rng(words: Words, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([*words, stream, index]))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``C[i, j] = |a_i - b_j|^2`` over flattened events, float64, ``O(n m)`` memory."""
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    sq = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(sq, 0.0)


class _Prefetcher:
    """Results of ``compute(words, step)`` by step, computed ``ahead`` steps in advance.

    A request for step ``s`` takes its result from the cache (waiting for it if it is still
    being computed) or computes it on the calling thread, and queues steps ``s + 1`` to
    ``s + ahead``; entries of earlier steps or other keys are dropped, so at most ``ahead``
    batches are held. The results do not depend on the cache: only the time they take does.
    """

    def __init__(self, compute: Callable[[Words, int], np.ndarray], workers: int, ahead: int):
        self.compute, self.ahead = compute, ahead
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="flowzoo-ot") if ahead else None
        self.lock = threading.Lock()
        self.cache: dict[tuple[Words, int], Future] = {}

    def get(self, words: Words, step: int) -> np.ndarray:
        with self.lock:
            future = self.cache.pop((words, step), None)
            for stale in [k for k in self.cache if k[0] != words or k[1] < step]:
                self.cache.pop(stale).cancel()
            if self.pool is not None:
                for s in range(step + 1, step + 1 + self.ahead):
                    if (words, s) not in self.cache:
                        self.cache[(words, s)] = self.pool.submit(self.compute, words, s)
        return self.compute(words, step) if future is None else future.result()

    def close(self) -> None:
        with self.lock:
            for future in self.cache.values():
                future.cancel()
            self.cache.clear()
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _check_args(data: ArrayLike, batch_size: int, workers, prefetch) -> np.ndarray:
    arr = np.asarray(data)
    if arr.ndim < 2:
        raise DataError(f"ot_paired_batches: data must be (n, *event), got shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise DataError(f"ot_paired_batches: data must be floating point, got {arr.dtype}")
    check_batch(arr, arr.shape[1:], "ot_paired_batches: data")
    if not 1 <= int(batch_size) <= arr.shape[0]:
        raise DataError(
            f"ot_paired_batches: batch_size must be in [1, {arr.shape[0]}] (the number of "
            f"examples), got {batch_size}"
        )
    if workers is not None and int(workers) < 1:
        raise ValueError(f"ot_paired_batches: workers must be >= 1, got {workers}")
    if prefetch is not None and int(prefetch) < 0:
        raise ValueError(f"ot_paired_batches: prefetch must be >= 0, got {prefetch}")
    return arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype))


def ot_paired_batches(
    data: ArrayLike,
    batch_size: int,
    *,
    workers: int | None = None,
    prefetch: int | None = None,
    solver: str = "auto",
) -> OTBatches:
    """Exact minibatch-OT pairs of data and noise, prefetched by a host thread pool.

    Step ``s`` of key ``k`` (a pure function of both, so a resumed run sees the batches of an
    uninterrupted one): the data rows are the ``i``-th block of ``batch_size`` of epoch ``e``'s
    shuffled order (``e, i = divmod(s, n // batch_size)``; every example once per epoch), the
    noise is ``x0 ~ N(0, I)`` of the data's shape, both from NumPy generators seeded with
    ``k``'s words and ``e`` or ``s``; each data row ``x1_j`` is paired with noise row
    ``x0_perm[j]`` of the exact assignment minimising ``sum_j |x1_j - x0_perm[j]|^2`` (float64
    costs, :func:`host_assignment`). The law is the one of
    ``cfm_loss(coupling=exact_ot_coupling())`` on shuffled batches; the random streams are
    NumPy's, not JAX's, so the batches differ from :func:`flowzoo.data.array_batches`'.

    Args:
      data: ``(n, *event)`` floating-point training data (NumPy or JAX), all finite; kept on
        the host in the canonical JAX dtype of its own.
      batch_size: pairs per step, ``1 <= batch_size <= n``.
      workers: threads solving ahead (default ``os.cpu_count()``). The solvers release the
        GIL, so they run in parallel with each other and with the compiled step.
      prefetch: steps paired ahead of the one requested (default ``2 * workers``; 0: pair
        each batch when the step asks for it). Host memory: ``prefetch`` batches.
      solver: as in :func:`exact_assignment` (``"auto"`` chooses by the event size).

    Returns:
      :class:`OTBatches`; pass ``batch_fn`` to :func:`flowzoo.train.fit` with
      ``cfm_loss(apply_fn, path, source="paired")``, and call ``close()`` when done.
    """
    arr = _check_args(data, batch_size, workers, prefetch)
    solver_order(solver)
    n, batch = arr.shape[0], int(batch_size)
    steps_per_epoch = n // batch
    event_size = math.prod(arr.shape[1:])
    workers = int(workers or os.cpu_count() or 1)
    prefetch = 2 * workers if prefetch is None else int(prefetch)

    def draw_words(words: Words, step: int) -> tuple[np.ndarray, np.ndarray]:
        if step < 0:
            raise ValueError(f"ot_paired_batches: step must be >= 0, got {step}")
        epoch, i = divmod(step, steps_per_epoch)
        rows = _rng(words, 0, epoch).permutation(n)[i * batch : (i + 1) * batch]
        x1 = arr[rows]
        x0 = _rng(words, 1, step).standard_normal(x1.shape).astype(arr.dtype)
        return x0, x1

    def pair(words: Words, step: int) -> np.ndarray:
        x0, x1 = draw_words(words, step)
        perm = host_assignment(_squared_distances(x1, x0), solver, event_size)
        return np.stack([x0[perm], x1], axis=1)

    cache = _Prefetcher(pair, workers, prefetch)
    out = jax.ShapeDtypeStruct((batch, 2, *arr.shape[1:]), arr.dtype)

    def callback(words: np.ndarray, step: np.ndarray) -> np.ndarray:
        return cache.get(tuple(int(w) for w in np.ravel(words)), int(step))

    def batch_fn(key: Key, step: ArrayLike) -> Array:
        words = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        if words.dtype != jnp.uint32 or words.ndim != 1:
            raise TypeError(f"key must be a JAX PRNG key, got an array {words.dtype}{words.shape}")
        step = jnp.asarray(step)
        if step.ndim != 0 or not jnp.issubdtype(step.dtype, jnp.integer):
            raise TypeError(f"step must be an integer scalar, got {step.dtype}{step.shape}")
        return jax.pure_callback(callback, out, words, step, vmap_method="sequential")

    return OTBatches(
        batch_fn,
        lambda key, step: pair(_words(key), int(step)),
        lambda key, step: draw_words(_words(key), int(step)),
        cache.close,
    )
