"""image_folder, image_array, the data cache and dataset(name, path) on small files.

Split references are recomputed here from the documented rule (rank by
``sha256("flowzoo/<reader>/<key>")``); resizing is checked where its result is exact (a box
halving of 2x2-constant blocks, a pure centre crop, a constant image).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from flowzoo.data import (
    DATASETS,
    DataError,
    cache_dir,
    dataset,
    image_array,
    image_folder,
)


def png(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(x.squeeze(-1) if x.ndim == 3 and x.shape[-1] == 1 else x).save(buf, "PNG")
    return buf.getvalue()


def write(root, files: dict[str, bytes]):
    for name, raw in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(raw)
    return root


def test_rows(keys: list[str], fraction: float, reader: str) -> tuple[list[int], list[int]]:
    """(train rows, test rows), each ascending, by the documented rule."""
    n_test = max(round(len(keys) * fraction), 1)
    rank = sorted(
        range(len(keys)),
        key=lambda i: hashlib.sha256(f"flowzoo/{reader}/{keys[i]}".encode()).digest(),
    )
    test = sorted(rank[:n_test])
    return [i for i in range(len(keys)) if i not in test], test


test_rows.__test__ = False  # a helper, not a test


def images(n: int, size: int, seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


@pytest.fixture
def classes(tmp_path):
    """A folder ``root/{cat,dog}/*.png`` of 8x8 RGB images; its names and images sorted."""
    x = images(7, 8, seed=0)
    names = [f"cat/{i}.png" for i in range(3)] + [f"dog/{i}.png" for i in range(4)]
    write(tmp_path / "root", {n: png(x[i]) for i, n in enumerate(names)})
    return tmp_path / "root", names, x


def test_image_folder_classes_split_and_tar(classes, tmp_path):
    root, names, x = classes
    train, test = test_rows(names, 0.3, "image_folder")
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    tar = tmp_path / "images.tar"
    with tarfile.open(tar, "w") as t:  # one top-level folder, as `tar -cf images.tar root`
        for n in names:
            t.add(root / n, f"root/{n}")
    for path, options in [(root, {}), (root, {"mmap": True}), (tar, {"cache": False})]:
        d = image_folder(path, 8, test_fraction=0.3, **options)
        assert d.levels == 256 and d.train.dtype == np.uint8 and d.train.shape == (5, 8, 8, 3)
        np.testing.assert_array_equal(d.train, x[train])
        np.testing.assert_array_equal(d.test, x[test])
        assert d.train_labels.tolist() == labels[train].tolist()
        assert d.test_labels.tolist() == labels[test].tolist()
    d = dataset("image_folder", root, image_size=8, test_fraction=0)
    np.testing.assert_array_equal(d.train, x)
    assert d.test.shape == (0, 8, 8, 3)


def test_image_folder_resizes(tmp_path):
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    wide = blocks.repeat(2, axis=0).repeat(2, axis=1)  # 16x24, 2x2-constant blocks
    square = blocks[:, :8].repeat(2, axis=0).repeat(2, axis=1)  # 16x16
    flat = np.full((13, 7, 3), (10, 200, 30), np.uint8)
    write(tmp_path, {"a_wide.png": png(wide), "b_square.png": png(square), "c_flat.png": png(flat)})
    center = image_folder(tmp_path, 8, test_fraction=0).train
    np.testing.assert_array_equal(center[0], blocks[:, 2:10])  # box halving, then centre crop
    np.testing.assert_array_equal(center[1], blocks[:, :8])
    np.testing.assert_array_equal(center[2], np.broadcast_to(flat[0, 0], (8, 8, 3)))
    resized = image_folder(tmp_path, 8, crop="resize", test_fraction=0).train
    np.testing.assert_array_equal(resized[1], blocks[:, :8])
    np.testing.assert_array_equal(resized[2], np.broadcast_to(flat[0, 0], (8, 8, 3)))
    assert not np.array_equal(resized[0], center[0])  # 12x8 squeezed to 8x8, not cropped


def test_image_folder_grey_and_rgb(tmp_path):
    grey, rgb = images(2, 4, seed=2, channels=1), images(1, 4, seed=3)
    write(tmp_path / "g", {"0.png": png(grey[0]), "1.png": png(grey[1])})
    d = image_folder(tmp_path / "g", 4, test_fraction=0)
    assert d.train.shape == (2, 4, 4, 1) and d.train_labels is None
    np.testing.assert_array_equal(d.train, grey)
    write(tmp_path / "g", {"2.png": png(rgb[0])})
    d = image_folder(tmp_path / "g", 4, test_fraction=0)
    np.testing.assert_array_equal(d.train[:2], grey.repeat(3, axis=-1))
    np.testing.assert_array_equal(d.train[2], rgb[0])


def test_image_folder_errors(classes, tmp_path):
    root, _, x = classes
    rgba = np.concatenate([x[0], x[0][..., :1]], axis=-1)
    cases = [
        ({"dog/notes.txt": b"hi"}, "dog/notes.txt: not an image file"),
        ({"dog/9.png": png(x[0])[:150]}, "dog/9.png: corrupt PNG file"),
        ({"dog/9.jpg": b"\xff\xd8\xff junk"}, "dog/9.jpg: corrupt JPEG file"),
        ({"dog/9.png": png(rgba)}, "dog/9.png: the image has an alpha channel"),
        ({"9.png": png(x[0])}, "9.png lies beside the class sub-folders"),
    ]
    for k, (files, message) in enumerate(cases):
        bad = write(
            tmp_path / f"bad{k}", {**{f"cat/{i}.png": png(x[i]) for i in range(2)}, **files}
        )
        with pytest.raises(DataError, match=message) as err:
            image_folder(bad, 8)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
        assert not list(cache_dir().glob("data/image_folder-*/.*.tmp"))
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    write(tmp_path / "empty", {".DS_Store": b"x"})
    with pytest.raises(DataError, match="empty: the folder holds no"):
        image_folder(tmp_path / "empty", 8)
    with pytest.raises(DataError, match="nope: no such file or folder"):
        image_folder(tmp_path / "nope", 8)
    with pytest.raises(DataError, match="crop must be"):
        image_folder(root, 8, crop="fill")
    with pytest.raises(DataError, match="image_size must be a positive int"):
        image_folder(root, 0)
    with pytest.raises(DataError, match="test_fraction must be in"):
        image_folder(root, 8, test_fraction=1.0)


def test_image_array(tmp_path):
    x = images(9, 4, seed=4)
    y = np.arange(9) % 3
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", images=x, labels=y)
    np.savez(tmp_path / "split.npz", train=x[:6], test=x[6:], train_labels=y[:6], test_labels=y[6:])
    train, test = test_rows([str(i) for i in range(9)], 0.25, "image_array")
    for path, options in [("x.npy", {}), ("x.npy", {"mmap": True}), ("xy.npz", {"cache": False})]:
        d = image_array(tmp_path / path, test_fraction=0.25, **options)
        np.testing.assert_array_equal(d.train, x[train])
        np.testing.assert_array_equal(d.test, x[test])
        assert (d.train_labels is None) == (path == "x.npy")
    assert (
        d.train_labels.tolist() == y[train].tolist() and d.test_labels.tolist() == y[test].tolist()
    )
    d = dataset("image_array", tmp_path / "split.npz")
    np.testing.assert_array_equal(d.train, x[:6])
    assert d.test_labels.tolist() == y[6:].tolist()
    np.save(tmp_path / "grey.npy", x[..., 0])
    np.save(tmp_path / "big.npy", x.astype(np.int16) + 200)
    np.savez(tmp_path / "half.npz", train=x)
    np.savez(tmp_path / "lab.npz", images=x, labels=y[:-1])
    cases = [
        ("grey.npy", "expected a non-empty array of shape"),
        ("big.npy", r"pixel values must lie in \[0, 255\]"),
        ("half.npz", "has 'train' but no 'test'"),
        ("lab.npz", r"lab.npz\[images\]\[labels\]: expected 9 integer labels"),
        ("missing.npy", "missing.npy: no such file"),
    ]
    for name, message in cases:
        with pytest.raises(DataError, match=message):
            image_array(tmp_path / name)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:100])
    with pytest.raises(DataError, match="cut.npy: not a readable .npy image array"):
        image_array(tmp_path / "cut.npy")


def entry_of(reader: str):
    (entry,) = cache_dir().glob(f"data/{reader}-*")
    return entry


def test_cache_hit_miss_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path / "cache"))
    x, x2 = images(6, 4, seed=5), images(6, 4, seed=6)
    src = tmp_path / "x.npy"
    np.save(src, x)
    mtime = src.stat().st_mtime_ns
    first = image_array(src, test_fraction=0)
    np.testing.assert_array_equal(first.train, x)
    np.save(src, x2)  # same size; the old mtime back: the key is unchanged, so a hit
    os.utime(src, ns=(mtime, mtime))
    np.testing.assert_array_equal(image_array(src, test_fraction=0).train, x)
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))  # touched: a miss, converted again
    np.testing.assert_array_equal(image_array(src, test_fraction=0, mmap=True).train, x2)
    assert len(list(cache_dir().glob("data/image_array-*"))) == 2
    os.utime(src, ns=(mtime, mtime))  # the first key again, its entry corrupt: rebuilt (x2)
    entries = list(cache_dir().glob("data/image_array-*"))
    for entry in entries:
        raw = (entry / "images.npy").read_bytes()
        (entry / "images.npy").write_bytes(raw[:-5])
    np.testing.assert_array_equal(image_array(src, test_fraction=0).train, x2)
    for entry in entries:
        (entry / "manifest.json").write_text("{not json")
    np.testing.assert_array_equal(image_array(src, test_fraction=0).train, x2)
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path / "a_file"))
    with pytest.raises(DataError, match="a_file/data/.*cannot write the data cache"):
        image_array(src)
    np.testing.assert_array_equal(image_array(src, test_fraction=0, cache=False).train, x2)


KILLED = """
import os, signal, sys
import numpy as np
from flowzoo.data import _png, image_folder
real_fill = _png.fill
def fill(out, n, load, workers):
    def dying(i):
        if i == 2:
            out.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return load(i)
    real_fill(out, n, dying, 1)
import flowzoo.data._folder as f
f.fill = fill
image_folder(sys.argv[1], 8, test_fraction=0)
"""


@pytest.mark.slow
def test_cache_survives_kill_9(classes, tmp_path, monkeypatch):
    root, names, x = classes
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", KILLED, str(root)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    entry = entry_of("image_folder")
    assert not (entry / "manifest.json").exists() and len(list(entry.glob(".*.tmp"))) == 1
    d = image_folder(root, 8, test_fraction=0)
    np.testing.assert_array_equal(d.train, x)
    assert not list(entry.glob(".*.tmp"))  # the dead writer's temporary file is gone
    d = image_folder(root, 8)
    assert len(d.train) + len(d.test) == len(x)


def test_dataset_table_and_errors(tmp_path):
    assert set(DATASETS) == {
        "cifar10", "cifar100", "imagenet32", "imagenet64", "imagenet32_npz", "imagenet64_npz",
        "image_folder", "image_array",
    }  # fmt: skip
    assert DATASETS["imagenet64"].shape == (64, 64, 3) and DATASETS["imagenet64"].fixed == {
        "size": 64
    }
    assert DATASETS["cifar100"].options == ("labels", "cache", "mmap")
    assert DATASETS["image_folder"].required == ("image_size",)
    with pytest.raises(DataError, match="unknown data set 'mnist'.*image_dataset"):
        dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="'cifar10' takes no option 'size'"):
        dataset("cifar10", tmp_path, size=32)
    with pytest.raises(DataError, match="'image_folder' needs the option 'image_size'"):
        dataset("image_folder", tmp_path)


def test_threaded_decode_matches_and_stops_at_an_error(tmp_path):
    x = images(1100, 4, seed=7)  # more than one chunk of 512 images: decoded on threads
    write(tmp_path / "many", {f"{i:04d}.png": png(x[i]) for i in range(len(x))})
    d = image_folder(tmp_path / "many", 4, test_fraction=0, workers=3, cache=False)
    np.testing.assert_array_equal(d.train, x)
    (tmp_path / "many" / "0950.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="0950.png: not a PNG or JPEG image"):
        image_folder(tmp_path / "many", 4, workers=3, cache=False)
