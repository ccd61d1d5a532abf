"""Input pipeline throughput: images per second per host core, from a memmap and from PNG.

What one training step needs from the host: the rows of its batch gathered from the data
(a NumPy memmap of ``uint8`` images, or PNG files in an uncompressed tar, read by seeking
and decoded), randomly flipped left-right, stacked into a batch and handed to
``jax.device_put``. Two readers do it with the same contract (the rows and flips of
:func:`flowzoo.data.streamed_batches`: the keyed permutation of ``array_batches`` and
:func:`flowzoo.data.flip_mask`, checked equal batch for batch before timing):

* ``flowzoo``: :func:`flowzoo.data.streamed_batches`, a pool of threads, one step's rows per
  task (a fancy index of the memmap, or one ``os.pread`` + Pillow decode per image), read
  ahead ``prefetch`` requests;
* ``grain``: grain's ``MapDataset.range(...).map(one image).to_iter_dataset(ReadOptions(
  num_threads=W)).batch(b)``, the per-example pipeline grain's documentation builds (thread
  workers, the same functions for one image);
* ``grain_mp`` (full runs only): the same pipeline batched and sent through
  ``mp_prefetch(MultiprocessingOptions(num_workers=W))``, worker processes.

Shapes: CIFAR-10 (32x32x3, batch 128) and ImageNet-64 (64x64x3, batch 64). The images are
synthetic but compress like photographs rather than noise (a random 1/4-resolution image
upsampled, plus noise of 6 grey levels), written to a temporary folder; the memmap is read
from the page cache (a cold disk is bounded by the disk, not by this code).

Figures per case: ``images_per_s`` (wall clock, ``W`` workers, ``W`` = the cores this
process may use unless ``--workers``), and ``images_per_cpu_s``, the images per CPU-second
that the whole pipeline used (this process's threads and, for ``grain_mp``, its worker
processes): the rate per host core, whatever the number of cores. Each request is ``num``
steps (``--steps-per-call``), as ``fit`` asks for them.

Targets: at least 2,000 CIFAR-10 and 500 ImageNet-64 images per second per host core from
the memmap with the reader flowzoo uses (``flowzoo``).

Run ``python benchmarks/input_pipeline.py [--quick] [--out PATH]``; writes
``benchmarks/results/input_pipeline.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.input_pipeline
    from benchmarks import _common as common

from flowzoo import data as fzdata
from flowzoo.data._stream import _flip, _flip_seeds, _permute, _round_keys

grain = common.LazyImport("grain")
psutil = common.LazyImport("psutil")

CASES = {"cifar10": ((32, 32, 3), 128), "imagenet64": ((64, 64, 3), 64)}
TARGETS = {"cifar10": 2000.0, "imagenet64": 500.0}  # images per CPU-second, memmap, flowzoo
SOURCES = ("memmap", "png_tar")
CHOSEN = "flowzoo"  # the reader flowzoo.data.streamed_batches is


# --------------------------------------------------------------------------- data


def synthetic_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """``uint8 (n, H, W, C)``: a random quarter-resolution image upsampled 4x, plus noise."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    low = rng.integers(0, 256, (n, h // 4, w // 4, c)).astype(np.float32)
    img = low.repeat(4, axis=1).repeat(4, axis=2) + rng.normal(0.0, 6.0, (n, h, w, c))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_sources(folder: Path, name: str, x: np.ndarray, n_png: int) -> dict[str, str]:
    """The images as a ``.npy`` (read as a memmap) and the first ``n_png`` as a PNG tar."""
    from PIL import Image

    npy, tar_path = folder / f"{name}.npy", folder / f"{name}.tar"
    np.save(npy, x)
    with tarfile.open(tar_path, "w") as tar:
        for i in range(n_png):
            buf = io.BytesIO()
            Image.fromarray(x[i]).save(buf, format="PNG")
            info = tarfile.TarInfo(f"{name}/{i:07d}.png")
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)
    return {"memmap": str(npy), "png_tar": str(tar_path)}


def open_source(kind: str, path: str):
    if kind == "memmap":
        return np.load(path, mmap_mode="r")
    return fzdata.tar_images(path, cache=False)


# --------------------------------------------------------------------------- readers


class _Rows:
    """The grain pipelines' work functions, doing what ``streamed_batches`` does per row:
    ``image(p)`` gives row ``p % b`` of step ``p // b``, ``step(s)`` the ``b`` rows of step
    ``s``, each finding its examples with the keyed permutation (the NumPy Feistel rounds of
    :func:`flowzoo.data.keyed_permutation_np`), reading and flipping them. Round keys and flip
    seeds are drawn with JAX in the parent; picklable (``grain_mp`` sends it to worker
    processes, which open the source anew)."""

    def __init__(self, kind, path, batch, b, key, steps):
        self.kind, self.path, self.batch, self.b, self._source = kind, path, batch, b, None
        self.n = int(open_source(kind, path).shape[0])
        self.per_epoch = self.n // batch
        epochs = range((steps - 1) // self.per_epoch + 1)
        self.keys = [_round_keys(jax.random.fold_in(key, e)) for e in epochs]
        self.seeds = _flip_seeds(key)

    def __getstate__(self):
        return {**self.__dict__, "_source": None}

    def _read(self, step: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The examples at ``rows`` of step ``step``, and which of them to flip."""
        if self._source is None:
            self._source = open_source(self.kind, self.path)
        e, i = divmod(step, self.per_epoch)
        idx = _permute(self.keys[e], i * self.batch + rows, self.n).astype(np.int64)
        if self.kind == "memmap":
            order = np.argsort(idx)
            out = np.empty((len(idx), *self._source.shape[1:]), self._source.dtype)
            out[order] = self._source[idx[order]]
        else:
            out = self._source.rows(idx)
        return out, _flip(self.seeds, step, rows)

    def image(self, p: int) -> np.ndarray:
        step, r = divmod(int(p), self.b)
        img, m = self._read(step, np.asarray([r]))
        return img[0, :, ::-1] if m[0] else img[0]

    def step(self, s: int) -> np.ndarray:
        out, m = self._read(int(s), np.arange(self.b))
        pixels = out.view(np.dtype((np.void, out.shape[-1])))  # as streamed_batches flips
        pixels[m] = pixels[m, :, ::-1]
        return out


def flowzoo_reader(kind, path, batch, b, key, workers, prefetch, num):
    """``next_chunk() -> (num, b, H, W, C)`` and ``close()`` of streamed_batches."""
    stream = fzdata.streamed_batches(
        open_source(kind, path), batch, flip=True, workers=workers, prefetch=prefetch
    )
    first = [0]

    def next_chunk():
        out = stream.read(key, first[0], num, 0, b)
        first[0] += num
        return out

    return next_chunk, stream.close


def grain_reader(kind, path, batch, b, key, workers, prefetch, num, total_steps, variant):
    """The same chunks from a grain pipeline: ``grain`` (one image per element, threads),
    ``grain_steps`` (one step's rows per element, threads) or ``grain_mp`` (one image per
    element, batched in ``workers`` processes)."""
    rows = _Rows(kind, path, batch, b, key, total_steps)
    if variant == "grain_steps":
        ds = grain.MapDataset.range(0, total_steps).map(rows.step)
        read = grain.ReadOptions(num_threads=workers, prefetch_buffer_size=prefetch * num)
        it = iter(ds.to_iter_dataset(read))
    elif variant == "grain_mp":
        from absl import flags  # grain's worker processes read absl flags: mark them parsed

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = grain.MapDataset.range(0, total_steps * b).map(rows.image).batch(b)
        options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=num)
        it = iter(ds.to_iter_dataset().mp_prefetch(options))
    else:
        ds = grain.MapDataset.range(0, total_steps * b).map(rows.image)
        # one batch of images ahead: grain's per-element cost grows with this buffer (its
        # default of 500 is 4x slower than 128 at the CIFAR shape, 5120 40x)
        read = grain.ReadOptions(num_threads=workers, prefetch_buffer_size=b)
        it = iter(ds.to_iter_dataset(read).batch(b))

    def next_chunk():
        return np.stack([next(it) for _ in range(num)])

    return next_chunk, lambda: None


# --------------------------------------------------------------------------- measuring


def _cpu_seconds() -> float:
    """CPU seconds of this process's threads and its live child processes."""
    total = time.process_time()
    if psutil:
        for child in psutil.Process().children(recursive=True):
            try:
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def measure(reader: str, kind: str, path: str, case: str, cfg) -> tuple[dict, np.ndarray]:
    """Warm up (one chunk), then time ``cfg.chunks`` chunks read and handed to the device:
    ``({"wall_s", "cpu_s"}, the warm-up chunk)``."""
    _, batch = CASES[case]
    key = jax.random.key(0)
    num, total = cfg.steps_per_call, cfg.steps_per_call * (cfg.chunks + 2 + cfg.prefetch)
    args = (kind, path, batch, batch, key, cfg.workers, cfg.prefetch, num)
    if reader == "flowzoo":
        next_chunk, close = flowzoo_reader(*args)
    else:
        next_chunk, close = grain_reader(*args, total, reader)
    try:
        first = next_chunk()
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        for _ in range(cfg.chunks):
            jax.device_put(next_chunk()).block_until_ready()
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    finally:
        close()
    return {"wall_s": wall, "cpu_s": cpu}, first


def result_row(case: str, kind: str, reader: str, times: list[dict], cfg) -> dict[str, Any]:
    """The medians over rounds of images per second and per CPU-second."""
    shape, batch = CASES[case]
    images = cfg.chunks * cfg.steps_per_call * batch
    per_s = [images / t["wall_s"] for t in times]
    per_cpu = [images / t["cpu_s"] for t in times if t["cpu_s"] > 0]
    row = {
        "case": case,
        "shape": list(shape),
        "batch": batch,
        "source": kind,
        "reader": reader,
        "workers": cfg.workers,
        "images": images,
        "rounds": times,
        "images_per_s": float(np.median(per_s)),
        "images_per_cpu_s": float(np.median(per_cpu)) if per_cpu else None,
        "cores_used": float(np.median([t["cpu_s"] / t["wall_s"] for t in times])),
    }
    print(
        f"{case:>10} {kind:>7} {reader:>11}: {row['images_per_s']:9.0f} images/s, "
        f"{row['images_per_cpu_s'] or 0:9.0f} per CPU-second ({row['cores_used']:.2f} cores)",
        flush=True,
    )
    return row


def _check_same(kind, path, case, cfg, readers) -> None:
    """Every reader's first chunk equals ``streamed_batches``' (same rows, same flips)."""
    shape, batch = CASES[case]
    key, num = jax.random.key(0), cfg.steps_per_call
    with fzdata.streamed_batches(open_source(kind, path), batch, flip=True) as stream:
        want = stream.read(key, 0, num)
    for reader, got in readers.items():
        if not np.array_equal(got, want):
            raise AssertionError(f"{reader} on {case}/{kind} gives other batches than flowzoo")


# --------------------------------------------------------------------------- targets and docs


def _rate(d: dict, case: str, source: str, reader: str) -> float | None:
    for r in d["results"]:
        if (r["case"], r["source"], r["reader"]) == (case, source, reader):
            return r["images_per_cpu_s"]
    return None


def check(d: dict) -> list[dict[str, Any]]:
    """Images per CPU-second from the memmap with the chosen reader, per shape."""
    out = []
    for case, target in TARGETS.items():
        value = _rate(d, case, "memmap", CHOSEN)
        out.append(
            {
                "what": f"{case} images/s per host core, memmap, {CHOSEN}",
                "value": value,
                "target": f">= {target:.0f}",
                "met": None if value is None else bool(value >= target),
            }
        )
    return out


def render(d: dict) -> str:
    """Images per second (wall clock, W workers) and per CPU-second, per shape, source and
    reader."""
    rows = [
        [
            r["case"],
            "x".join(map(str, r["shape"])),
            r["batch"],
            r["source"],
            f"`{r['reader']}`",
            r["workers"],
            f"{r['images_per_s']:,.0f}",
            None if r["images_per_cpu_s"] is None else f"{r['images_per_cpu_s']:,.0f}",
            f"{r['cores_used']:.2f}",
        ]
        for r in d["results"]
    ]
    return (
        "Images read, flipped, batched and handed to `jax.device_put`, per second of wall "
        "clock and per CPU-second (all threads and worker processes), from a memmap in the "
        "page cache and from PNG files in a tar.\n\n"
        + common.md_table(
            [
                "case",
                "image",
                "batch",
                "source",
                "reader",
                "workers",
                "images/s",
                "per CPU-s",
                "cores used",
            ],
            rows,
        )
    )


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/input_pipeline.json")
    ap.add_argument("--quick", action="store_true", help="small data, few chunks (< 30 s)")
    ap.add_argument("--workers", type=int, default=_default_workers())
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--steps-per-call", type=int, default=None)
    ap.add_argument("--chunks", type=int, default=None, help="timed requests per case")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved repeats (median)")
    ap.add_argument("--readers", default=None, help="comma list (default: all available)")
    cfg = ap.parse_args(argv)
    cfg.steps_per_call = cfg.steps_per_call or (4 if cfg.quick else 20)
    cfg.chunks = cfg.chunks or (3 if cfg.quick else 10)
    cfg.rounds = cfg.rounds or (1 if cfg.quick else 3)
    readers = ["flowzoo"] + (["grain", "grain_steps"] if grain else [])
    readers += ["grain_mp"] if grain and psutil and not cfg.quick else []
    readers = cfg.readers.split(",") if cfg.readers else readers
    n_png = 512 if cfg.quick else 4096  # epochs repeat: a step costs the same in any epoch
    n = 2048 if cfg.quick else 16384
    env = common.env_info(("grain",))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, (shape, _) in CASES.items():
            paths = write_sources(Path(tmp), case, synthetic_images(n, shape), n_png)
            for kind in SOURCES:
                times, firsts = {r: [] for r in readers}, {}
                for _ in range(cfg.rounds):  # interleaved: a busy machine slows all alike
                    for reader in readers:
                        t, firsts[reader] = measure(reader, kind, paths[kind], case, cfg)
                        times[reader].append(t)
                _check_same(kind, paths[kind], case, cfg, firsts)
                results += [result_row(case, kind, r, times[r], cfg) for r in readers]
    payload = {
        "benchmark": "input_pipeline",
        "env": env,
        "load_average_after": common.load_average(),
        "config": {
            "quick": cfg.quick,
            "cases": CASES,
            "workers": cfg.workers,
            "prefetch": cfg.prefetch,
            "steps_per_call": cfg.steps_per_call,
            "chunks": cfg.chunks,
            "rounds": cfg.rounds,
            "images_memmap": n,
            "images_png": n_png,
            "flip": True,
            "chosen": CHOSEN,
        },
        "results": results,
        "checks": check({"results": results}),
    }
    common.write_json(cfg.out, payload)
    return payload


if __name__ == "__main__":
    main()
