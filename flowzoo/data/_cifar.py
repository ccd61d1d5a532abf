"""CIFAR-10, CIFAR-100 and downsampled ImageNet (``.npz``) read from the files people download.

Nothing is downloaded: each reader takes the path of the published file (or of its extracted
folder) and returns :class:`~flowzoo.data.ImageData` with ``uint8`` NHWC images (values
``0 .. 255``, ``levels=256``) and ``int64`` labels for both splits.

The CIFAR batches are Python-2 pickles. They are read through a restricted unpickler that
admits only the globals NumPy needs to rebuild an array, so nothing in a data file is ever
executed; tar members are read into memory by their official names, never extracted to disk.
The converted arrays are cached under ``$FLOWZOO_CACHE`` (:func:`flowzoo.data.cache_dir`), so
later calls read one ``.npy`` per array, memory-mapped on request.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ._arrays import DataError
from ._cache import cached_image_data
from ._images import ImageData

_VERSION = 1

_RECONSTRUCT = np.empty(0).__reduce__()[0]


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for ``bytes`` (latin-1 only)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
"""The only globals a CIFAR pickle may name: NumPy's array reconstruction."""


class _Unpickler(pickle.Unpickler):
    """Unpickles built-in containers and NumPy arrays; refuses every other global."""

    def __init__(self, raw: bytes, where: str):
        super().__init__(io.BytesIO(raw), encoding="bytes")
        self._where = where

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise DataError(
                f"{self._where}: the pickle names the global {module}.{name}; only NumPy "
                "arrays and built-in containers are allowed, so the file is not read"
            )
        return _ALLOWED[module, name]


def _unpickle(raw: bytes, where: str) -> object:
    try:
        return _Unpickler(raw, where).load()
    except DataError:
        raise
    except Exception as err:  # any malformed pickle: truncated, wrong opcodes, bad state
        raise DataError(f"{where}: not a readable pickle ({type(err).__name__}: {err})") from None


def _images(data: object, labels: object, size: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``3 * size * size`` values (R, G, B planes in turn) -> NHWC images, labels."""
    row = 3 * size * size
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (row,):
        shape, dtype = getattr(data, "shape", None), getattr(data, "dtype", type(data).__name__)
        raise DataError(
            f"{where}: expected data as uint8 rows of {row} values (3 x {size} x {size}), "
            f"got {dtype} of shape {shape}"
        )
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(data):
        raise DataError(
            f"{where}: expected {len(data)} integer labels to match the data rows, got "
            f"{y.dtype} of shape {y.shape}"
        )
    x = data.reshape(len(data), 3, size, size).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y.astype(np.int64)


def _batch(raw: bytes, label_key: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    obj = _unpickle(raw, where)
    if not isinstance(obj, dict) or b"data" not in obj or label_key not in obj:
        keys = sorted(obj, key=repr) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(
            f"{where}: expected a CIFAR batch, a dict with keys b'data' and {label_key!r}; "
            f"got {keys}"
        )
    return _images(obj[b"data"], obj[label_key], 32, where)


def _read_tar(path: Path, folder: str, names: list[str]) -> dict[str, bytes]:
    wanted = {f"{folder}/{n}": n for n in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[wanted[member.name]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path}: truncated or corrupt tarball ({err})") from None
    missing = [f"{folder}/{n}" for n in names if n not in found]
    if missing:
        raise DataError(f"{path}: the tarball has no file {missing[0]}")
    return found


def _sources(path: str | Path, folder: str, names: list[str]) -> list[Path]:
    """The files read: the tarball, or the extracted folder's ``names``."""
    p = Path(path)
    if p.is_dir():
        root = p / folder if (p / folder).is_dir() else p
        for n in names:
            if not (root / n).is_file():
                raise DataError(f"{root / n}: file not found (expected the extracted {folder}/)")
        return [root / n for n in names]
    if not p.is_file():
        raise DataError(f"{p}: no such file or folder")
    return [p]


def _split(files, names, label_key, where) -> tuple[np.ndarray, np.ndarray]:
    parts = [_batch(files[n], label_key, f"{where}: {n}") for n in names]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _cifar(path, folder, train_names, test_name, label_key, cache, mmap) -> ImageData:
    names = [*train_names, test_name]
    sources, where = _sources(path, folder, names), str(path)

    def build() -> ImageData:
        if Path(path).is_dir():
            files = {n: f.read_bytes() for n, f in zip(names, sources, strict=True)}
        else:
            files = _read_tar(sources[0], folder, names)
        x_train, y_train = _split(files, train_names, label_key, where)
        x_test, y_test = _split(files, [test_name], label_key, where)
        return ImageData(x_train, x_test, 256, y_train, y_test)

    options = {"folder": folder, "labels": label_key.decode()}
    return cached_image_data("cifar", _VERSION, sources, options, build, cache=cache, mmap=mmap)


def cifar10(path: str | Path, *, cache: bool = True, mmap: bool = False) -> ImageData:
    """CIFAR-10 from the official python version: 50,000 train / 10,000 test images.

    Args:
      path: ``cifar-10-python.tar.gz`` (163 MB, MD5 ``c58f30108f718f92721af3b95e74349a``,
        published at https://www.cs.toronto.edu/~kriz/cifar.html), or the extracted folder
        ``cifar-10-batches-py/`` (or its parent) holding ``data_batch_1 .. 5`` and
        ``test_batch``.
      cache: keep the converted arrays under ``$FLOWZOO_CACHE`` (keyed on the source files'
        paths, sizes and mtimes) and read them from there next time (one file read instead
        of decompressing and unpickling).
      mmap: return memory-mapped (read-only) arrays from the cache instead of arrays in RAM.

    Returns:
      :class:`ImageData`: ``train`` ``(50000, 32, 32, 3)`` (batches 1..5 in order) and
      ``test`` ``(10000, 32, 32, 3)``, ``uint8`` RGB values ``0 .. 255``, ``levels=256``,
      ``int64`` labels ``0 .. 9``.

    Raises:
      DataError: a missing path or member, a truncated or corrupt tarball, a pickle of
        another layout or one naming any global besides NumPy's array reconstruction, or a
        label count that does not match the images; the message names the file.
    """
    train = [f"data_batch_{i}" for i in range(1, 6)]
    return _cifar(path, "cifar-10-batches-py", train, "test_batch", b"labels", cache, mmap)


def cifar100(
    path: str | Path, labels: str = "fine", *, cache: bool = True, mmap: bool = False
) -> ImageData:
    """CIFAR-100 from the official python version: 50,000 train / 10,000 test images.

    Args:
      path: ``cifar-100-python.tar.gz`` (161 MB, MD5 ``eb9058c3a382ffc7106e4002c42a8d85``,
        published at https://www.cs.toronto.edu/~kriz/cifar.html), or the extracted folder
        ``cifar-100-python/`` (or its parent) holding ``train`` and ``test``.
      labels: ``"fine"`` (100 classes, ``0 .. 99``) or ``"coarse"`` (20 superclasses).
      cache, mmap: as :func:`cifar10`.

    Returns:
      :class:`ImageData`: ``train`` ``(50000, 32, 32, 3)`` and ``test`` ``(10000, 32, 32,
      3)``, ``uint8`` RGB values ``0 .. 255``, ``levels=256``, ``int64`` labels.

    Raises:
      DataError: as :func:`cifar10`, or ``labels`` other than ``"fine"`` / ``"coarse"``.
    """
    if labels not in ("fine", "coarse"):
        raise DataError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    label_key = f"{labels}_labels".encode()
    return _cifar(path, "cifar-100-python", ["train"], "test", label_key, cache, mmap)


def _find(root: Path, name: str) -> Path:
    for candidate in [root / name, *sorted(root.glob(f"*/{name}"))]:
        if candidate.is_file():
            return candidate
    raise DataError(f"{root / name}: file not found (nor in a sub-folder of {root})")


def _npz(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "data" not in z.files or "labels" not in z.files:
                raise DataError(f"{path}: expected arrays 'data' and 'labels', got {z.files}")
            data, labels = z["data"], z["labels"]
    except DataError:
        raise
    except Exception as err:  # not a zip, truncated, or an object array (needs pickle)
        raise DataError(f"{path}: not a readable .npz ({type(err).__name__}: {err})") from None
    x, y = _images(data, labels, size, str(path))
    if len(y) and y.min() < 1:
        raise DataError(f"{path}: labels must be 1-based, found {y.min()}")
    return x, y - 1


def imagenet_npz(
    path: str | Path, size: int = 32, *, cache: bool = True, mmap: bool = False
) -> ImageData:
    """Downsampled ImageNet of Chrabaszcz et al. (2017) from its ``.npz`` batches.

    The files (``Imagenet32_train_npz.zip`` / ``Imagenet32_val_npz.zip``, likewise 64) are
    published at https://image-net.org/download-images (registration needed). Their images
    are box-resized from ImageNet, so bits/dim on them are not comparable with the
    downsampled ImageNet of van den Oord et al. (2016) (PNG files) that published flow
    results use. The images take about 3.7 GB at 32 and 15 GB at 64: the first call holds them
    in memory once while converting them into the cache; ``mmap=True`` then maps them.

    Args:
      path: a folder holding ``train_data_batch_1 .. 10.npz`` and ``val_data.npz`` directly
        or one sub-folder down (as the two zips extract). Each file has ``data``, ``uint8``
        rows of ``3 * size * size`` values (R, G, B planes in turn), and 1-based ``labels``.
      size: 32 or 64.
      cache, mmap: as :func:`cifar10`; ``mmap=True`` keeps the images out of RAM.

    Returns:
      :class:`ImageData`: ``train`` ``(1281167, size, size, 3)`` (batches 1..10 in order)
      and ``test`` ``(50000, size, size, 3)``, ``uint8`` RGB values ``0 .. 255``,
      ``levels=256``, ``int64`` labels ``0 .. 999`` (the files' labels minus 1).

    Raises:
      DataError: a missing folder or file, an unreadable ``.npz``, missing arrays, a wrong
        row length or dtype, labels below 1, or a label count that does not match the rows.
    """
    if size not in (32, 64):
        raise DataError(f"size must be 32 or 64, got {size!r}")
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected the extracted .npz batches)")
    sources = [_find(root, f"train_data_batch_{i}.npz") for i in range(1, 11)]
    sources.append(_find(root, "val_data.npz"))

    def build() -> ImageData:
        train = [_npz(f, size) for f in sources[:10]]
        x_test, y_test = _npz(sources[10], size)
        x_train = np.concatenate([x for x, _ in train])
        return ImageData(x_train, x_test, 256, np.concatenate([y for _, y in train]), y_test)

    return cached_image_data(
        "imagenet_npz", _VERSION, sources, {"size": size}, build, cache=cache, mmap=mmap
    )
