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

from flowzoo.data import DataError, decode_image, read_tar_member, tar_image_index


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
