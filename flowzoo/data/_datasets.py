"""Image data sets read from local files, by name: one table and one entry point."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import NamedTuple

from ._arrays import DataError
from ._cifar import cifar10, cifar100, imagenet_npz
from ._folder import image_array, image_folder
from ._imagenet import imagenet_png
from ._images import ImageData


class DatasetInfo(NamedTuple):
    """What :func:`dataset` knows about a data set name.

    ``reader(path, **fixed, **options)`` reads it; ``options`` are the keywords a caller may
    pass (from the reader's signature), ``required`` those among them without a default;
    ``levels`` the pixel levels; ``shape`` ``(H, W, C)``,
    ``train_size``, ``test_size`` and ``num_classes`` where the published files fix them
    (``None`` where they depend on the files or options); ``path`` what the path points at;
    ``source`` where the files are published.
    """

    reader: Callable[..., ImageData]
    fixed: dict
    options: tuple[str, ...]
    required: tuple[str, ...]
    levels: int
    shape: tuple[int, int, int] | None
    train_size: int | None
    test_size: int | None
    num_classes: int | None
    path: str
    source: str


def _info(reader, fixed=None, **facts) -> DatasetInfo:
    fixed = fixed or {}
    params = list(inspect.signature(reader).parameters.values())[1:]  # all but the path
    options = tuple(p.name for p in params if p.name not in fixed)
    required = tuple(p.name for p in params if p.default is p.empty and p.name not in fixed)
    return DatasetInfo(reader, fixed, options, required, **facts)


_TORONTO = "https://www.cs.toronto.edu/~kriz/cifar.html"
_SMALL = "http://image-net.org/small/download.php (no longer served; copies circulate)"
_CHRABASZCZ = "https://image-net.org/download-images (registration needed)"

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": _info(
        cifar10, levels=256, shape=(32, 32, 3), train_size=50000, test_size=10000,
        num_classes=10, path="cifar-10-python.tar.gz or its extracted folder", source=_TORONTO,
    ),
    "cifar100": _info(
        cifar100, levels=256, shape=(32, 32, 3), train_size=50000, test_size=10000,
        num_classes=100, path="cifar-100-python.tar.gz or its extracted folder",
        source=_TORONTO,
    ),
    **{
        f"imagenet{s}": _info(
            imagenet_png, {"size": s}, levels=256, shape=(s, s, 3), train_size=1281149,
            test_size=49999, num_classes=None,
            path=f"folder with train_{s}x{s}.tar and valid_{s}x{s}.tar", source=_SMALL,
        )
        for s in (32, 64)
    },
    **{
        f"imagenet{s}_npz": _info(
            imagenet_npz, {"size": s}, levels=256, shape=(s, s, 3), train_size=1281167,
            test_size=50000, num_classes=1000,
            path="folder with train_data_batch_1..10.npz and val_data.npz", source=_CHRABASZCZ,
        )
        for s in (32, 64)
    },
    "image_folder": _info(
        image_folder, levels=256, shape=None, train_size=None, test_size=None,
        num_classes=None, path="folder or uncompressed .tar of PNG/JPEG images",
        source="your own images",
    ),
    "image_array": _info(
        image_array, levels=256, shape=None, train_size=None, test_size=None,
        num_classes=None, path=".npy or .npz of (n, H, W, C) integer images",
        source="your own arrays",
    ),
}  # fmt: skip
"""Every data set :func:`dataset` reads, by name. ``imagenet32``/``imagenet64`` are the PNG
set of van den Oord et al. (2016) that published flow bits/dim use; the ``_npz`` names are
the box-resized set of Chrabaszcz et al. (2017), whose bits/dim are not comparable."""


def dataset(name: str, path: str | os.PathLike, **options) -> ImageData:
    """Read the image data set ``name`` from ``path``.

    Args:
      name: a key of :data:`DATASETS`: ``cifar10``, ``cifar100``, ``imagenet32``,
        ``imagenet64`` (PNG tarballs), ``imagenet32_npz``, ``imagenet64_npz``,
        ``image_folder``, ``image_array``. (The sets shipped in packages, ``digits`` and
        ``mnist``, are :func:`image_dataset`'s.)
      path: the file or folder, as :data:`DATASETS` ``[name].path`` says.
      **options: keywords of the reader (``DATASETS[name].options``), e.g. ``mmap=True``,
        ``labels="coarse"`` (CIFAR-100), ``image_size=64`` (``image_folder``, required).

    Returns:
      :class:`ImageData` as the reader returns it.

    Raises:
      DataError: an unknown name or option, or anything the reader refuses.
    """
    info = DATASETS.get(name)
    if info is None:
        raise DataError(
            f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} (digits and "
            "mnist ship with packages: image_dataset)"
        )
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise DataError(
            f"data set {name!r} takes no option {unknown[0]!r}; its options: "
            f"{', '.join(info.options)}"
        )
    missing = [k for k in info.required if k not in options]
    if missing:
        raise DataError(f"data set {name!r} needs the option {missing[0]!r}")
    return info.reader(path, **info.fixed, **options)
