"""The "cfm" model of `flowzoo train`: config -> Model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.zoo import ConfigError, build_model, complete_config, default_config, load_experiment
from flowzoo.zoo import default_cfm_config as default_model_config


@pytest.mark.slow
def test_cfm_trainable_end_to_end(key):
    config = default_config()
    config["model"] = default_model_config()
    config["model"].update(hidden=[16, 16], coupling="sinkhorn", num_steps=4, log_prob_steps=2)
    model = build_model(config, (2,))
    x = jax.random.normal(key, (32, 2))
    params = model.init(key, x)
    value, aux = model.loss(params, key, x)
    assert np.isfinite(float(value)) and "target_sq" in aux
    assert model.sample(params, key, 5).shape == (5, 2)
    logp = model.distribution.log_prob(params, x[:4])
    assert logp.shape == (4,) and bool(jnp.all(jnp.isfinite(logp)))


def test_experiments_load_and_bad_config():
    for name in ("fm_moons", "fm_8gaussians"):
        assert load_experiment(name)["model"]["name"] == "cfm"
    config = default_config()
    config["model"] = {**default_model_config(), "path": "nope"}
    with pytest.raises(ConfigError, match="unknown path"):
        build_model(config, (2,))


def test_ot_pipeline_config_trains_on_prefetched_pairs(key, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from flowzoo.flow_matching import _pipeline
    from flowzoo.zoo import _run

    config = default_config()
    config["model"] = default_model_config()
    config["model"].update(hidden=[8], coupling="exact_ot", ot_pipeline=True, ot_workers=1)
    config["train"].update(batch_size=16)
    config = complete_config(config)  # as the run completes it
    model = build_model(config, (2,))
    x = np.asarray(jax.random.normal(key, (64, 2)))
    params = model.init(key, x)
    # what the run's fit gets: the model's prefetched pairs, and the pool closed afterwards
    got, closed = {}, []
    real_close = _pipeline._Prefetcher.close
    monkeypatch.setattr(_pipeline._Prefetcher, "close", lambda s: closed.append(real_close(s)))

    def fake_fit(loss, optimizer, params, batch_fn, **kwargs):
        got["pairs"] = jax.jit(batch_fn)(kwargs["key"], 3)
        return loss(params, key, got["pairs"])

    monkeypatch.setattr(_run, "fit", fake_fit)
    ev = _run._Evaluator(None, None, {})
    data = SimpleNamespace(train_std=x)
    value, _ = _run._fit_run(config, model, params, data, ev, key, tmp_path, None, False)
    assert got["pairs"].shape == (16, 2, 2) and np.isfinite(float(value)) and closed
    config["model"]["coupling"] = "sinkhorn"
    with pytest.raises(ValueError, match="needs model.coupling: exact_ot"):
        build_model(config, (2,))


def test_dropout_on_a_non_unet_field_is_refused():
    """``model.dropout`` is the UNet's; on the MLP field it is an error naming the key, not a
    crash inside the loss (whose network would be called with a key it does not take)."""
    config = default_config()
    config["model"] = default_model_config()
    config["model"].update(net="mlp", dropout=0.1)
    with pytest.raises(ConfigError, match="model.dropout applies to the UNet only"):
        build_model(config, (2,))
