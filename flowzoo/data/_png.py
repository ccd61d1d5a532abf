"""Random access to the images of an uncompressed tar, and decoding of one PNG or JPEG image.

:func:`tar_image_index` reads a tar's headers once (and caches the result): the name,
data offset and size of every image member, so that any image can then be read with one
``os.pread`` (:func:`read_tar_member`) from any thread or process, without ``tarfile``.
:func:`decode_image` turns the bytes of one PNG or JPEG file into a ``uint8`` ``(H, W, C)``
array with Pillow. Neither ever extracts anything to disk or follows a link.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._types import Shaped
from ._arrays import DataError
from ._cache import cached

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""File-name endings read as images (compared lower-cased)."""

_INDEX_VERSION = 1
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
_CHUNK = 512  # images per task of the decoding threads


class TarIndex(NamedTuple):
    """The image members of a tar, sorted by name: member ``i`` is the file ``names[i]``
    (``str``, the member's path in the tar without a leading ``./``), whose bytes are
    ``sizes[i]`` bytes from byte ``offsets[i]`` of the tar (both ``int64``)."""

    names: Shaped[np.ndarray, " n"]
    offsets: Shaped[np.ndarray, " n"]
    sizes: Shaped[np.ndarray, " n"]


def _hidden(name: str) -> bool:
    return any(part.startswith(".") for part in name.split("/"))


def _check_uncompressed(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            raise DataError(
                f"{path}: a {kind}-compressed tar; images are read by seeking, which needs an "
                f"uncompressed tar: decompress it first (e.g. {kind} -d)"
            )


def _end_ok(fh, offset: int) -> bool:
    """Whether the tar's headers end in a zero block at ``offset`` (not a cut-off file)."""
    fh.seek(offset)
    block = fh.read(tarfile.BLOCKSIZE)
    return len(block) == tarfile.BLOCKSIZE and not any(block)


def _scan(path: Path) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` of every image member, in tar order; one pass over headers."""
    total = path.stat().st_size
    found = []
    with open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r:") as tar:
        while (info := tar.next()) is not None:
            tar.members.clear()  # hold no TarInfo per member: a tar may have millions
            name = info.name.removeprefix("./")
            if not info.isfile() or _hidden(name):
                continue  # folders, links and devices are never read; hidden files skipped
            if not name.lower().endswith(IMAGE_SUFFIXES):
                raise DataError(
                    f"{path}: {name}: not an image file (the tar may hold only "
                    f"{', '.join(IMAGE_SUFFIXES)} files); remove it from the tar"
                )
            if info.offset_data + info.size > total:
                raise DataError(f"{path}: truncated tarball ({name} runs past the end)")
            found.append((name, info.offset_data, info.size))
        if not _end_ok(fh, tar.offset):
            raise DataError(f"{path}: truncated or corrupt tarball (no end-of-archive block)")
    return found


def _build_index(path: Path, writer) -> dict:
    try:
        members = sorted(_scan(path))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{path}: truncated or corrupt tarball ({err})") from None
    if not members:
        raise DataError(f"{path}: the tar holds no {'/'.join(IMAGE_SUFFIXES)} images")
    names, offsets, sizes = zip(*members, strict=True)
    writer.put("names", np.asarray(names, dtype=str))
    writer.put("offsets", np.asarray(offsets, np.int64))
    writer.put("sizes", np.asarray(sizes, np.int64))
    return {}


def tar_image_index(path: str | os.PathLike, *, cache: bool = True) -> TarIndex:
    """The index of the PNG/JPEG members of an uncompressed tar, sorted by name.

    Reads every header once (``tarfile``, no member data) and caches the index under
    ``$FLOWZOO_CACHE`` (keyed on the tar's path, size and mtime), so a later call costs one
    file read. Regular files only: folders, links and hidden files (a path component starting
    with ``.``) are left out.

    Args:
      path: an uncompressed ``.tar`` file.
      cache: read and write the cached index (``False``: scan the tar every time).

    Returns:
      :class:`TarIndex` ``(names, offsets, sizes)``; read member ``i`` with
      :func:`read_tar_member`.

    Raises:
      DataError: a missing path, a compressed tar, a truncated or corrupt tarball, a member
        that is not a ``.png``/``.jpg``/``.jpeg`` file, or a tar without images; the message
        names the tar (and the member).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file (expected an uncompressed .tar of images)")
    _check_uncompressed(p)
    arrays, _ = cached(
        "tar_index", _INDEX_VERSION, [p], {}, lambda w: _build_index(p, w),
        cache=cache, mmap=False,
    )  # fmt: skip
    return TarIndex(arrays["names"], arrays["offsets"], arrays["sizes"])


def read_tar_member(fd: int, index: TarIndex, i: int) -> bytes:
    """The bytes of member ``i`` of the tar open as file descriptor ``fd`` (``os.open``).

    One ``os.pread``: safe to call from several threads on one descriptor.

    Raises:
      DataError: fewer bytes than the index says (the tar shrank since it was indexed).
    """
    size, offset = int(index.sizes[i]), int(index.offsets[i])
    raw = os.pread(fd, size, offset)
    if len(raw) != size:
        raise DataError(f"{index.names[i]}: truncated tarball ({len(raw)} of {size} bytes)")
    return raw


_MODES = {"1": "L", "L": "L", "RGB": "RGB", "RGBA": "RGBA", "LA": "RGBA", "PA": "RGBA"}


def open_image(raw: bytes, where: str = "image"):
    """``raw`` decoded by Pillow as a loaded ``PIL.Image`` in mode ``L``, ``RGB`` or ``RGBA``
    (palette images become ``RGB``, or ``RGBA`` when they carry transparency; CMYK and
    YCbCr JPEGs become ``RGB``)."""
    from PIL import Image, UnidentifiedImageError

    img = None
    try:
        img = Image.open(io.BytesIO(raw), formats=("PNG", "JPEG"))
        img.load()
    except UnidentifiedImageError:
        kind = next((k for m, k in _SIGNATURES.items() if raw.startswith(m)), None)
        if kind is None:
            raise DataError(f"{where}: not a PNG or JPEG image") from None
        raise DataError(f"{where}: corrupt {kind} file (unreadable header)") from None
    except Exception as err:  # truncated data, bad CRC, bad header, decompression bomb
        detail = " ".join(str(err).split()) or type(err).__name__
        raise DataError(
            f"{where}: corrupt {getattr(img, 'format', None) or 'image'} file ({detail})"
        ) from None
    mode = _MODES.get(img.mode)
    if mode is None and img.mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
    elif mode is None and img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        mode = "RGB"
    if mode is None:
        raise DataError(
            f"{where}: pixel mode {img.mode} (16-bit or float); only 8-bit grey, RGB and "
            "RGBA images are read"
        )
    return img if img.mode == mode else img.convert(mode)


def decode_image(raw: bytes, where: str = "image") -> Shaped[np.ndarray, "H W C"]:
    """Decode the bytes of one PNG or JPEG file.

    Args:
      raw: the file's bytes.
      where: a name for error messages (e.g. ``"train_32x32.tar: train_32x32/0001.png"``).

    Returns:
      ``uint8`` ``(H, W, C)``: ``C = 1`` for grey (and 1-bit) images, 3 for RGB (also
      palette images, CMYK and YCbCr JPEGs), 4 for images with an alpha channel.

    Raises:
      DataError: not a PNG/JPEG, truncated or corrupt data, or 16-bit/float pixels; the
        message starts with ``where``.
    """
    arr = np.asarray(open_image(raw, where), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def fill(out: np.ndarray, n: int, load: Callable[[int], np.ndarray], workers: int | None) -> None:
    """``out[i] = load(i)`` for ``i < n`` on ``workers`` threads (Pillow decodes without the
    GIL); the first error raised by ``load`` is raised here."""
    workers = workers or min(8, os.cpu_count() or 1)

    def chunk(start: int) -> None:
        for i in range(start, min(start + _CHUNK, n)):
            out[i] = load(i)

    if workers == 1 or n <= _CHUNK:
        for start in range(0, n, _CHUNK):
            chunk(start)
        return
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(chunk, start) for start in range(0, n, _CHUNK)]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:  # stop at the first error: do not decode the rest
                future.cancel()
            raise
