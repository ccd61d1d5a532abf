"""The image sample-quality metric: the digits classifier, its floor, and bad generators."""

import warnings

import numpy as np
import pytest

from flowzoo import data
from flowzoo.zoo import WeightsError, _quality, image_classifier, image_quality


@pytest.fixture(scope="module")
def digits_clf(digits_classifier):
    return digits_classifier  # the shipped one (conftest)


@pytest.fixture(scope="module")
def digits():
    return data.image_dataset("digits")


def test_digits_classifier_accuracy_and_floor(digits_clf, digits):
    """At least 98% held-out accuracy (the issue's bar); held-out digits are mostly legible
    and spread over all ten classes."""
    assert digits_clf.test_accuracy >= 0.98
    q = image_quality(digits_clf, digits.test)  # real held-out images as the "samples"
    assert q["n"] == len(digits.test) == 300
    assert q["fd"] == pytest.approx(0.0, abs=1e-6)  # identical sets
    assert q["legibility_floor"] >= 0.85
    assert q["fd_floor"] > 0.0
    assert min(q["class_histogram_floor"]) > 0.05  # every class present


def test_bad_generators_score_worse_than_the_floor(digits_clf, digits):
    """Uniform noise, pixel-shuffled digits and one-class output: FD at least 10x the floor;
    noise and shuffled digits are illegible (outlier exposure), and the one-class generator's
    histogram puts everything on that class."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, digits.levels, size=digits.test.shape)
    q_noise = image_quality(digits_clf, noise)
    assert q_noise["fd"] > 10 * q_noise["fd_floor"]
    assert q_noise["legibility"] < 0.05 < 0.85 < q_noise["legibility_floor"]
    flat = digits.test.reshape(len(digits.test), -1)
    shuffled = flat[:, rng.permutation(flat.shape[1])].reshape(digits.test.shape)
    q_shuffled = image_quality(digits_clf, shuffled)
    assert q_shuffled["fd"] > 10 * q_shuffled["fd_floor"] and q_shuffled["legibility"] < 0.05
    threes = digits.train[digits.train_labels == 3]
    q_three = image_quality(digits_clf, threes)
    assert q_three["fd"] > 10 * q_three["fd_floor"]
    assert q_three["class_histogram"][3] > 0.95


def test_float_and_padded_samples_are_floored_and_cropped(digits_clf, digits):
    """Dequantised floats (x + u) and zero-padded images score as the images they hold."""
    u = np.random.default_rng(1).uniform(0, 0.99, size=digits.test.shape)
    padded = data.pad_images(digits.test, 12)
    base = image_quality(digits_clf, digits.test[:100])
    for x in (digits.test[:100] + u[:100], padded[:100]):
        assert image_quality(digits_clf, x)["fd"] == pytest.approx(base["fd"], abs=1e-6)
    with pytest.raises(ValueError, match="not finite"):
        image_quality(digits_clf, np.full((4, 8, 8, 1), np.nan))
    with pytest.raises(ValueError, match="n=1"):
        image_quality(digits_clf, digits.test, n=1)
    with pytest.raises(ValueError, match="smaller"):
        image_quality(digits_clf, digits.test[:, :4, :4])


def test_cache_is_reused_and_a_corrupt_file_is_rebuilt(tmp_path, monkeypatch, digits_clf):
    """Without a shipped classifier, a second call reads the cache without training; a
    corrupt file is rebuilt with a warning (training replaced by a counter here: the real
    one is tested below)."""
    monkeypatch.setenv("FLOWZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(_quality, "SHIPPED_DIR", tmp_path / "nothing shipped")
    calls = []

    def fake_train(name, images):
        calls.append(name)
        return digits_clf.params, 0.99

    monkeypatch.setattr(_quality, "_train", fake_train)
    first = image_classifier("digits")
    path = tmp_path / f"classifier-digits-v{_quality.VERSION}.npz"
    assert calls == ["digits"] and path.is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = image_classifier("digits")
    assert calls == ["digits"] and again.test_accuracy == first.test_accuracy == 0.99
    path.write_bytes(b"not an npz file")
    with pytest.warns(UserWarning, match="unusable"):
        image_classifier("digits")
    assert calls == ["digits", "digits"]
    monkeypatch.setattr(_quality, "_train", lambda name, images: (digits_clf.params, 0.5))
    path.unlink()
    with pytest.raises(RuntimeError, match="held-out accuracy"):
        image_classifier("digits")
    with pytest.raises(ValueError, match="no sample-quality classifier"):
        image_classifier("cifar")


def test_a_damaged_shipped_classifier_is_an_error(tmp_path, monkeypatch):
    """A shipped classifier whose bytes differ from its card's SHA-256 is refused (not
    silently retrained)."""
    import shutil

    shipped = tmp_path / "classifiers"
    shutil.copytree(_quality.SHIPPED_DIR, shipped)
    data_file = shipped / "digits.safetensors"
    raw = bytearray(data_file.read_bytes())
    raw[-5] ^= 0x10
    data_file.write_bytes(bytes(raw))
    monkeypatch.setattr(_quality, "SHIPPED_DIR", shipped)
    with pytest.raises(WeightsError, match="fails its checksum"):
        image_classifier("digits")


_TRAIN_SHORT = """
import json, sys
from flowzoo import data
from flowzoo.zoo import _quality
_quality._RECIPE["digits"] = {**_quality._RECIPE["digits"], "steps": 150}
params, accuracy = _quality._train("digits", data.image_dataset("digits"))
print(json.dumps({"accuracy": accuracy}))
"""


@pytest.mark.slow
def test_the_classifier_recipe_trains(full_optimisation_env):
    """The recipe (outlier exposure, random shifts) at 150 of its 1,500 steps already
    classifies 90% of held-out digits (96% measured; the shipped one, at 1,500: 98.7%). In a
    child at XLA's default optimisation: this suite's fast-compile flags slow its loop about
    10x."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _TRAIN_SHORT],
        env=full_optimisation_env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(out.stdout.splitlines()[-1])["accuracy"] >= 0.9
