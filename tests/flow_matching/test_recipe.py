"""The "cfm" model of `flowzoo train`: config -> Model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.zoo import ConfigError, build_model, default_config, load_experiment
from flowzoo.zoo import default_cfm_config as default_model_config


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
