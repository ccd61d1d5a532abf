"""The registered score-family models build, train one step and sample (tiny configs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.zoo import ConfigError, build_model, default_config

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_score_sde_unet_dropout_acts_in_training_only(key):
    """``model.dropout`` on the score SDE's UNet changes the training loss (the same params
    and key give another value than without dropout) and leaves sampling deterministic (the
    same samples as the model without dropout); on the MLP it is refused by name."""
    config = default_config()
    base = {"name": "score_sde", "sde": "vp", "net": "unet", "channels": [8], "sample_steps": 2}
    config["model"] = base
    plain = build_model(config, (8, 8, 1))
    config["model"] = {**base, "dropout": 0.5}
    dropped = build_model(config, (8, 8, 1))
    x = jax.random.normal(key, (4, 8, 8, 1))
    params = plain.init(key, x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero output layer
    loss_plain = float(jax.jit(plain.loss)(params, key, x)[0])
    loss_dropped = float(jax.jit(dropped.loss)(params, key, x)[0])
    assert np.isfinite(loss_dropped) and abs(loss_dropped - loss_plain) > 1e-3 * loss_plain
    sample = jax.jit(lambda m, p, k: m.sample(p, k, 2), static_argnums=0)
    np.testing.assert_array_equal(sample(dropped, params, key), sample(plain, params, key))
    config["model"] = {"name": "score_sde", "sde": "vp", "net": "mlp", "dropout": 0.1}
    with pytest.raises(ConfigError, match="model.dropout applies to the UNet only"):
        build_model(config, (2,))
