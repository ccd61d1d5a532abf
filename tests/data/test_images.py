"""Image data sets: fixed splits, shapes and levels, padding, validation errors, batches, and
the full-covariance Gaussian baseline on digits."""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest

from flowzoo import data


@pytest.fixture(scope="module")
def digits():
    return data.image_dataset("digits")


def test_digits_shapes_levels_and_dtype(digits):
    assert digits.train.shape == (1497, 8, 8, 1) and digits.test.shape == (300, 8, 8, 1)
    assert digits.train.dtype == np.uint8 and digits.levels == 17 == data.IMAGE_LEVELS["digits"]
    both = np.concatenate([digits.train, digits.test])
    assert both.min() == 0 and both.max() == 16


def test_mnist_subset_shapes_padding():
    m = data.image_dataset("mnist")
    assert m.train.shape == (4000, 28, 28, 1) and m.test.shape == (1000, 28, 28, 1)
    assert m.levels == 256 and m.train.dtype == np.uint8 and m.train.max() == 255
    p = data.image_dataset("mnist", pad_to=32)
    assert p.train.shape == (4000, 32, 32, 1)
    np.testing.assert_array_equal(p.train[:, 2:30, 2:30], m.train)  # centred, zero border
    assert p.train[:, :2].max() == 0 and p.train[:, 30:].max() == 0


def test_split_is_fixed_deterministic_and_disjoint(digits):
    order = data.split_order("digits", 1797)
    # pinned: SHA-256 ranks do not depend on any RNG or library version
    assert order[:6].tolist() == [1230, 148, 473, 182, 302, 1117]
    assert data.split_order("mnist", 5000)[:3].tolist() == [1575, 1222, 3867]
    train_idx, test_idx = set(order[:1497].tolist()), set(order[1497:].tolist())
    assert not train_idx & test_idx and len(train_idx | test_idx) == 1797
    again = data.image_dataset("digits")
    np.testing.assert_array_equal(again.train, digits.train)
    np.testing.assert_array_equal(again.test, digits.test)
    from sklearn.datasets import load_digits

    raw = load_digits().images.reshape(-1, 8, 8, 1)
    np.testing.assert_array_equal(digits.test, raw[order[1497:]])


@pytest.mark.parametrize(
    ("bad", "needles"),
    [
        (np.zeros((4, 8, 8), np.uint8), ["(n, height, width, channels)", "(4, 8, 8)"]),
        (np.array([["a"]] * 4, dtype=object).reshape(4, 1, 1, 1), ["not numeric"]),
        (np.full((2, 2, 2, 1), 17, np.int32), ["[0, 16]", "max 17"]),
        (np.full((2, 2, 2, 1), -1, np.int32), ["min -1"]),
        (np.where(np.eye(2)[None, :, :, None], np.nan, 1.0), ["NaN/inf", "image 0"]),
        (np.full((2, 2, 2, 1), 0.5), ["not whole numbers", "0.5"]),
    ],
    ids=["rank", "dtype", "too-large", "negative", "nan", "fractional"],
)
def test_check_images_errors(bad, needles):
    with pytest.raises(data.DataError) as err:
        data.check_images(bad, 17)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_check_images_accepts_whole_floats():
    x = data.check_images(np.arange(16.0).reshape(1, 4, 4, 1), 17)
    assert x.dtype == np.uint8 and x.max() == 15


def test_unknown_name_and_bad_padding():
    with pytest.raises(data.DataError, match="unknown image data set 'cifar'"):
        data.image_dataset("cifar")
    with pytest.raises(data.DataError, match="smaller than the images"):
        data.image_dataset("digits", pad_to=4)


def test_missing_optional_dependency_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r'pip install "flowzoo\[data\]"'):
        data.image_dataset("digits")


def test_batches_reshuffle_images_per_epoch(digits, key):
    """array_batches on uint8 images: every image once per epoch, a new order each epoch."""
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
    batch_fn = data.array_batches(x, 5)
    epoch0 = np.concatenate([np.asarray(batch_fn(key, s)) for s in (0, 1)])
    epoch1 = np.concatenate([np.asarray(batch_fn(key, s)) for s in (2, 3)])
    assert epoch0.dtype == np.uint8 and epoch0.shape == (10, 2, 2, 1)
    assert sorted(epoch0[:, 0, 0, 0].tolist()) == list(range(10))
    assert sorted(epoch1[:, 0, 0, 0].tolist()) == list(range(10))
    assert epoch0[:, 0, 0, 0].tolist() != epoch1[:, 0, 0, 0].tolist()
    other = np.asarray(batch_fn(jax.random.fold_in(key, 1), 0))
    assert other[:, 0, 0, 0].tolist() != epoch0[:5, 0, 0, 0].tolist()


def test_gaussian_baseline_on_digits(digits):
    """A full-covariance Gaussian on dequantized digits: 2.95 bits/dim (issue: about 2.96).

    Tolerance 0.03 bits/dim covers the dequantization draws (seeds 0-2 give 2.946-2.954).
    """
    bpd = data.gaussian_bits_per_dim(digits.train, digits.test, digits.levels)
    assert bpd == pytest.approx(2.95, abs=0.03)
