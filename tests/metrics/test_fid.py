"""FID without torch: statistics, the distance, the weights file, the cached reference
statistics and the CLI's refusals. The network's numerics against pytorch-fid are
``test_fid_port.py``'s (needs torch); here it runs on random weights (one compilation,
five calls of batch 2 at 299x299) to check the batching, the streamed statistics, grey
images and the cache."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from flowzoo import cli, data, metrics, nets

SHAPES = nets.fid_inception_shapes()


def _random_params(seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal kernels and random batch norms, in NumPy (no compilation)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in SHAPES.items():
        if name.endswith("conv.weight"):
            out[name] = rng.standard_normal(shape, np.float32) * np.sqrt(2 / np.prod(shape[1:]))
        elif name.endswith("running_var") or name.endswith("bn.weight"):
            out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            out[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return out


def _cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, err.getvalue()


def _one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowzoo: error: "), err
    for needle in needles:
        assert needle in lines[0], err


@pytest.fixture(autouse=True)
def _no_env_weights(monkeypatch, tmp_path):
    monkeypatch.delenv(metrics.FID_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(weights file, params, 3 uint8 images 32x32 (the last two grey), their features)."""
    params = _random_params()
    path = tmp_path_factory.mktemp("fid") / "inception.safetensors"
    save_file(params, path)
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    images[1:] = images[1:, :, :, :1]
    loaded = metrics.load_fid_weights(path)
    return path, loaded, images, metrics.fid_features(loaded, images, batch_size=2)


# ------------------------------------------------------------------ statistics and distance


def test_fid_of_a_set_against_its_own_statistics_is_zero():
    feats = np.random.default_rng(0).standard_normal((60, 8)) @ np.diag(np.arange(1.0, 9.0))
    mu, sigma = metrics.fid_statistics(feats)
    np.testing.assert_allclose(mu, feats.mean(0))
    np.testing.assert_allclose(sigma, np.cov(feats.T))
    assert metrics.fid(feats, (mu, sigma)) == pytest.approx(0.0, abs=1e-9)
    assert metrics.fid((mu, sigma), feats + 1.0) == pytest.approx(8.0, rel=1e-9)  # |shift|^2


def test_fid_of_two_gaussians_is_the_closed_form():
    """Commuting (diagonal) covariances: ``|m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2``."""
    rng = np.random.default_rng(1)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    a, b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    exact = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.fid((m1, np.diag(a)), [m2, np.diag(b)]) == pytest.approx(exact, rel=1e-10)
    x, y = rng.standard_normal((40, 5)), 2 * rng.standard_normal((50, 5))
    assert metrics.fid(x, y) == pytest.approx(metrics.frechet_distance(x, y), rel=1e-12)


def test_fid_refuses_bad_inputs():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        metrics.fid(np.zeros((3, 4)), (np.zeros(5), np.eye(5)))
    with pytest.raises(ValueError, match="sigma"):
        metrics.fid((np.zeros(4), np.eye(3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="images"):
        metrics.fid_features({}, np.zeros((2, 32, 32, 2)))


# ------------------------------------------------------------------ the network


def test_network_shapes_and_full_precision():
    net = nets.fid_inception()
    params = jax.eval_shape(net.init, jax.random.key(0))
    assert {k: v.shape for k, v in params.items()} == SHAPES
    assert len(SHAPES) == 470 and sum(int(np.prod(s)) for s in SHAPES.values()) == 21_820_000
    images = jax.ShapeDtypeStruct((2, 40, 50, 3), jnp.uint8)
    assert jax.eval_shape(net.apply, params, images).shape == (2, nets.FID_FEATURES)
    with jax.default_matmul_precision("default"):
        jaxpr = jax.make_jaxpr(net.apply)(params, images).jaxpr
    ops = [e for e in jaxpr.eqns if e.primitive.name in ("conv_general_dilated", "dot_general")]
    assert len(ops) == 94 + 2  # every BasicConv2d, and the two resize matrices
    highest = (jax.lax.Precision.HIGHEST,) * 2
    assert all(e.params["precision"] == highest for e in ops)


@pytest.mark.slow
def test_features_of_grey_images_are_those_of_their_rgb(weights):
    _, params, images, feats = weights
    assert feats.shape == (3, 2048) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert feats.std(axis=0).mean() > 1e-3  # the images are told apart
    grey = metrics.fid_features(params, images[1:, :, :, :1], batch_size=2)
    np.testing.assert_allclose(grey, feats[1:], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ the weights file


def test_weights_round_trip_safetensors_and_npz(weights, tmp_path):
    path, params, _, _ = weights
    npz = tmp_path / "w.npz"
    np.savez(npz, **{k: np.asarray(v) for k, v in params.items()})
    for file in (path, npz):
        loaded = metrics.load_fid_weights(file)
        assert loaded.keys() == params.keys()
        assert all(np.array_equal(loaded[k], params[k]) for k in params)


def test_weights_errors_are_one_line(weights, tmp_path):
    params = {k: np.asarray(v) for k, v in weights[1].items()}
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(256))
    renamed = dict(params)
    renamed["Mixed_5b.branch1x1.conv.kernel"] = renamed.pop("Mixed_5b.branch1x1.conv.weight")
    reshaped = {**params, "Conv2d_1a_3x3.bn.bias": np.zeros(31, np.float32)}
    cases = [
        (tmp_path / "absent.safetensors", "does not exist"),
        (corrupt, "is not a safetensors or .npz"),
        (renamed, "1 tensor(s) missing (first: Mixed_5b.branch1x1.conv.weight); 1 unexpected"),
        (reshaped, "Conv2d_1a_3x3.bn.bias: (31,), not (32,)"),
    ]
    for i, (case, needle) in enumerate(cases):
        if isinstance(case, dict):
            save_file(case, tmp_path / f"{i}.safetensors")
            case = tmp_path / f"{i}.safetensors"
        with pytest.raises(metrics.FIDWeightsError) as info:
            metrics.load_fid_weights(case)
        assert needle in str(info.value) and "\n" not in str(info.value)


def test_weights_path_resolution(monkeypatch, tmp_path):
    assert metrics.fid_weights_path() is None
    file = tmp_path / "w.safetensors"
    file.write_bytes(b"x")
    monkeypatch.setenv(metrics.FID_WEIGHTS_ENV, str(file))
    assert metrics.fid_weights_path() == file
    assert metrics.fid_weights_path(str(file)) == file
    with pytest.raises(metrics.FIDWeightsError, match="flowzoo fid-weights convert"):
        metrics.fid_weights_path(tmp_path / "nope.safetensors")
    monkeypatch.setenv(metrics.FID_WEIGHTS_ENV, str(tmp_path / "gone"))
    with pytest.raises(metrics.FIDWeightsError, match=f"from {metrics.FID_WEIGHTS_ENV}"):
        metrics.fid_weights_path()


# ------------------------------------------------------------------ reference statistics


def test_statistics_file_key_follows_the_sources(tmp_path, weights):
    arr = tmp_path / "images.npy"
    np.save(arr, np.zeros((4, 8, 8, 3), np.uint8))
    key = data.fid_statistics_file("image_array", arr, weights[0])
    assert key.parent == tmp_path / "cache" / "fid" and key.name.startswith("image_array-train-")
    assert data.fid_statistics_file("image_array", arr, weights[0]) == key
    assert data.fid_statistics_file("image_array", arr, weights[0], split="test") != key
    assert data.fid_statistics_file("image_array", arr, weights[0], num_images=2) != key
    st = arr.stat()
    os.utime(arr, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = data.fid_statistics_file("image_array", arr, weights[0])
    assert touched != key
    with open(arr, "ab") as fh:  # same mtime, other size
        fh.write(b"\0")
    os.utime(arr, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data.fid_statistics_file("image_array", arr, weights[0]) not in (key, touched)


@pytest.mark.slow
def test_dataset_statistics_are_computed_then_read_from_the_cache(tmp_path, weights):
    """Streamed in two batches of 2 (the last one padded): the moments of the features."""
    path, _, images, feats = weights
    arr = tmp_path / "images.npy"
    np.save(arr, images)
    kwargs = {"batch_size": 2, "test_fraction": 0.0}
    mu, sigma = data.dataset_fid_statistics("image_array", arr, path, **kwargs)
    ref_mu, ref_sigma = metrics.fid_statistics(feats)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-7, atol=1e-12)
    file = data.fid_statistics_file("image_array", arr, path, test_fraction=0.0)
    assert file.is_file()
    np.savez(file, mu=np.ones(3), sigma=np.eye(3), n=np.int64(3))  # what the cache holds is read
    mu, sigma = data.dataset_fid_statistics("image_array", arr, path, **kwargs)
    np.testing.assert_array_equal(mu, np.ones(3))


# ------------------------------------------------------------------ command line


def test_cli_fid_stats_without_weights_names_the_converter(tmp_path):
    arr = tmp_path / "images.npy"
    np.save(arr, np.zeros((4, 8, 8, 3), np.uint8))
    rc, err = _cli("fid-stats", "image_array", "--path", arr)
    assert rc == 2
    _one_line_error(err, "no FID weights", "FLOWZOO_FID_WEIGHTS", "flowzoo fid-weights convert")
    rc, err = _cli("fid-stats", "image_array", "--path", arr, "--fid-weights", tmp_path / "x")
    assert rc == 2
    _one_line_error(err, "does not exist")


def test_cli_fid_weights_convert_refusals(tmp_path):
    rc, err = _cli("fid-weights", "convert", tmp_path / "missing.pth")
    assert rc == 2
    _one_line_error(err, "does not exist", metrics.FID_WEIGHTS_URL)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    rc, err = _cli("fid-weights", "convert", junk)
    assert rc == 2
    has_torch = importlib.util.find_spec("torch") is not None
    _one_line_error(err, "not a torch weights file" if has_torch else "needs the torch package")
