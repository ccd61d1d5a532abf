"""CIFAR-10/100 and downsampled-ImageNet readers on small files written in the published formats.

The fixtures are what the real files hold: Python-2-style pickles of protocol 2 with ``bytes``
keys and a ``uint8`` ``(n, 3072)`` array, packed under the official member names; ``.npz``
batches with ``data`` rows and 1-based ``labels``.
"""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest

from flowzoo.data import DataError, cifar10, cifar100, dataset, imagenet_npz

CIFAR10 = "cifar-10-batches-py"
CIFAR100 = "cifar-100-python"


def rows(n: int, seed: int, size: int = 32) -> np.ndarray:
    """``(n, 3 * size * size)`` uint8 rows whose R, G and B planes hold distinct ranges."""
    rng = np.random.default_rng(seed)
    planes = [rng.integers(lo, lo + 80, (n, size * size)) for lo in (0, 90, 175)]
    return np.concatenate(planes, axis=1).astype(np.uint8)


def check_layout(images: np.ndarray, data: np.ndarray, size: int = 32) -> None:
    """Pixel (i, r, c, ch) is value ``ch * size^2 + r * size + c`` of row i."""
    assert images.dtype == np.uint8 and images.shape == (len(data), size, size, 3)
    for i, r, c, ch in [(0, 0, 0, 0), (0, 0, 1, 1), (len(data) - 1, size - 1, 2, 2), (1, 3, 5, 0)]:
        assert images[i, r, c, ch] == data[i, ch * size * size + r * size + c]
    assert images[..., 0].max() < 90 <= images[..., 1].min() and images[..., 2].min() >= 175


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote the real files: every ``str``/``bytes`` a (SHORT_)BINSTRING
    (Python 3 writes ``bytes`` through ``_codecs.encode`` instead)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_binstring(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(raw)
        short = n < 256
        head = pickle.SHORT_BINSTRING + bytes([n]) if short else pickle.BINSTRING
        self.write(head + (b"" if short else n.to_bytes(4, "little")) + raw)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_binstring


def batch(data: np.ndarray, labels: dict[bytes, list[int]], py2: bool = False) -> bytes:
    obj = {b"batch_label": b"training batch 1 of 5", **labels, b"data": data}
    obj[b"filenames"] = [f"img_{i}.png".encode() for i in range(len(data))]
    if not py2:
        return pickle.dumps(obj, protocol=2)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar10_files(n: int = 3, py2: bool = False) -> tuple[dict, list[np.ndarray], list[list[int]]]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    datas = [rows(n + k, seed=k) for k in range(6)]
    labels = [[(k + j) % 10 for j in range(n + k)] for k in range(6)]
    files = {
        f"{CIFAR10}/{m}": batch(d, {b"labels": y}, py2)
        for m, d, y in zip(names, datas, labels, strict=True)
    }
    files[f"{CIFAR10}/batches.meta"] = pickle.dumps({b"label_names": [b"airplane"]}, protocol=2)
    return files, datas, labels


def cifar100_files() -> tuple[dict[str, bytes], list[np.ndarray]]:
    datas = [rows(4, seed=1), rows(2, seed=2)]
    files = {}
    for name, d in zip(["train", "test"], datas, strict=True):
        labels = {b"fine_labels": [99 - j for j in range(len(d))], b"coarse_labels": [19] * len(d)}
        files[f"{CIFAR100}/{name}"] = batch(d, labels)
    files[f"{CIFAR100}/meta"] = pickle.dumps({b"fine_label_names": [b"apple"]}, protocol=2)
    return files, datas


def write_tar(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def write_folder(root, files: dict[str, bytes]):
    for name, raw in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(raw)
    return root


@pytest.mark.parametrize("py2", [False, True], ids=["py3-pickles", "py2-pickles"])
def test_cifar10_tarball_and_folder(tmp_path, py2):
    files, datas, labels = cifar10_files(py2=py2)
    raw = files[f"{CIFAR10}/test_batch"]
    assert (b"_codecs" in raw) != py2 and (b"numpy.core.multiarray" in raw) == py2
    tar = write_tar(tmp_path / "cifar-10-python.tar.gz", files)
    folder = write_folder(tmp_path / "x", files)
    for path in [tar, folder, folder / CIFAR10]:
        d = cifar10(path)
        assert d.levels == 256 and len(d.train) == sum(len(x) for x in datas[:5])
        check_layout(d.train, np.concatenate(datas[:5]))
        check_layout(d.test, datas[5])
        assert d.train_labels.dtype == np.int64 and d.test_labels.tolist() == labels[5]
        assert d.train_labels.tolist() == sum(labels[:5], [])


def test_cifar100_fine_and_coarse(tmp_path):
    files, (train, test) = cifar100_files()
    tar = write_tar(tmp_path / "cifar-100-python.tar.gz", files)
    for path in [tar, write_folder(tmp_path / "x", files)]:
        d = cifar100(path)
        check_layout(d.train, train)
        check_layout(d.test, test)
        assert d.train_labels.tolist() == [99, 98, 97, 96] and d.test_labels.tolist() == [99, 98]
        assert cifar100(path, labels="coarse").train_labels.tolist() == [19] * 4
    with pytest.raises(DataError, match="fine"):
        cifar100(tar, labels="medium")


class Evil:
    """A pickle payload that would create ``target`` if it ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.target}",)


class Decode:
    """A pickle payload that calls ``_codecs.encode`` with a codec other than latin-1."""

    def __reduce__(self):
        import codecs

        return codecs.encode, (b"x" * 1000, "zlib")


def corrupt_cases(tmp_path) -> list[tuple[bytes, str]]:
    data = rows(3, seed=0)
    target = tmp_path / "pwned"
    return [
        (pickle.dumps({b"labels": [1, 2, 3]}, protocol=2), "b'data'"),
        (pickle.dumps([data], protocol=2), "expected a CIFAR batch"),
        (batch(data[:, :3000], {b"labels": [1, 2, 3]}), "rows of 3072"),
        (batch(data.astype(np.int16), {b"labels": [1, 2, 3]}), "uint8"),
        (batch(data, {b"labels": [1, 2]}), "3 integer labels"),
        (pickle.dumps({b"data": Evil(target)}, protocol=2), r"global (posix|os|nt)\.system"),
        (pickle.dumps({b"data": Decode()}, protocol=2), "not a readable pickle.*zlib"),
        (b"\x80\x02}q\x00(", "not a readable pickle"),
    ]


def test_cifar_bad_pickles(tmp_path):
    files, _, _ = cifar10_files()
    for k, (raw, message) in enumerate(corrupt_cases(tmp_path)):
        bad = {**files, f"{CIFAR10}/data_batch_3": raw}
        for path in [
            write_tar(tmp_path / f"{k}.tar.gz", bad),
            write_folder(tmp_path / f"{k}", bad),
        ]:
            with pytest.raises(DataError, match=message) as err:
                cifar10(path)
            assert "data_batch_3" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_cifar_bad_files(tmp_path):
    files, _, _ = cifar10_files()
    tar = write_tar(tmp_path / "c.tar.gz", files)
    raw = tar.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.tar.gz: truncated or corrupt"):
        cifar10(tmp_path / "cut.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball at all")
    with pytest.raises(DataError, match="junk.tar.gz: truncated or corrupt"):
        cifar10(tmp_path / "junk.tar.gz")
    with pytest.raises(DataError, match="nope.tar.gz: no such file"):
        cifar10(tmp_path / "nope.tar.gz")
    less = {k: v for k, v in files.items() if not k.endswith("test_batch")}
    with pytest.raises(DataError, match="no file cifar-10-batches-py/test_batch"):
        cifar10(write_tar(tmp_path / "less.tar.gz", less))
    with pytest.raises(DataError, match="test_batch: file not found"):
        cifar10(write_folder(tmp_path / "less", less))
    with pytest.raises(DataError, match="no file cifar-100-python/train"):
        cifar100(tar)


def test_cifar_tar_ignores_links_and_outside_paths(tmp_path):
    files, _, _ = cifar10_files()
    with tarfile.open(tmp_path / "l.tar.gz", "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(name if "test_batch" not in name else "../" + name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        link = tarfile.TarInfo(f"{CIFAR10}/test_batch")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="no file cifar-10-batches-py/test_batch"):
        cifar10(tmp_path / "l.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.tar.gz"]


def write_npz(root, size: int, n: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    datas = [rows(n + k % 2, seed=k, size=size) for k in range(11)]
    labels = [np.arange(1, len(d) + 1) * (k + 1) for k, d in enumerate(datas)]
    for k in range(10):
        np.savez(root / "train" / f"train_data_batch_{k + 1}.npz", data=datas[k], labels=labels[k])
    np.savez(root / "val" / "val_data.npz", data=datas[10], labels=labels[10])
    return datas, labels


@pytest.mark.parametrize("size", [32, 64])
def test_imagenet_npz(tmp_path, size):
    datas, labels = write_npz(tmp_path, size)
    d = imagenet_npz(tmp_path, size=size)
    check_layout(d.train, np.concatenate(datas[:10]), size)
    check_layout(d.test, datas[10], size)
    assert d.levels == 256 and d.train_labels.dtype == np.int64
    assert d.train_labels.tolist() == (np.concatenate(labels[:10]) - 1).tolist()
    assert d.test_labels.tolist() == (labels[10] - 1).tolist()


def test_imagenet_npz_errors(tmp_path):
    datas, labels = write_npz(tmp_path, 32)
    with pytest.raises(
        DataError, match="train_data_batch_1.npz: expected data as uint8 rows of 12288"
    ):
        imagenet_npz(tmp_path, size=64)
    with pytest.raises(DataError, match="size must be 32 or 64"):
        imagenet_npz(tmp_path, size=48)
    with pytest.raises(DataError, match="missing: no such folder"):
        imagenet_npz(tmp_path / "missing")
    val = tmp_path / "val" / "val_data.npz"
    cases = [
        ({"data": datas[10], "labels": labels[10] * 0}, "1-based"),
        ({"data": datas[10], "labels": labels[10][:-1]}, "integer labels"),
        ({"data": datas[10]}, "expected arrays 'data' and 'labels'"),
        ({"data": np.array([object()] * 2), "labels": labels[10]}, "not a readable .npz"),
    ]
    for arrays, message in cases:
        np.savez(val, **arrays)
        with pytest.raises(DataError, match=message) as err:
            imagenet_npz(tmp_path)
        assert "val_data.npz" in str(err.value)
    val.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="val_data.npz: not a readable .npz"):
        imagenet_npz(tmp_path)
    val.unlink()
    with pytest.raises(DataError, match="val_data.npz: file not found"):
        imagenet_npz(tmp_path)


def test_cifar_through_dataset_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path / "cache"))
    files, datas, labels = cifar10_files()
    tar = write_tar(tmp_path / "cifar-10-python.tar.gz", files)
    ref = cifar10(tar, cache=False)
    assert not (tmp_path / "cache").exists()
    for options in [{}, {"mmap": True}, {}]:  # converted once, then read from the cache
        d = dataset("cifar10", tar, **options)
        assert isinstance(d.train, np.memmap) == bool(options)
        for got, want in zip(d, ref, strict=True):
            np.testing.assert_array_equal(got, want)
    assert len(list((tmp_path / "cache" / "data").iterdir())) == 1
    files100, (train, _) = cifar100_files()
    tar100 = write_tar(tmp_path / "cifar-100-python.tar.gz", files100)
    d = dataset("cifar100", tar100, labels="coarse", mmap=True)
    check_layout(d.train, train)
    assert d.train_labels.tolist() == [19] * 4
    with pytest.raises(DataError, match="mmap=True .* pass cache=True"):
        cifar10(tar, cache=False, mmap=True)
