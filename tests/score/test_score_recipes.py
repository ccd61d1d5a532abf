"""The registered score-family models build, train one step and sample (tiny configs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.zoo import build_model, default_config

TINY = {
    "ncsn": {
        "sigma_max": 3.0,
        "sigma_min": 0.01,
        "num_sigmas": 3,
        "hidden": [16],
        "steps_per_level": 2,
        "step_eps": 2e-5,
    },
    "ebm": {
        "hidden": [16],
        "cd_steps": 2,
        "cd_step_size": 0.01,
        "alpha": 0.1,
        "init_scale": 3.0,
        "mala_steps": 3,
        "mala_step_size": 0.01,
    },
    "score_sde": {"sde": "vp", "hidden": [16], "sample_steps": 4},
}


@pytest.mark.parametrize("name", list(TINY))
def test_recipe_builds_trains_and_samples(key, name):
    config = default_config()
    config["model"] = {"name": name, **TINY[name]}
    model = build_model(config, (2,))
    x = jax.random.normal(key, (32, 2))
    params = model.init(key, x)
    loss, metrics = jax.jit(model.loss)(params, key, x)
    assert np.isfinite(float(loss)) and "loss" in metrics
    samples = jax.jit(lambda p, k: model.sample(p, k, 16))(params, key)
    assert samples.shape == (16, 2) and bool(jnp.all(jnp.isfinite(samples)))
    if name == "score_sde":
        assert model.distribution.log_prob(params, x[:4]).shape == (4,)
    else:
        assert model.distribution is None
