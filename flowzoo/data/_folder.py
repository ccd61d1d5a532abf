"""Image sets of one's own: a folder (or an uncompressed tar) of PNG/JPEG files, and ``uint8``
image arrays in ``.npy``/``.npz`` files.

Both come back as :class:`~flowzoo.data.ImageData` with a deterministic train/test split
that does not depend on any RNG: example ``i`` (an image's path relative to the folder, or
an array's row index) is ranked by ``sha256("flowzoo/<reader>/<i>")``; the first
``round(n * test_fraction)`` in that order form the test set, and both sets keep the
examples' natural order (sorted file names, row order). Converted images are cached under
``$FLOWZOO_CACHE`` (:func:`flowzoo.data.cache_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._arrays import DataError, _pick
from ._cache import EntryWriter, cached, source_files
from ._images import ImageData, check_images
from ._png import IMAGE_SUFFIXES, TarIndex, fill, open_image, read_tar_member, tar_image_index

_FOLDER_VERSION = 1
_ARRAY_VERSION = 1
_ROWS = 4096  # rows per chunk when copying an array into the cache


class Encoded(NamedTuple):
    """The encoded images of a folder or an uncompressed tar, sorted by name: ``names[i]`` is
    the path relative to the folder (the member's name in a tar); ``files`` are the sources
    to key a cache entry on; ``index`` is the tar's index (``None`` for a folder)."""

    path: Path
    names: list[str]
    files: list[Path]
    index: TarIndex | None


def encoded_images(path: str | os.PathLike, *, cache: bool = True) -> Encoded:
    """The PNG/JPEG files of the folder or uncompressed tar ``path`` (every non-hidden file
    must be one), sorted by name; see :func:`flowzoo.data.tar_image_index` for tars."""
    p = Path(path)
    if p.is_file():
        index = tar_image_index(p, cache=cache)
        return Encoded(p, index.names.tolist(), [p], index)
    if not p.is_dir():
        raise DataError(f"{p}: no such file or folder")
    files = source_files(p)
    for f in files:
        if not f.name.lower().endswith(IMAGE_SUFFIXES):
            raise DataError(
                f"{f}: not an image file (the folder may hold only "
                f"{', '.join(IMAGE_SUFFIXES)} files); move it out of the folder"
            )
    if not files:
        raise DataError(f"{p}: the folder holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return Encoded(p, [f.relative_to(p).as_posix() for f in files], files, None)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or err})") from None


@contextlib.contextmanager
def reading(enc: Encoded) -> Iterator[Callable[[int], tuple[bytes, str]]]:
    """``read(i) -> (bytes of image i, its name for error messages)``, thread-safe."""
    if enc.index is None:
        yield lambda i: (_read_file(enc.files[i]), str(enc.files[i]))
        return
    fd = os.open(enc.path, os.O_RDONLY)
    try:
        yield lambda i: (read_tar_member(fd, enc.index, i), f"{enc.path}: {enc.names[i]}")
    finally:
        os.close(fd)


def split_rows(
    keys: list[str], test_fraction: float, reader: str, where: str
) -> tuple[np.ndarray, int]:
    """``(rows, n_train)``: the row order ``train rows, test rows`` (each ascending) and the
    number of training rows; the test rows are the ``round(n * test_fraction)`` (at least
    one when ``test_fraction > 0``) keys first in ``sha256("flowzoo/<reader>/<key>")`` order."""
    if not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    n = len(keys)
    n_test = max(round(n * test_fraction), 1) if test_fraction > 0 else 0
    if n - n_test < 1:
        raise DataError(f"{where}: {n} example(s) leave none for training at {test_fraction=}")
    digest = [hashlib.sha256(f"flowzoo/{reader}/{key}".encode()).digest() for key in keys]
    test = np.sort(np.asarray(sorted(range(n), key=digest.__getitem__)[:n_test], np.int64))
    train = np.setdiff1d(np.arange(n), test)
    return np.concatenate([train, test]), n - n_test


def _classes(names: list[str], where: str) -> tuple[list[str], np.ndarray | None]:
    """Relative names -> (class names, int64 labels) by first folder, or ``([], None)``."""
    parts = [name.split("/") for name in names]
    nested = [len(p) > 1 for p in parts]
    if not any(nested):
        return [], None
    if not all(nested):
        flat = names[nested.index(False)]
        raise DataError(
            f"{where}: {flat} lies beside the class sub-folders; put every image in a class "
            "sub-folder, or none"
        )
    classes = sorted({p[0] for p in parts})
    lookup = {c: k for k, c in enumerate(classes)}
    return classes, np.asarray([lookup[p[0]] for p in parts], np.int64)


def _strip_top(names: list[str]) -> list[str]:
    """A tar's names relative to its single top-level folder, if all members share one."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        return [name.split("/", 1)[1] for name in names]
    return names


def fit_image(img, size: int, crop: str):
    """A ``PIL.Image`` resized to ``size x size``. Halved with a box filter while its shorter
    side is at least ``2 * size``; then ``"center"`` scales the shorter side to ``size``
    (bicubic) and crops the centre, ``"resize"`` scales both sides to ``size`` (bicubic;
    aspect ratio not kept). An image already ``size x size`` is returned unchanged."""
    from PIL import Image

    while min(img.size) >= 2 * size:
        img = img.resize((img.size[0] // 2, img.size[1] // 2), Image.Resampling.BOX)
    if crop == "resize":
        return img.resize((size, size), Image.Resampling.BICUBIC)
    w, h = img.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    img = img.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((left, top, left + size, top + size))


def _fill_folder(enc, rows, size, crop, workers, writer: EntryWriter) -> np.ndarray:
    """Decode, convert and resize every image into ``writer``'s ``"images"`` in ``rows``
    order; returns which rows were RGB."""
    out = writer.empty("images", (len(rows), size, size, 3), np.uint8)
    rgb = np.zeros(len(rows), bool)
    with reading(enc) as read:

        def load(k: int) -> np.ndarray:
            raw, where = read(int(rows[k]))
            img = open_image(raw, where)
            if img.mode == "RGBA":
                raise DataError(
                    f"{where}: the image has an alpha channel; image_folder reads grey and RGB "
                    "images: flatten it first (e.g. PIL's Image.convert('RGB'))"
                )
            rgb[k] = img.mode == "RGB"
            arr = np.asarray(fit_image(img, size, crop), np.uint8)
            return arr if arr.ndim == 3 else arr[..., None]

        fill(out, len(rows), load, workers)
    return rgb


def image_folder(
    path: str | os.PathLike,
    image_size: int,
    *,
    crop: str = "center",
    test_fraction: float = 0.1,
    cache: bool = True,
    mmap: bool = False,
    workers: int | None = None,
) -> ImageData:
    """A folder (or an uncompressed tar) of PNG/JPEG images as an image set.

    Class sub-folders are optional: when every image lies in a sub-folder, its label is the
    index of its first-level sub-folder among their sorted names (``root/cat/x.png`` and
    ``root/cat/a/y.png`` are class ``cat``); when none does, there are no labels. A tar is
    read as the folder it extracts to, less a single top-level folder that holds every
    member. Hidden files (names starting with ``.``) are skipped.

    Args:
      path: the folder or ``.tar``; every file in it but hidden ones must be ``.png``/``.jpg``/``.jpeg``.
      image_size: every image is resized to ``image_size x image_size`` (any input size).
      crop: ``"center"``: shorter side to ``image_size``, then the centre square;
        ``"resize"``: both sides to ``image_size`` (aspect ratio not kept). Downscaling halves
        with a box filter first, then resamples bicubically.
      test_fraction: share of the images in the test set, ``[0, 1)``; see the module's note
        on the split.
      cache: keep the converted images under ``$FLOWZOO_CACHE`` (keyed on every image file's
        path, size and mtime, and the options) and read them from there next time.
      mmap: return memory-mapped (read-only) arrays from the cache instead of arrays in RAM.
      workers: decoding threads (default: up to 8).

    Returns:
      :class:`ImageData`: ``uint8`` ``(n, image_size, image_size, C)`` ``train`` and
      ``test``, ``levels=256``, ``C = 3`` when any image is colour (grey images are repeated
      into three channels) and 1 when all are grey; ``int64`` labels, or ``None``.

    Raises:
      DataError: a missing path, an empty folder or tar, a file that is not a PNG/JPEG image,
        a corrupt image, an image with an alpha channel or 16-bit pixels, images both beside
        and inside class sub-folders, or bad options; the message names the file.
    """
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int | np.integer)
        or image_size < 1
    ):
        raise DataError(f"image_size must be a positive int, got {image_size!r}")
    if crop not in ("center", "resize"):
        raise DataError(f"crop must be 'center' or 'resize', got {crop!r}")
    enc = encoded_images(path, cache=cache)
    names = _strip_top(enc.names) if enc.index is not None else enc.names
    _, labels = _classes(names, str(enc.path))
    rows, n_train = split_rows(names, test_fraction, "image_folder", str(enc.path))

    def build(writer: EntryWriter) -> dict:
        rgb = _fill_folder(enc, rows, int(image_size), crop, workers, writer)
        if not rgb.any():  # every image grey: keep one channel
            writer.put("images", writer.arrays.pop("images")[..., :1])
        if labels is not None:
            writer.put("labels", labels[rows])
        return {"n_train": n_train}

    options = {"image_size": int(image_size), "crop": crop, "test_fraction": test_fraction}
    arrays, meta = cached(
        "image_folder", _FOLDER_VERSION, enc.files, options, build, cache=cache, mmap=mmap
    )
    x, y, k = arrays["images"], arrays.get("labels"), meta["n_train"]
    return ImageData(x[:k], x[k:], 256, None if y is None else y[:k], None if y is None else y[k:])


def _load_images(path: Path, key: str | None) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of an image ``.npy``/``.npz`` (a ``.npy`` memory-mapped) and a label."""
    try:
        if path.suffix.lower() == ".npy":
            return {"images": np.load(path, mmap_mode="r", allow_pickle=False)}, str(path)
        with np.load(path, allow_pickle=False) as npz:
            if key is None and "train" in npz.files:
                want = ["train", "test", "train_labels", "test_labels"]
                return {k: npz[k] for k in want if k in npz.files}, str(path)
            others = [f for f in npz.files if f != "labels"]
            key = others[0] if key is None and len(others) == 1 else key
            arr, what = _pick(path, npz, key)
            out = {"images": arr}
            if "labels" in npz.files and key != "labels":
                out["labels"] = npz["labels"]
            return out, what
    except DataError:
        raise
    except Exception as err:  # not a NumPy file, truncated, object arrays (need pickle)
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"{path}: not a readable {path.suffix} image array ({detail})") from None


def _copy_images(src: np.ndarray, rows: np.ndarray, levels: int, what: str, out: np.ndarray):
    """``out[k] = check_images(src[rows[k]])``, a chunk of rows at a time."""
    for start in range(0, len(rows), _ROWS):
        take = rows[start : start + _ROWS]
        out[start : start + len(take)] = check_images(src[take], levels, what)


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != n:
        raise DataError(f"{what}: expected {n} integer labels, got {y.dtype} of shape {y.shape}")
    return y.astype(np.int64)


def image_array(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    levels: int = 256,
    test_fraction: float = 0.1,
    cache: bool = True,
    mmap: bool = False,
) -> ImageData:
    """Images stored as a NumPy array, ``(n, H, W, C)`` integer values ``0 .. levels - 1``.

    Args:
      path: a ``.npy`` file (one array, read memory-mapped, so it may be larger than RAM), or
        a ``.npz`` holding either ``train`` and ``test`` (and optionally ``train_labels`` and
        ``test_labels``), used as they are, or one image array (``key`` names it when there
        are several), with optional ``labels``.
      key: the ``.npz`` array to read as the images (then split).
      levels: number of pixel levels (256 for ``uint8`` images).
      test_fraction: for one array, the share of rows in the test set, ``[0, 1)``; rows are
        ranked by ``sha256("flowzoo/image_array/<row>")``, each split keeps row order.
      cache, mmap: as :func:`image_folder`.

    Returns:
      :class:`ImageData` with ``uint8`` (``uint16`` above 256 levels) images and ``int64``
      labels (or ``None``).

    Raises:
      DataError: a missing or unreadable file, an extension other than ``.npy``/``.npz``, a
        missing or ambiguous ``.npz`` array, ``train`` without ``test``, a shape other than
        ``(n, H, W, C)``, values outside ``0 .. levels - 1`` or not whole numbers, labels that
        do not match the rows; the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file (expected a .npy or .npz image array)")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise DataError(f"{p}: unsupported extension {p.suffix!r}; expected .npy or .npz")

    def build(writer: EntryWriter) -> dict:
        arrays, what = _load_images(p, key)
        if "train" in arrays:
            if "test" not in arrays:
                raise DataError(f"{p}: has 'train' but no 'test' array; add it, or pass key=")
            for split in ("train", "test"):
                x = arrays[split]
                out = writer.empty(split, x.shape, np.uint8 if levels <= 256 else np.uint16)
                _copy_images(x, np.arange(len(x)), levels, f"{what}[{split}]", out)
                if f"{split}_labels" in arrays:
                    y = _labels(arrays[f"{split}_labels"], len(x), f"{what}[{split}_labels]")
                    writer.put(f"{split}_labels", y)
            return {"n_train": None}
        x = arrays["images"]
        if x.ndim != 4 or len(x) == 0:
            raise DataError(
                f"{what}: expected a non-empty array of shape (n, height, width, channels), "
                f"got shape {x.shape}; add a trailing channel axis for grey images"
            )
        rows, n_train = split_rows(
            [str(i) for i in range(len(x))], test_fraction, "image_array", what
        )
        out = writer.empty("images", x.shape, np.uint8 if levels <= 256 else np.uint16)
        _copy_images(x, rows, levels, what, out)
        if "labels" in arrays:
            writer.put("labels", _labels(arrays["labels"], len(x), f"{what}[labels]")[rows])
        return {"n_train": n_train}

    options = {"key": key, "levels": levels, "test_fraction": test_fraction}
    arrays, meta = cached(
        "image_array", _ARRAY_VERSION, [p], options, build, cache=cache, mmap=mmap
    )
    k = meta["n_train"]
    if k is None:
        return ImageData(
            arrays["train"],
            arrays["test"],
            levels,
            arrays.get("train_labels"),
            arrays.get("test_labels"),
        )
    x, y = arrays["images"], arrays.get("labels")
    return ImageData(
        x[:k], x[k:], levels, None if y is None else y[:k], None if y is None else y[k:]
    )
