"""Downsampled ImageNet 32x32 and 64x64 of van den Oord et al. (2016), from its PNG tarballs.

``train_32x32.tar`` / ``valid_32x32.tar`` (likewise ``64x64``) are uncompressed tars of PNG
files in a folder named like the tar (``train_32x32/...png``), without labels: the set that
published flow bits/dim on ImageNet 32/64 use (Glow 4.09/3.81, RealNVP 4.28/3.98). Images
are decoded once into the cache (``$FLOWZOO_CACHE``), in the order of their sorted names.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._arrays import DataError
from ._cache import EntryWriter, cached
from ._folder import Encoded, encoded_images, reading
from ._images import ImageData
from ._png import decode_image, fill

_VERSION = 1


def _pixels(x: np.ndarray, size: int, where: str) -> np.ndarray:
    """One decoded image as ``(size, size, 3)``: grey repeated to RGB, anything else refused."""
    if x.shape[:2] != (size, size):
        raise DataError(
            f"{where}: a {x.shape[0]}x{x.shape[1]} image among {size}x{size} ones (mixed image "
            f"sizes); is this the {size}x{size} set?"
        )
    if x.shape[2] == 4:
        raise DataError(f"{where}: an RGBA image; the downsampled ImageNet PNGs are RGB")
    return x  # (size, size, 1) broadcasts into the RGB row


def _split(root: Path, stem: str, size: int, cache: bool, mmap: bool, workers) -> np.ndarray:
    tar, folder = root / f"{stem}.tar", root / stem
    if tar.is_file():
        enc = encoded_images(tar, cache=cache)
        outside = [n for n in enc.names if not n.startswith(f"{stem}/")]
        if outside:
            raise DataError(f"{tar}: {outside[0]}: expected every image under {stem}/")
    elif folder.is_dir():
        enc = encoded_images(folder, cache=cache)
    else:
        raise DataError(f"{tar}: file not found, nor the extracted folder {folder}/")

    def build(writer: EntryWriter) -> dict:
        _decode(
            enc, size, workers, writer.empty("images", (len(enc.names), size, size, 3), np.uint8)
        )
        return {}

    arrays, _ = cached(
        "imagenet_png", _VERSION, enc.files, {"size": size}, build, cache=cache, mmap=mmap
    )
    return arrays["images"]


def _decode(enc: Encoded, size: int, workers, out: np.ndarray) -> None:
    with reading(enc) as read:

        def load(i: int) -> np.ndarray:
            raw, where = read(i)
            return _pixels(decode_image(raw, where), size, where)

        fill(out, len(enc.names), load, workers)


def imagenet_png(
    path: str | os.PathLike,
    size: int = 32,
    *,
    cache: bool = True,
    mmap: bool = False,
    workers: int | None = None,
) -> ImageData:
    """Downsampled ImageNet (van den Oord et al., 2016) from its PNG tarballs; no labels.

    The tarballs were published at ``http://image-net.org/small/download.php`` (that page is
    no longer served; copies circulate, e.g. on Academic Torrents). Sizes and SHA-256 as
    TensorFlow Datasets records them:

    | file | bytes | SHA-256 |
    | --- | --- | --- |
    | ``train_32x32.tar`` | 4,113,018,880 | ``244a323d48f8d72f65ad8b54658c01fed68d2d7bdc77ccb43da58c11e94224e5`` |
    | ``valid_32x32.tar`` | 161,474,560 | ``862e559462b24cf736212a19f6b0d47b55c2dc8ebdaa95ccecfe71260124c8f7`` |
    | ``train_64x64.tar`` | 12,112,588,800 | ``e2a2c1947a748d0d256e98e6d82800d855441dc9e4de2e71a773f1324c4524d7`` |
    | ``valid_64x64.tar`` | 477,255,680 | ``eeac03ec4f585baf871d2b4cb9c974bfe345e74878a74e5820fe6eb1041629cd`` |

    The first call indexes each tar and decodes every image into the cache (about
    3.9 GB at 32x32, 15.7 GB at 64x64, for the train set); later calls read the cache.

    Args:
      path: a folder holding ``train_{size}x{size}.tar`` and ``valid_{size}x{size}.tar``
        (uncompressed, as published), or the folders they extract to.
      size: 32 or 64.
      cache: keep the decoded images under ``$FLOWZOO_CACHE`` (keyed on each tar's path,
        size and mtime) and read them from there next time.
      mmap: return memory-mapped (read-only) arrays from the cache instead of arrays in RAM
        (advised at 64x64).
      workers: decoding threads (default: up to 8).

    Returns:
      :class:`ImageData`: ``train`` ``(1281149, size, size, 3)`` and ``test`` (the ``valid``
      tar) ``(49999, size, size, 3)``, ``uint8`` RGB values ``0 .. 255``, ``levels=256``,
      each in the order of the sorted member names; labels ``None``.

    Raises:
      DataError: a missing folder or tarball, a compressed, truncated or corrupt tarball, a
        member that is not a PNG file or lies outside the tar's folder, a corrupt PNG, an
        image of another size (mixed image sizes) or with an alpha channel, or an empty tar;
        the message names the tar and the member.
    """
    if size not in (32, 64):
        raise DataError(f"size must be 32 or 64, got {size!r}")
    root = Path(path)
    if not root.is_dir():
        raise DataError(
            f"{root}: no such folder (expected the folder holding train_{size}x{size}.tar and "
            f"valid_{size}x{size}.tar)"
        )
    splits = [
        _split(root, f"{s}_{size}x{size}", size, cache, mmap, workers) for s in ("train", "valid")
    ]
    return ImageData(splits[0], splits[1], 256)
