"""``flowzoo train`` on data sets read from local files in their published formats
(``--set data.name=cifar10|imagenet32 --set data.path=...``): both train with streamed
batches, and every bad file gets one error line naming it. CIFAR-10 with flips is trained by
the recipes' tests (``tests/zoo/test_cifar_recipes.py``); a streamed run resumes to the
uninterrupted run's params (``tests/data/test_stream.py``), and a run killed with SIGKILL
resumes from its newest whole checkpoint (``tests/train/test_faults.py``).

The files are written here as published: CIFAR-10's python-version tarball (protocol-2
pickles with bytes keys, uint8 rows of R, G, B planes) and downsampled ImageNet 32x32's
uncompressed tars of PNG files under ``train_32x32/`` and ``valid_32x32/``. One tiny Glow
(1 level, 1 step, 8 channels) is the model; every run has the same shapes, so XLA compiles
it once per session (the test session's compilation cache).
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from flowzoo import cli, zoo

TINY = [
    "glow_digits",
    *("--set", "train.steps=12", "--set", "train.steps_per_call=6"),
    *("--set", "train.eval_every=0", "--set", "train.checkpoint_every=0"),
    *("--set", "train.batch_size=8", "--set", "model.levels=1", "--set", "model.depth=1"),
    *("--set", "model.hidden=8", "--set", "plot.n_samples=4", "--set", "data.n_test=8"),
    "--no-progress",
]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _png(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path, members: dict[str, bytes], mode: str = "w"):
    with tarfile.open(path, mode) as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def _images(n: int, seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _cifar_batch(x: np.ndarray, **extra) -> bytes:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # R plane, G plane, B plane
    obj = {b"batch_label": b"batch", b"labels": [i % 10 for i in range(len(x))], b"data": rows}
    return pickle.dumps({**obj, **extra}, protocol=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    batches = {f"data_batch_{i}": _cifar_batch(_images(8, i)) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(_images(8, 9))
    cifar = _tar(
        root / "cifar-10-python.tar.gz",
        {f"cifar-10-batches-py/{k}": v for k, v in batches.items()},
        "w:gz",
    )
    imagenet = root / "imagenet32"
    imagenet.mkdir()
    for split, n in [("train", 48), ("valid", 8)]:
        stem = f"{split}_32x32"
        x = _images(n, len(split))
        _tar(imagenet / f"{stem}.tar", {f"{stem}/{i:07d}.png": _png(x[i]) for i in range(n)})
    return {"cifar10": cifar, "imagenet32": imagenet, "root": root}


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


def _data(name, path, *extra) -> list[str]:
    return ["--set", f"data.name={name}", "--set", f"data.path={path}", *extra]


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory):
    """An uninterrupted streamed ImageNet-32 run (no flips)."""
    workdir = tmp_path_factory.mktemp("runs")
    rc, _, err = run_cli(
        "train", *TINY, *_data("imagenet32", files["imagenet32"]), "--workdir", workdir
    )
    assert rc == 0, err
    return workdir / "glow_digits"


@pytest.mark.slow
def test_a_streamed_imagenet32_run(reference):
    """The reference run: 32x32x3 events, test bits/dim of 256-level images, no quality
    figures (their classifiers exist for digits and mnist only). That streamed batches hold
    the in-memory rows is tested where fit meets the stream (tests/data/test_stream.py)."""
    info = json.loads((reference / "run.json").read_text())
    assert info["event_shape"] == [32, 32, 3]
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["steps"] == 12 and 0 < summary["test_bpd"] < 16
    assert "fd" not in summary
    assert len(_losses(reference)) == 2 and all(np.isfinite(_losses(reference)))


def test_stream_keeps_the_images_on_the_host_and_off_the_device_otherwise(files):
    """data.stream (default): the training split stays uint8 and memory-mapped, cast per
    batch; data.stream=false: the float32 values an in-memory image run trains on."""
    config = zoo.apply_overrides(zoo.load_experiment("glow_digits"), TINY[2:-1:2] + [
        "data.name=cifar10", f"data.path={files['cifar10']}"])  # fmt: skip
    streamed = zoo.prepare_data(config)
    held = zoo.prepare_data(zoo.apply_overrides(config, ["data.stream=false"]))
    assert isinstance(streamed.train_std, np.memmap) and streamed.train_std.dtype == np.uint8
    assert held.train_std.dtype == np.float32 and not isinstance(held.train_std, np.memmap)
    np.testing.assert_array_equal(held.train_std, streamed.train_std.astype(np.float32))
    assert streamed.train_std.shape == (40, 32, 32, 3) and streamed.levels == 256


def _bad_files(root) -> list[tuple[str, object, str]]:
    """``(data.name, path, words the error names)`` for each damaged file."""
    out = [("cifar10", root / "missing.tar.gz", "missing.tar.gz")]
    good = (root / "cifar-10-python.tar.gz").read_bytes()
    (root / "truncated.tar.gz").write_bytes(good[: len(good) // 2])
    out.append(("cifar10", root / "truncated.tar.gz", "truncated.tar.gz"))
    layout = {
        f"cifar-10-batches-py/data_batch_{i}": pickle.dumps({b"x": 1}, protocol=2)
        for i in range(1, 6)
    }
    layout["cifar-10-batches-py/test_batch"] = layout["cifar-10-batches-py/data_batch_1"]
    out.append(("cifar10", _tar(root / "layout.tar.gz", layout, "w:gz"), "data_batch_1"))
    evil = {
        f"cifar-10-batches-py/data_batch_{i}": pickle.dumps({b"data": print}, protocol=2)
        for i in range(1, 6)
    }
    evil["cifar-10-batches-py/test_batch"] = evil["cifar-10-batches-py/data_batch_1"]
    out.append(("cifar10", _tar(root / "evil.tar.gz", evil, "w:gz"), "print"))
    mixed = root / "mixed"
    mixed.mkdir()
    _tar(
        mixed / "train_32x32.tar",
        {
            "train_32x32/a.png": _png(_images(1, 0)[0]),
            "train_32x32/b.png": _png(_images(1, 1, 16)[0]),
        },
    )
    _tar(mixed / "valid_32x32.tar", {"valid_32x32/a.png": _png(_images(1, 2)[0])})
    out.append(("imagenet32", mixed, "b.png"))
    (root / "empty").mkdir()
    out.append(("image_folder", root / "empty", "empty"))
    return out


def test_every_bad_file_gets_one_line_naming_it(files, tmp_path):
    for name, path, needle in _bad_files(files["root"]):
        extra = ["--set", "data.image_size=32"] if name == "image_folder" else []
        rc, _, err = run_cli("train", *TINY, *_data(name, path, *extra), "--workdir", tmp_path)
        lines = err.strip().splitlines()
        assert rc == 2 and lines[-1].startswith("flowzoo: error: "), (name, path, err)
        assert "Traceback" not in err and needle in lines[-1], (name, needle, lines[-1])
