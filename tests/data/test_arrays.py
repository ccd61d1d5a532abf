"""Tests for array loading/validation, the standardiser and the pure batch functions."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import data
from flowzoo.data import DataError

# --------------------------------------------------------------------------- load_array


@pytest.fixture
def arr():
    return np.random.default_rng(0).normal(size=(50, 3))


def test_load_npy_round_trip(tmp_path, arr):
    path = tmp_path / "x.npy"
    np.save(path, arr)
    out = data.load_array(path)
    assert out.dtype == np.float32 and out.shape == (50, 3)
    np.testing.assert_array_equal(out, arr.astype(np.float32))
    # str paths, integer and boolean data are accepted and converted
    np.save(path, np.arange(12, dtype=np.int64).reshape(4, 3))
    np.testing.assert_array_equal(data.load_array(str(path)), np.arange(12.0).reshape(4, 3))
    np.save(path, np.eye(3, dtype=bool))
    np.testing.assert_array_equal(data.load_array(path), np.eye(3, dtype=np.float32))


def test_load_npz_round_trip_and_keys(tmp_path, arr):
    one = tmp_path / "one.npz"
    np.savez(one, train=arr)
    np.testing.assert_array_equal(data.load_array(one), arr.astype(np.float32))
    many = tmp_path / "many.npz"
    np.savez_compressed(many, train=arr, test=arr[:5] + 1.0)
    np.testing.assert_array_equal(data.load_array(many, key="test"), (arr[:5] + 1.0).astype("f4"))
    with pytest.raises(DataError, match=r"holds 2 arrays \((train, test|test, train)\); pass key="):
        data.load_array(many)
    with pytest.raises(DataError, match="no array named 'valid'.*available: "):
        data.load_array(many, key="valid")
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    with pytest.raises(DataError, match="holds no arrays"):
        data.load_array(empty)


def test_load_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file; check the path"):
        data.load_array(tmp_path / "nope.npy")
    with pytest.raises(DataError, match="is not a file"):
        data.load_array(tmp_path)


def test_load_unsupported_extension(tmp_path, arr):
    path = tmp_path / "x.csv"
    np.savetxt(path, arr)
    with pytest.raises(DataError, match=r"unsupported extension '\.csv'.*np\.save"):
        data.load_array(path)


@pytest.mark.parametrize(
    "name, content",
    [
        ("garbage.npy", b"this is not a numpy file at all"),
        ("garbage.npz", b"PK\x03\x04 not really a zip archive"),
        ("empty.npy", b""),
    ],
)
def test_load_corrupt_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="corrupt"):
        data.load_array(path)


def test_load_truncated_files(tmp_path, arr):
    for suffix, save in ((".npy", np.save), (".npz", np.savez_compressed)):
        path = tmp_path / f"x{suffix}"
        save(path, arr)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        with pytest.raises(DataError, match="corrupt") as err:
            data.load_array(path)
        assert "\n" not in str(err.value)  # one-line message


@pytest.mark.parametrize(
    "value, match",
    [
        (np.array([["a", "b"], ["c", "d"]]), "dtype <U1 is not real numeric"),
        (np.ones((3, 2), np.complex64), "dtype complex64 is not real numeric"),
        (np.array([{"a": 1}, None], dtype=object), "dtype object"),
        (np.float64(3.0), "0-d scalar"),
        (np.zeros((0, 2)), r"is empty \(shape \(0, 2\)\)"),
    ],
)
def test_load_bad_dtype_or_shape(tmp_path, value, match):
    path = tmp_path / "x.npy"
    np.save(path, value, allow_pickle=True)
    with pytest.raises(DataError, match=match):
        data.load_array(path)


def test_load_nonfinite_values(tmp_path, arr):
    bad = arr.copy()
    bad[7, 1] = np.nan
    bad[9, 0] = np.inf
    bad[9, 2] = np.nan
    path = tmp_path / "x.npz"
    np.savez(path, x=bad)
    with pytest.raises(DataError) as err:
        data.load_array(path)
    msg = str(err.value)
    assert "x.npz[x]" in msg
    assert "3 non-finite value(s) (2 NaN, 1 inf) in 2 of 50 rows" in msg
    assert "first bad row index 7" in msg


def test_load_float32_overflow(tmp_path, arr):
    big = arr.copy()
    big[4, 0] = 1e300
    path = tmp_path / "x.npy"
    np.save(path, big)
    with pytest.raises(DataError, match="after conversion to float32.*first bad row index 4"):
        data.load_array(path)


# --------------------------------------------------------------------------- check_batch


def test_check_batch():
    data.check_batch(np.zeros((4, 2)), 2)
    data.check_batch(jnp.zeros((4, 3, 5)), (3, 5), what="images")
    with pytest.raises(DataError, match=r"images: expected shape \(n, 3, 5\), got \(4, 15\)"):
        data.check_batch(np.zeros((4, 15)), (3, 5), what="images")
    with pytest.raises(DataError, match=r"expected shape \(n, 2\), got \(2,\)"):
        data.check_batch(np.zeros(2), 2)
    x = np.zeros((6, 2))
    x[3, 1] = np.nan
    with pytest.raises(DataError, match=r"1 non-finite value\(s\) \(1 NaN, 0 inf\).*row index 3"):
        data.check_batch(x, (2,))
    # under jit only the shape can be checked
    jax.jit(lambda x: data.check_batch(x, 2) or x)(jnp.zeros((3, 2)))
    with pytest.raises(DataError, match="expected shape"):
        jax.jit(lambda x: data.check_batch(x, 3) or x)(jnp.zeros((3, 2)))


# --------------------------------------------------------------------------- standardizer


def test_standardizer_round_trip_and_moments():
    rng = np.random.default_rng(1)
    x = rng.normal(loc=[3.0, -2.0, 0.0], scale=[5.0, 0.1, 1.0], size=(1000, 3))
    x[:, 2] = 7.0  # constant feature: std floored at 1e-6
    s = data.fit_standardizer(x)
    np.testing.assert_allclose(s.shift, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s.scale[:2], x.std(0)[:2], rtol=1e-5)
    assert float(s.scale[2]) == pytest.approx(1e-6)
    z = data.standardize(s, x)
    np.testing.assert_allclose(z[:, :2].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(z[:, 2], 0.0)  # needs a float64 mean (see docstring)
    np.testing.assert_allclose(data.unstandardize(s, z), x, rtol=1e-5, atol=1e-5)
    # a single example (event-shaped) works too, under strict rank promotion
    np.testing.assert_allclose(data.standardize(s, x[0]), z[0], rtol=1e-6)
    # traced inputs are reduced in float32
    s_jit = jax.jit(data.fit_standardizer)(jnp.asarray(x[:, :2], jnp.float32))
    np.testing.assert_allclose(s_jit.shift, s.shift[:2], rtol=1e-5)
    np.testing.assert_allclose(s_jit.scale, s.scale[:2], rtol=1e-5)
    with pytest.raises(DataError, match="at least one example"):
        data.fit_standardizer(np.zeros((0, 3)))


def test_standardizer_log_det_matches_jacobian():
    s = data.Standardizer(jnp.array([1.0, -2.0]), jnp.array([4.0, 0.5]))
    x0 = jnp.array([0.3, 0.7])
    jac = jax.jacfwd(lambda x: data.standardize(s, x))(x0)
    sign, logabsdet = jnp.linalg.slogdet(jac)
    assert float(sign) == 1.0
    assert float(data.standardizer_log_det(s)) == pytest.approx(float(logabsdet), abs=1e-6)
    assert float(data.standardizer_log_det(s)) == pytest.approx(-math.log(2.0), abs=1e-6)
    inv_jac = jax.jacfwd(lambda z: data.unstandardize(s, z))(x0)
    assert float(jnp.linalg.slogdet(inv_jac)[1]) == pytest.approx(-float(logabsdet), abs=1e-6)


def test_standardizer_converts_log_densities():
    # N(0, I) in standardised units is N(shift, diag(scale^2)) in raw units
    s = data.Standardizer(jnp.array([1.0, -2.0]), jnp.array([4.0, 0.5]))
    x = jnp.array([[0.0, 0.0], [1.0, -2.0], [5.0, 3.0]])
    std_normal = jax.scipy.stats.norm.logpdf(data.standardize(s, x)).sum(-1)
    raw = jax.scipy.stats.norm.logpdf(x, s.shift[None], s.scale[None]).sum(-1)
    np.testing.assert_allclose(std_normal + data.standardizer_log_det(s), raw, rtol=1e-6)


# --------------------------------------------------------------------------- batches


N_EX, B = 103, 10  # 10 steps per epoch; 3 examples dropped each epoch


@pytest.fixture
def rows():
    # row i is (i, -i): each batch row identifies its example
    i = np.arange(N_EX, dtype=np.float32)
    return np.stack([i, -i], axis=1)


def test_array_batches_one_epoch_is_a_permutation(rows, key):
    batch_fn = data.array_batches(rows, B)
    epoch = np.concatenate([np.asarray(batch_fn(key, s)) for s in range(10)])
    assert epoch.shape == (100, 2)
    np.testing.assert_array_equal(epoch[:, 1], -epoch[:, 0])  # rows are kept intact
    ids = epoch[:, 0].astype(int)
    assert len(set(ids)) == 100  # each example at most once, 100 of the 103 used
    # exactly the documented definition
    perm = np.asarray(data.keyed_permutation(jax.random.fold_in(key, 0), jnp.arange(N_EX), N_EX))
    np.testing.assert_array_equal(ids, perm[:100])


def test_array_batches_eager_jit_scan_agree(rows, key):
    batch_fn = data.array_batches(rows, B)
    steps = 25
    eager = np.stack([np.asarray(batch_fn(key, s)) for s in range(13 + steps)])
    jitted = jax.jit(batch_fn)
    traced = np.stack([np.asarray(jitted(key, jnp.int32(s))) for s in range(steps)])
    np.testing.assert_array_equal(traced, eager[:steps])

    @jax.jit
    def scan_from(start):
        def body(carry, step):
            return carry, batch_fn(key, step)

        return jax.lax.scan(body, 0, start + jnp.arange(steps, dtype=jnp.int32))[1]

    np.testing.assert_array_equal(np.asarray(scan_from(0)), eager[:steps])
    # a run resumed at step 13 sees the batches the uninterrupted run saw from step 13 on
    np.testing.assert_array_equal(np.asarray(scan_from(13)), eager[13:])
    # epochs are shuffled differently
    assert not np.array_equal(eager[0:10, :, 0], eager[10:20, :, 0])
    assert sorted(eager[10:20, :, 0].ravel().tolist()) != sorted(eager[0:10, :, 0].ravel().tolist())
    # different keys give different orders
    other = np.asarray(batch_fn(jax.random.fold_in(key, 1), 0))
    assert not np.array_equal(other, eager[0])


def test_array_batches_errors(rows):
    with pytest.raises(DataError, match="batch_size 200 exceeds the 103 examples"):
        data.array_batches(rows, 200)
    with pytest.raises(DataError, match="batch_size must be >= 1"):
        data.array_batches(rows, 0)
    full = data.array_batches(rows, N_EX)  # batch_size == n: every step is a full permutation
    assert full(jax.random.key(1), 5).shape == (N_EX, 2)


def test_sampler_batches(key):
    sample_fn = functools.partial(data.toy, "circles")
    batch_fn = data.sampler_batches(sample_fn, 64)
    b3 = batch_fn(key, 3)
    np.testing.assert_array_equal(b3, data.circles(jax.random.fold_in(key, 3), 64))
    np.testing.assert_allclose(jax.jit(batch_fn)(key, jnp.int32(3)), b3, atol=1e-6)
    assert not np.allclose(batch_fn(key, 4), b3)
