"""Tar indices, PNG/JPEG decoding and downsampled ImageNet (van den Oord et al., 2016) read from
files in the published format: uncompressed tars ``train_32x32.tar`` / ``valid_32x32.tar`` (likewise
64) of PNG files under a folder of the tar's name, written here by Pillow and ``tarfile``.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from flowzoo.data import (
    DataError,
    dataset,
    decode_image,
    imagenet_png,
    read_tar_member,
    tar_image_index,
)


def png(x: np.ndarray, mode: str | None = None) -> bytes:
    """The PNG file of ``x`` (``(H, W)`` grey, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA)."""
    buf = io.BytesIO()
    Image.fromarray(x, mode).save(buf, format="PNG")
    return buf.getvalue()


def write_tar(path, members: dict[str, bytes], extra=()) -> os.PathLike:
    """An uncompressed tar of ``members`` in the given order, plus ``extra`` TarInfos."""
    with tarfile.open(path, "w") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        for info in extra:
            tar.addfile(info)
    return path


def pixels(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_tar_index_reads_every_image_by_offset(tmp_path):
    x = pixels(4, 8, seed=0)
    order = [2, 0, 3, 1]  # tar order differs from name order
    members = {f"./train_32x32/{i:07d}.png": png(x[i]) for i in order}
    members["train_32x32/._0000001.png"] = b"AppleDouble"  # hidden: skipped
    folder = tarfile.TarInfo("train_32x32")
    folder.type = tarfile.DIRTYPE
    link = tarfile.TarInfo("train_32x32/zzz.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tar = write_tar(tmp_path / "t.tar", members, [folder, link])
    for cache in (True, False, True):
        index = tar_image_index(tar, cache=cache)
        assert index.names.tolist() == [f"train_32x32/{i:07d}.png" for i in range(4)]
        assert index.offsets.dtype == index.sizes.dtype == np.int64
        fd = os.open(tar, os.O_RDONLY)
        try:
            for i in range(4):
                raw = read_tar_member(fd, index, i)
                assert raw == members[f"./train_32x32/{i:07d}.png"]
                np.testing.assert_array_equal(decode_image(raw), x[i])
        finally:
            os.close(fd)


def test_decode_image_modes():
    rgb = pixels(1, 6, seed=1)[0]
    grey = rgb[..., 0]
    rgba = np.concatenate([rgb, grey[..., None]], axis=-1)
    np.testing.assert_array_equal(decode_image(png(grey)), grey[..., None])
    np.testing.assert_array_equal(decode_image(png(rgba)), rgba)
    palette = Image.fromarray(rgb).quantize(colors=16)
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    np.testing.assert_array_equal(decode_image(buf.getvalue()), np.asarray(palette.convert("RGB")))
    bits = Image.fromarray(grey > 127)  # mode "1"
    buf = io.BytesIO()
    bits.save(buf, format="PNG")
    np.testing.assert_array_equal(decode_image(buf.getvalue())[..., 0], (grey > 127) * 255)
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), (200, 40, 90), np.uint8)).save(buf, "JPEG", quality=95)
    out = decode_image(buf.getvalue())
    assert out.shape == (16, 16, 3) and np.abs(out.astype(int) - (200, 40, 90)).max() <= 3


def test_decode_image_errors():
    good = png(pixels(1, 8, seed=2)[0])
    cases = [
        (b"GIF89a" + good[6:], "x.png: not a PNG or JPEG image"),
        (good[: len(good) // 2], "x.png: corrupt PNG file"),
        (good[:40] + bytes(16) + good[56:], "x.png: corrupt PNG file"),
        (png(np.zeros((4, 4), np.uint16)), "x.png: pixel mode I;16"),
    ]
    for raw, message in cases:
        with pytest.raises(DataError, match=message) as err:
            decode_image(raw, "x.png")
        assert "\n" not in str(err.value)


def test_tar_index_errors(tmp_path):
    members = {f"train_32x32/{i}.png": png(pixels(1, 4, seed=i)[0]) for i in range(3)}
    tar = write_tar(tmp_path / "t.tar", members)
    raw = tar.read_bytes()
    (tmp_path / "cut.tar").write_bytes(raw[:1540])
    (tmp_path / "cut_end.tar").write_bytes(
        raw[: 3 * 512 + sum(-(-len(v) // 512) * 512 for v in members.values())]
    )
    (tmp_path / "t.tar.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 2048)
    cases = [
        (tmp_path / "nope.tar", "nope.tar: no such file"),
        (tmp_path / "cut.tar", r"cut.tar: truncated tarball \(train_32x32/1.png runs past"),
        (tmp_path / "cut_end.tar", "cut_end.tar: truncated or corrupt tarball"),
        (tmp_path / "t.tar.gz", "t.tar.gz: a gzip-compressed tar"),
        (tmp_path / "junk.tar", "junk.tar: truncated or corrupt tarball"),
        (write_tar(tmp_path / "empty.tar", {}), "empty.tar: the tar holds no"),
        (
            write_tar(tmp_path / "txt.tar", {**members, "train_32x32/README": b"hello"}),
            "txt.tar: train_32x32/README: not an image file",
        ),
    ]
    for path, message in cases:
        with pytest.raises(DataError, match=message) as err:
            tar_image_index(path)
        assert "\n" not in str(err.value)


def write_imagenet(root, size: int, n_train: int = 5, n_valid: int = 3, seed: int = 0):
    """``train_{s}x{s}.tar`` and ``valid_{s}x{s}.tar`` as published: uncompressed tars of PNG
    files under ``train_{s}x{s}/``; members written in shuffled order. Returns the images in
    sorted-name order."""
    out = []
    for k, (split, n) in enumerate([("train", n_train), ("valid", n_valid)]):
        stem = f"{split}_{size}x{size}"
        x = pixels(n, size, seed + k)
        order = np.random.default_rng(seed).permutation(n)
        members = {f"{stem}/{i:07d}.png": png(x[i]) for i in order}
        write_tar(root / f"{stem}.tar", members)
        out.append(x)
    return out


@pytest.mark.parametrize("size", [32, 64])
def test_imagenet_png_pixel_exact(tmp_path, size):
    train, valid = write_imagenet(tmp_path, size)
    for options in [{"cache": False}, {}, {"mmap": True}, {"workers": 2, "cache": False}]:
        d = imagenet_png(tmp_path, size=size, **options)
        assert d.levels == 256 and d.train_labels is None and d.test_labels is None
        assert d.train.dtype == np.uint8 and d.train.shape == (5, size, size, 3)
        np.testing.assert_array_equal(d.train, train)
        np.testing.assert_array_equal(d.test, valid)
        assert isinstance(d.train, np.memmap) == bool(options.get("mmap"))
    np.testing.assert_array_equal(dataset(f"imagenet{size}", tmp_path).test, valid)


def test_imagenet_png_extracted_folders_and_grey(tmp_path):
    (tmp_path / "tars").mkdir()
    train, valid = write_imagenet(tmp_path / "tars", 32)
    for stem in ("train_32x32", "valid_32x32"):
        with tarfile.open(tmp_path / "tars" / f"{stem}.tar") as tar:
            tar.extractall(tmp_path / "folders", filter="data")
    d = imagenet_png(tmp_path / "folders", cache=False)
    np.testing.assert_array_equal(d.train, train)
    np.testing.assert_array_equal(d.test, valid)
    grey = valid[0, ..., 0]
    (tmp_path / "folders" / "valid_32x32" / "0000000.png").write_bytes(png(grey))
    np.testing.assert_array_equal(
        imagenet_png(tmp_path / "folders").test[0], grey[..., None] * np.ones(3, np.uint8)
    )


def test_imagenet_png_errors(tmp_path):
    write_imagenet(tmp_path, 32)
    train = tmp_path / "train_32x32.tar"
    good = train.read_bytes()
    members = {f"train_32x32/{i}.png": png(pixels(1, 32, seed=i)[0]) for i in range(3)}
    bad_png = png(pixels(1, 32, seed=9)[0])
    cases = [
        (
            {**members, "train_32x32/9.png": png(pixels(1, 64, seed=9)[0])},
            r"9.png: a 64x64 image among 32x32 ones \(mixed image sizes\)",
        ),
        ({**members, "train_32x32/9.png": bad_png[:-30]}, "9.png: corrupt PNG file"),
        ({**members, "train_32x32/9.png": b"not a png"}, "9.png: not a PNG or JPEG image"),
        ({**members, "train_32x32/notes.txt": b"hello"}, "notes.txt: not an image file"),
        (
            {**members, "other/9.png": bad_png},
            "other/9.png: expected every image under train_32x32/",
        ),
        ({}, "the tar holds no"),
    ]
    for k, (files, message) in enumerate(cases):
        write_tar(train, files)
        os.utime(train, ns=(k, k))  # a distinct mtime per case: never a cache hit
        with pytest.raises(DataError, match=message) as err:
            imagenet_png(tmp_path)
        assert str(train) in str(err.value) and "\n" not in str(err.value)
    train.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="train_32x32.tar: truncated"):
        imagenet_png(tmp_path)
    train.unlink()
    with pytest.raises(
        DataError, match="train_32x32.tar: file not found, nor the extracted folder"
    ):
        imagenet_png(tmp_path)
    with pytest.raises(DataError, match="nope: no such folder"):
        imagenet_png(tmp_path / "nope")
    with pytest.raises(DataError, match="size must be 32 or 64"):
        imagenet_png(tmp_path, size=16)
