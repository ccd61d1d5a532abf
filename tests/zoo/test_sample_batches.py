"""A run draws ``plot.sample_batch`` points per compiled sampling call (``zoo.sample_batch``):
a draw within one batch is one call of the model's sampler, as it always was; a larger one
is the chunks ``model.sample(params, fold_in(key, i), batch)``, cut to the size asked for.
The reference is the model's own sampler, called directly."""

from __future__ import annotations

import contextlib
import io

import jax
import numpy as np
import pytest

from flowzoo import cli, data, zoo


def _direct(run: zoo.Run, key, n: int) -> np.ndarray:
    """``n`` samples of one direct call of the model's sampler, in raw units."""
    return np.asarray(data.unstandardize(run.standardizer, run.model.sample(run.params, key, n)))


def _with_batch(run: zoo.Run, batch: int) -> zoo.Run:
    return run._replace(
        config={**run.config, "plot": {**run.config["plot"], "sample_batch": batch}}
    )


def test_a_large_draw_is_chunks_with_folded_keys():
    run = zoo.pretrained("moons_realnvp")
    key = jax.random.key(5)
    assert zoo.sample_batch(run.config) is None  # vector data, automatic: all at once
    np.testing.assert_allclose(run.sample(key, 20), _direct(run, key, 20), rtol=1e-5, atol=1e-5)
    chunked = _with_batch(run, 8)
    x = chunked.sample(key, 20)
    want = np.concatenate([_direct(run, jax.random.fold_in(key, i), 8) for i in range(3)])
    assert x.shape == (20, 2)
    np.testing.assert_allclose(x, want[:20], rtol=1e-5, atol=1e-5)
    # a draw of at most one batch is the single call
    np.testing.assert_allclose(chunked.sample(key, 8), _direct(run, key, 8), rtol=1e-5, atol=1e-5)
    assert not np.allclose(x[:8], x[8:16])  # the chunks draw different noise


def test_images_default_to_a_thousand_per_call_and_the_key_is_checked():
    config = zoo.complete_config(zoo.load_experiment("fm_cifar10"))
    assert config["plot"]["sample_batch"] == 0
    assert zoo.sample_batch(config) == zoo.IMAGE_SAMPLE_BATCH == 1000
    set64 = zoo.apply_overrides(zoo.load_experiment("fm_cifar10"), ["plot.sample_batch=64"])
    assert zoo.sample_batch(zoo.complete_config(set64)) == 64
    bad = zoo.apply_overrides(zoo.load_experiment("fm_cifar10"), ["plot.sample_batch=-1"])
    with pytest.raises(zoo.ConfigError, match="plot.sample_batch=-1; expected an integer >= 0"):
        zoo.validate_config(zoo.complete_config(bad))


def test_fid_needs_a_data_set_read_from_files():
    run = zoo.pretrained("moons_realnvp")
    with pytest.raises(zoo.ConfigError, match="FID needs a data set read from files"):
        run.fid(jax.random.key(0), 10)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["eval", "pretrained:moons_realnvp", "--fid-samples", "10"])
    assert rc == 2 and "FID applies to runs on a data set read from files" in err.getvalue()
