"""FID reference statistics of a data set, cached under ``$FLOWZOO_CACHE/fid/``.

The Inception features' mean and covariance over one split of a data set read by
:func:`flowzoo.data.dataset` are computed once and stored as
``$FLOWZOO_CACHE/fid/<dataset>-<split>-<key>.npz`` (arrays ``mu``, ``sigma``, ``n``; read
with ``allow_pickle=False``). The key is the SHA-256 of the format version, the data set
name, split, number of images and reader options, and of the absolute path, size and
modification time of every source file and of the weights file: a changed, touched or moved
source or other weights give a new file. Writes go through a temporary file and a rename.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..metrics import (
    FIDWeightsError,
    Statistics,
    fid_image_statistics,
    fid_weights_path,
    load_fid_weights,
)
from ._arrays import DataError
from ._cache import cache_dir, source_files
from ._datasets import DATASETS, dataset

_VERSION = 1
_SPLITS = ("train", "test")


def _weights(weights: str | os.PathLike | None) -> Path:
    path = fid_weights_path(weights)
    if path is None:
        raise FIDWeightsError(
            "no FID weights: pass the converted file (--fid-weights PATH, or set "
            "FLOWZOO_FID_WEIGHTS); make it once with: flowzoo fid-weights convert "
            "pt_inception-2015-12-05-6726825d.pth"
        )
    return path


def _stamp(digest, path: Path) -> None:
    st = path.stat()
    digest.update(f"\n{path.absolute()}\0{st.st_size}\0{st.st_mtime_ns}".encode())


def fid_statistics_file(
    name: str,
    path: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    *,
    split: str = "train",
    num_images: int | None = None,
    **options,
) -> Path:
    """Where :func:`dataset_fid_statistics` caches the statistics of these arguments (the
    file need not exist). ``weights``: as :func:`flowzoo.metrics.fid_weights_path`."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in _SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if num_images is not None and (isinstance(num_images, bool) or num_images < 2):
        raise DataError(f"num_images must be an int >= 2 or None, got {num_images!r}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist ({name}: {DATASETS[name].path})")
    sources = source_files(root) if root.is_dir() else [root]
    digest = hashlib.sha256()
    head = [_VERSION, name, split, num_images, options]
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for source in [*sources, _weights(weights)]:
        _stamp(digest, source)
    return cache_dir() / "fid" / f"{name}-{split}-{digest.hexdigest()[:24]}.npz"


def _read(file: Path) -> Statistics | None:
    try:
        with np.load(file, allow_pickle=False) as z:
            mu, sigma = z["mu"], z["sigma"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        return None
    return mu, sigma


def dataset_fid_statistics(
    name: str,
    path: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    *,
    split: str = "train",
    num_images: int | None = None,
    batch_size: int = 100,
    cache: bool = True,
    **options,
) -> Statistics:
    """``(mu, sigma)`` of the FID Inception features of a data set split, cached.

    Args:
      name, path, options: the data set, as :func:`dataset` takes them (read memory-mapped
        from the data cache where the reader allows).
      weights: the converted FID weights (:func:`flowzoo.metrics.fid_weights_path`:
        default ``$FLOWZOO_FID_WEIGHTS``); none raises
        :class:`~flowzoo.metrics.FIDWeightsError` naming ``flowzoo fid-weights convert``.
      split: ``"train"`` (the usual FID reference) or ``"test"``.
      num_images: the first ``num_images`` images of the split (default: all of them).
      batch_size: images per Inception call.
      cache: read and write ``$FLOWZOO_CACHE/fid/`` (:func:`fid_statistics_file`).

    Returns:
      ``(mu (2048,), sigma (2048, 2048))``, float64.
    """
    file = fid_statistics_file(name, path, weights, split=split, num_images=num_images, **options)
    if cache and (found := _read(file)) is not None:
        return found
    params = load_fid_weights(_weights(weights))
    read = {"mmap": True} if cache and "mmap" in DATASETS[name].options else {}
    data = dataset(name, path, **{**read, **options})
    images = data.train if split == "train" else data.test
    images = images[:num_images] if num_images is not None else images
    if data.levels != 256:  # the network reads uint8 as /255; other depths become [0, 1]
        images = np.asarray(images, np.float32) / (data.levels - 1)
    mu, sigma = fid_image_statistics(params, images, batch_size=batch_size)
    if cache:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, mu=mu, sigma=sigma, n=np.int64(len(images)))
            os.replace(tmp, file)
        finally:
            tmp.unlink(missing_ok=True)
    return mu, sigma
