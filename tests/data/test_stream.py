"""flowzoo.data.streamed_batches: the rows of array_batches read on host threads.

References: ``keyed_permutation`` (JAX) for its NumPy twin, bit for bit; ``array_batches``
on the same array for the streamed rows, exactly (and the array for a tar of its images as
lossless PNG files); a source that records every index it is
asked for, for "each process reads only its rows" and the read-ahead bound. ``fit`` with a
stream equals ``fit`` with ``array_batches`` bit for bit (one device in this process; 8
simulated devices and a resume in one subprocess, run as ``python
tests/data/test_stream.py devices``): the same program on the same float32 values.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowzoo import data as fzdata
from flowzoo import train

ROOT = Path(__file__).resolve().parents[2]
B = 8


def _images(n=50, shape=(4, 5, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _array_batches(x, key, steps: int) -> np.ndarray:
    """``array_batches(x, B)(key, s)`` for ``s < steps``, stacked (the reference rows)."""
    batch_fn = jax.vmap(fzdata.array_batches(x, B), in_axes=(None, 0))
    return np.asarray(jax.jit(batch_fn)(key, jnp.arange(steps)))


class _Recording:
    """A RowSource over an array that records the indices of every call (thread-safe)."""

    def __init__(self, x):
        self.x, self.shape, self.dtype = x, x.shape, x.dtype
        self.calls, self._lock = [], threading.Lock()

    def rows(self, indices):
        with self._lock:
            self.calls.append(np.array(indices))
        return self.x[indices]


def test_numpy_twin_equals_keyed_permutation():
    """keyed_permutation_np == keyed_permutation bit for bit (dtype uint32 too), for n from
    1 to 4e9 (cycle-walks included: n = 50 walks out of [50, 64); n over 2^31 does not fit
    int32); over arange(n) it is a permutation."""
    for seed, n in enumerate([1, 50, 65_537, 2_000_000_011, 4_000_000_007]):
        key = jax.random.key(seed)
        idx = np.arange(n) if n <= 50 else np.random.default_rng(seed).integers(0, n, 4000)
        got = fzdata.keyed_permutation_np(key, idx, n)
        want = np.asarray(fzdata.keyed_permutation(key, jnp.asarray(idx, jnp.uint32), n))
        assert got.dtype == want.dtype == np.uint32
        np.testing.assert_array_equal(got, want)
        if n <= 50:
            np.testing.assert_array_equal(np.sort(got), np.arange(n))
    with pytest.raises(ValueError, match="n < 2"):
        fzdata.keyed_permutation_np(jax.random.key(0), [0], 0)


def test_rows_equal_array_batches(tmp_path):
    """From a memmap: every step's rows (three epochs of 6 steps, 2 rows dropped per epoch)
    equal array_batches' on the same array, read in sequential chunks, out of sequence and
    in row ranges [lo, hi); stream(key, step) equals it too, under jit and vmap, with the
    device dtype float32 equal to array_batches of the float32 array."""
    x = _images()
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    key = jax.random.key(3)
    ref = _array_batches(x, key, 18)
    with fzdata.streamed_batches(mm, B, workers=2, prefetch=1) as stream:
        assert (stream.batch_size, stream.element_shape) == (B, (4, 5, 3))
        assert stream.dtype == stream.host_dtype == np.uint8
        got = np.concatenate([stream.read(key, first, 3) for first in range(0, 18, 3)])
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(stream.read(key, 11, 2, 3, 7), ref[11:13, 3:7])
        np.testing.assert_array_equal(stream.read(key, 13, 4, 3, 7), ref[13:17, 3:7])
        np.testing.assert_array_equal(stream.read(key, 0, 1, 5), ref[:1, 5:])
        np.testing.assert_array_equal(np.asarray(jax.jit(stream)(key, 13)), ref[13])
        steps = jnp.arange(4, 7)
        vmapped = jax.jit(jax.vmap(stream, in_axes=(None, 0)))(key, steps)
        np.testing.assert_array_equal(np.asarray(vmapped), ref[4:7])
    as_float = fzdata.streamed_batches(x, B, dtype=np.float32)
    want = fzdata.array_batches(x.astype(np.float32), B)(key, 9)
    got = as_float(key, 9)
    assert got.dtype == want.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    as_float.close()


def test_reads_only_own_rows_and_a_bounded_read_ahead():
    """read(lo=2, hi=5) asks the source for exactly rows 2..4 of each step's batch; in
    sequence every step is read once (read ahead by the workers), at most
    (1 + prefetch) * num steps are read before the next request, and a request out of
    sequence drops the read-ahead and reads its own steps."""
    x = _images()
    key = jax.random.key(1)
    ref = _array_batches(np.arange(50), key, 30)
    rows = [tuple(np.sort(ref[s, 2:5])) for s in range(30)]
    source = _Recording(x)
    stream = fzdata.streamed_batches(source, B, workers=2, prefetch=2)
    stream.read(key, 0, 3, 2, 5)
    stream.close()  # cancels queued steps; finished and running ones stay recorded
    seen = [tuple(np.sort(c)) for c in list(source.calls)]
    assert 3 <= len(seen) <= 9 and set(rows[:3]) <= set(seen) <= set(rows[:9])

    source = _Recording(x)  # a fresh record: the closed stream's last tasks may still run
    with fzdata.streamed_batches(source, B, workers=2, prefetch=2) as stream:
        for first in range(0, 12, 3):
            stream.read(key, first, 3, 2, 5)
        stream.read(key, 20, 2, 2, 5)  # out of sequence
    seen = [tuple(np.sort(c)) for c in list(source.calls)]
    for s in [*range(12), 20, 21]:
        assert seen.count(rows[s]) == 1, s
    assert len(seen) <= 12 + 3 * 2 + 2 * 3  # read, read ahead, and the last read's ahead


def test_flips_are_a_pure_function_of_key_step_and_row():
    """flip=True: each row is its array_batches row mirrored along the width axis exactly
    where flip_mask(key, step, row) says (random images: no row equals its mirror), the same
    whatever rows a process reads or how steps are grouped, through read and stream(key,
    step); 600 rows flip at a rate within 0.5 +- 0.1 (binomial sd 0.02); another key flips
    other rows."""
    x = _images(n=80, shape=(3, 6, 2))
    key = jax.random.key(5)
    steps = 75  # 7.5 epochs of 10 steps
    plain = _array_batches(x, key, steps)
    mask = fzdata.flip_mask(key, np.arange(steps)[:, None], np.arange(B))
    np.testing.assert_array_equal(mask[61], fzdata.flip_mask(key, 61, np.arange(B)))
    want = np.where(mask[..., None, None, None], plain[:, :, :, ::-1], plain)
    with fzdata.streamed_batches(x, B, flip=True, workers=2) as stream:
        got = stream.read(key, 0, steps)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(stream.read(key, 40, 5, 3, 6), want[40:45, 3:6])
        np.testing.assert_array_equal(np.asarray(stream(key, 61)), want[61])
    assert 0.4 <= mask.mean() <= 0.6
    other = fzdata.flip_mask(jax.random.key(6), np.arange(steps)[:, None], np.arange(B))
    assert (other != mask).mean() > 0.3


def _png_tar(path, images) -> None:
    """A tar of PNG files in name order, as downsampled ImageNet ships them."""
    from PIL import Image

    with tarfile.open(path, "w") as tar:
        for i, img in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            info = tarfile.TarInfo(f"train_4x5/{i:05d}.png")
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


def test_png_tar_streams_the_rows_of_its_array(tmp_path):
    """tar_images: a tar of 20 PNGs streams (flipped) exactly what the array of the same
    images does (PNG is lossless); an image of another size gets one line naming it."""
    x = _images(n=20)
    _png_tar(tmp_path / "a.tar", x)
    source = fzdata.tar_images(tmp_path / "a.tar", cache=False)
    assert source.shape == x.shape and source.dtype == np.uint8
    key = jax.random.key(2)
    with (
        fzdata.streamed_batches(source, 4, flip=True, workers=2) as from_tar,
        fzdata.streamed_batches(x, 4, flip=True) as from_array,
    ):
        np.testing.assert_array_equal(from_tar.read(key, 0, 7), from_array.read(key, 0, 7))
    source.close()
    _png_tar(tmp_path / "b.tar", [*x[:3], np.zeros((5, 5, 3), np.uint8), *x[4:]])
    bad = fzdata.streamed_batches(fzdata.tar_images(tmp_path / "b.tar", cache=False), 20)
    with bad, pytest.raises(fzdata.DataError, match=r"00003\.png is \(5, 5, 3\)"):
        bad.read(key, 0, 1)


def test_bad_arguments():
    x = _images()
    with pytest.raises(fzdata.DataError, match="batch_size must be in"):
        fzdata.streamed_batches(x, 51)
    with pytest.raises(fzdata.DataError, match="flip needs"):
        fzdata.streamed_batches(x.reshape(50, -1), 4, flip=True)
    with pytest.raises(fzdata.DataError, match="NumPy array/memmap"):
        fzdata.streamed_batches([[1, 2]], 1)
    with pytest.raises(fzdata.DataError, match="workers >= 1"):
        fzdata.streamed_batches(x, 4, workers=0)
    stream = fzdata.streamed_batches(x, 4)
    with pytest.raises(ValueError, match="lo < hi"):
        stream.read(jax.random.key(0), 0, 1, 3, 3)
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.read(jax.random.key(0), 0, 1)


# --------------------------------------------------------------------------- fit


def _problem():
    """A linear least-squares loss on uint8 images scaled by 1/255 (compiles in a blink)."""
    x = _images(n=96, shape=(4, 4, 3), seed=2)

    def loss_fn(params, key, batch):
        flat = batch.reshape(batch.shape[0], -1) / 255.0
        noise = 0.01 * jax.random.normal(key, (batch.shape[0],))
        return jnp.mean((flat @ params["w"] + params["b"] - 1.0 + noise) ** 2), {}

    params = {"w": jnp.zeros(48), "b": jnp.zeros(())}
    return x, loss_fn, optax.adam(1e-2), params


def _fit(batch_fn, num_steps, steps_per_call=3, **kw):
    x, loss_fn, opt, params = _problem()
    return train.fit(
        loss_fn,
        opt,
        params,
        batch_fn,
        key=jax.random.key(4),
        num_steps=num_steps,
        steps_per_call=steps_per_call,
        progress=False,
        **kw,
    )


def _losses(result) -> list[float]:
    return [r["loss"] for r in result.history]


def _max_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def devices(workdir: str) -> dict:
    """Subprocess mode (8 devices): fit with array_batches vs with the stream, data-parallel;
    a flipped stream resumed from a step-3 checkpoint (new stream, other chunks) vs one run."""
    x = _problem()[0]
    auto = train.DataParallel("auto")
    arrays = _fit(fzdata.array_batches(x.astype(np.float32), 16), 6, parallel=auto)
    with fzdata.streamed_batches(x, 16, dtype=np.float32) as stream:
        streamed = _fit(stream, 6, parallel=auto)
    with fzdata.streamed_batches(x, 16, flip=True) as stream:
        whole = _fit(stream, 7, parallel=auto)
    with fzdata.streamed_batches(x, 16, flip=True) as stream:
        _fit(stream, 3, parallel=auto, checkpointing=train.Checkpointing(workdir))
    with fzdata.streamed_batches(x, 16, flip=True, workers=1) as stream:
        resumed = _fit(stream, 7, 2, parallel=auto, checkpointing=train.Checkpointing(workdir))
    return {
        "devices": jax.device_count(),
        "arrays": _losses(arrays),
        "streamed": _losses(streamed),
        "state_diff": _max_diff(arrays.state, streamed.state),
        "resume_diff": _max_diff(whole.state, resumed.state),
        "resumed_steps": [r["step"] for r in resumed.history],
    }


def test_fit_with_a_stream_equals_array_batches_on_one_device():
    """No mesh: fit trains a stream through the sharded path on a one-device mesh; uint8
    rows cast to float32 on the device give array_batches' float32 run bit for bit."""
    x = _problem()[0]
    arrays = _fit(fzdata.array_batches(x.astype(np.float32), 16), 4, 2)
    with fzdata.streamed_batches(x, 16, dtype=np.float32) as stream:
        streamed = _fit(stream, 4, 2)
        with pytest.raises(ValueError, match="local_batches=False"):
            _fit(stream, 2, parallel=train.DataParallel("auto", local_batches=True))
    assert _losses(streamed) == _losses(arrays)
    assert _max_diff(streamed.state, arrays.state) == 0.0


@pytest.mark.slow
def test_fit_with_a_stream_on_eight_devices_and_resume(tmp_path):
    """8 simulated devices: the stream's losses and state equal array_batches' bit for bit;
    a flipped stream resumed from a step-3 checkpoint (a new stream, chunks of 2) ends with
    the uninterrupted run's state bit for bit."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")  # the suite's compile flags (conftest) stay
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, __file__, "devices", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    assert len(out["arrays"]) == 2 and out["streamed"] == out["arrays"]
    assert out["state_diff"] == 0.0
    assert out["resumed_steps"] == [4, 6, 7]
    assert out["resume_diff"] == 0.0


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        print(json.dumps(devices(sys.argv[2])))
