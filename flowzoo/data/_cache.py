"""The on-disk cache of converted data: decoded images and tar indices as ``.npy`` files.

An entry is a folder ``$FLOWZOO_CACHE/data/<reader>-<source>-<key>/`` (``$FLOWZOO_CACHE``
defaults to ``~/.cache/flowzoo``) holding one ``.npy`` file per array and a
``manifest.json`` naming every array with its shape and dtype. The key is the SHA-256 of
the reader's name and version, its options and, for every source file, the absolute path,
size and modification time, so a changed, touched or moved source gets a new entry and a
new reader version never reads an old one.

Writes are atomic: each array is written to a temporary file in the entry's folder and
moved into place with ``os.replace``, and the manifest is written the same way only after
every array is in place; an entry is read only through its manifest, so a conversion
killed at any point leaves no entry that reads as complete. An entry whose files do not
match their manifest (missing, truncated, other shape or dtype) is rebuilt. Arrays are
loaded with ``allow_pickle=False``, and memory-mapped (``mmap_mode="r"``) on request.

Old entries are never deleted automatically; delete the folder to free the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ._arrays import DataError
from ._images import ImageData

_MANIFEST = "manifest.json"
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def cache_dir() -> Path:
    """The root of flowzoo's caches: ``$FLOWZOO_CACHE``, or ``~/.cache/flowzoo`` if unset.

    Converted data sets live in its ``data/`` folder.
    """
    return Path(os.environ.get("FLOWZOO_CACHE") or Path.home() / ".cache" / "flowzoo")


def source_files(root: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Every regular file under the folder ``root`` (recursive, sorted by relative name),
    skipping hidden files and folders (names starting with ``.``); with ``suffixes``, only
    files whose lower-cased name ends with one of them."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and (suffixes is None or f.lower().endswith(suffixes)):
                out.append(Path(dirpath) / f)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def entry_dir(reader: str, version: int, sources: Iterable[Path], options: dict) -> Path:
    """The cache folder of ``reader`` (at ``version``, with ``options``) over ``sources``.

    Every source is ``stat``-ed: its absolute path, size and ``mtime`` (ns) enter the key.
    """
    digest = hashlib.sha256()
    head = json.dumps([reader, version, options], sort_keys=True, default=str)
    digest.update(head.encode())
    paths = [Path(path).absolute() for path in sources]
    for p in paths:
        st = p.stat()
        digest.update(f"\n{p}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    common = Path(os.path.commonpath(paths)).name if paths else "none"
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", common)[:40]
    return cache_dir() / "data" / f"{reader}-{label}-{digest.hexdigest()[:24]}"


def _npy_ok(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``path`` is a ``.npy`` of exactly ``shape``/``dtype`` and its full size."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            got_shape, fortran, got_dtype = read(fh)
            offset = fh.tell()
        size = path.stat().st_size
    except (OSError, ValueError):
        return False
    want = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return got_shape == shape and got_dtype == dtype and not fortran and size == want


def load_entry(entry: Path, mmap: bool) -> tuple[dict[str, np.ndarray], dict] | None:
    """The arrays and metadata of a complete cache entry, or ``None`` if it is missing,
    incomplete or corrupt (then it is rebuilt). ``mmap``: memory-map the arrays read-only
    instead of reading them into memory."""
    try:
        manifest = json.loads((entry / _MANIFEST).read_text())
        parts = {k: (tuple(v[0]), np.dtype(v[1])) for k, v in manifest["arrays"].items()}
        meta = manifest["meta"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    arrays = {}
    for name, (shape, dtype) in parts.items():
        path = entry / f"{name}.npy"
        if not _npy_ok(path, shape, dtype):
            return None
        empty = int(np.prod(shape)) == 0  # an empty file cannot be memory-mapped
        arrays[name] = np.load(path, mmap_mode="r" if mmap and not empty else None)
    return arrays, meta


def _stale(entry: Path) -> None:
    """Remove temporary files left in ``entry`` by killed writers on this host."""
    for tmp in entry.glob(".*.tmp"):
        fields = tmp.name.rsplit(".", 3)  # .<name>.npy.<host>.<pid>.tmp -> [..., host, pid]
        if len(fields) == 4 and fields[1] == _HOST and fields[2].isdigit():
            try:
                os.kill(int(fields[2]), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


@contextlib.contextmanager
def _unwritable(entry: Path) -> Iterator[None]:
    """OSErrors while writing the cache -> one DataError line saying what to do."""
    try:
        yield
    except OSError as err:
        raise DataError(
            f"{entry}: cannot write the data cache ({err.strerror or err}); set FLOWZOO_CACHE "
            "to a writable folder, or pass cache=False"
        ) from None


class EntryWriter:
    """Collects the arrays of one cache entry in temporary files (see :func:`write_entry`)."""

    def __init__(self, entry: Path | None):
        self.entry = entry
        self.arrays: dict[str, np.ndarray] = {}
        self.temps: dict[str, Path] = {}

    def _temp(self, name: str) -> Path:
        tmp = self.entry / f".{name}.npy.{_HOST}.{os.getpid()}.tmp"
        self.temps[name] = tmp
        return tmp

    def empty(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A writable array of ``shape``/``dtype`` to fill (a memory map of the temporary
        file when caching, so a large conversion never sits in memory)."""
        shape = tuple(int(s) for s in shape)
        if self.entry is None or int(np.prod(shape)) == 0:
            out = np.zeros(shape, dtype)
        else:
            with _unwritable(self.entry):
                out = np.lib.format.open_memmap(self._temp(name), "w+", np.dtype(dtype), shape)
        self.arrays[name] = out
        return out

    def put(self, name: str, array: np.ndarray) -> None:
        """Store a finished array."""
        self.arrays[name] = np.ascontiguousarray(array)

    def _commit(self, meta: dict) -> None:
        with _unwritable(self.entry):
            self._write(meta)

    def _write(self, meta: dict) -> None:
        manifest = {"arrays": {}, "meta": meta}
        for name, arr in self.arrays.items():
            manifest["arrays"][name] = [list(arr.shape), arr.dtype.str]
            if isinstance(arr, np.memmap):
                arr.flush()
                continue
            with open(self._temp(name), "wb") as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)
        for name, tmp in self.temps.items():
            os.replace(tmp, self.entry / f"{name}.npy")
        tmp = self.entry / f".{_MANIFEST}.{_HOST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, self.entry / _MANIFEST)

    def _abort(self) -> None:
        self.arrays.clear()
        for tmp in self.temps.values():
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _writing(entry: Path | None) -> Iterator[EntryWriter]:
    writer = EntryWriter(entry)
    if entry is not None:
        with _unwritable(entry):
            entry.mkdir(parents=True, exist_ok=True)
            (entry / _MANIFEST).unlink(missing_ok=True)  # the entry reads as missing until done
            _stale(entry)
    try:
        yield writer
    except BaseException:
        if entry is not None:
            writer._abort()
            with contextlib.suppress(OSError):
                entry.rmdir()  # only if nothing else is in it
        raise


def cached(
    reader: str,
    version: int,
    sources: Sequence[Path],
    options: dict,
    build: Callable[[EntryWriter], dict],
    *,
    cache: bool,
    mmap: bool,
) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays ``build`` makes, through the cache.

    Args:
      reader, version, options: name and version of the conversion and its options (JSON
        values); all enter the key.
      sources: the files the conversion reads (their path, size and mtime enter the key).
      build: fills an :class:`EntryWriter` (``writer.empty(name, shape, dtype)`` to fill in
        place, ``writer.put(name, array)``) and returns JSON metadata.
      cache: ``False``: build in memory, no files.
      mmap: return the cached arrays memory-mapped read-only (needs ``cache``).

    Returns:
      ``(arrays, meta)``.
    """
    if mmap and not cache:
        raise DataError("mmap=True reads the converted arrays from the cache; pass cache=True")
    if not cache:
        with _writing(None) as writer:
            meta = build(writer)
        return writer.arrays, meta
    entry = entry_dir(reader, version, sources, options)
    found = load_entry(entry, mmap)
    if found is not None:
        return found
    with _writing(entry) as writer:
        meta = build(writer)
        writer._commit(meta)
    found = load_entry(entry, mmap)
    if found is None:
        raise DataError(f"{entry}: the cache entry just written does not read back")
    return found


_FIELDS = ("train", "test", "train_labels", "test_labels")


def cached_image_data(
    reader: str,
    version: int,
    sources: Sequence[Path],
    options: dict,
    build: Callable[[], ImageData],
    *,
    cache: bool,
    mmap: bool,
) -> ImageData:
    """:func:`cached` for a reader that builds a whole :class:`ImageData` in memory."""

    def store(writer: EntryWriter) -> dict:
        data = build()
        for field in _FIELDS:
            if getattr(data, field) is not None:
                writer.put(field, getattr(data, field))
        return {"levels": int(data.levels)}

    arrays, meta = cached(reader, version, sources, options, store, cache=cache, mmap=mmap)
    return ImageData(
        arrays["train"], arrays["test"], meta["levels"], arrays.get("train_labels"),
        arrays.get("test_labels"),
    )  # fmt: skip
