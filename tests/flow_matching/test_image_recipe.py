"""Flow matching on quantised images: the UNet recipe trains, and its bits/dim bookkeeping.

Time convention: t=0 noise N(0, I), t=1 data. Images are grey levels ``0 .. L-1``; the model
space is ``z = 2 (x + u) / L - 1`` (preprocess "scale"). Tiny 4x4x1 images keep compiles short.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.flows import EVAL_SEED as EVAL_KEY_SEED
from flowzoo.metrics import bits_per_dim
from flowzoo.zoo import build_model, default_config
from flowzoo.zoo import image_cfm_config as image_model_config

LEVELS = 17
SHAPE = (4, 4, 1)
D = math.prod(SHAPE)


def _images(key, n=8):
    return jax.random.randint(key, (n, *SHAPE), 0, LEVELS).astype(jnp.float32)


def _model(**overrides):
    config = default_config()
    config["model"] = image_model_config()
    config["model"].update(
        channels=[4, 8],
        embed_dim=8,
        num_steps=1,
        log_prob_steps=1,
        log_prob_chunk=4,
        data_levels=LEVELS,
        **overrides,
    )
    return build_model(config, SHAPE)


@pytest.fixture(scope="module")
def exact_model():
    return _model(log_prob="exact")


@pytest.mark.slow
def test_image_cfm_trains_and_gives_finite_bits_per_dim(key, exact_model):
    model = exact_model
    x = _images(key)
    params = model.init(key, x)
    step = jax.jit(jax.value_and_grad(lambda p, k: model.loss(p, k, x)[0]))
    losses = []
    for i in range(3):  # a few plain gradient steps
        value, grads = step(params, jax.random.fold_in(key, i))
        params = jax.tree.map(lambda p, g: p - 1e-2 * g, params, grads)
        losses.append(float(value))
    assert all(np.isfinite(losses))
    logp = jax.jit(model.distribution.log_prob)(
        params, x[:6]
    )  # 6 rows: chunks of 4, the last padded
    bpd = bits_per_dim(logp, D, LEVELS)
    assert logp.shape == (6,) and bool(jnp.all(jnp.isfinite(bpd)))
    samples = jax.jit(lambda p, k: model.sample(p, k, 5))(params, key)
    assert samples.shape == (5, *SHAPE)
    assert float(samples.min()) >= 0 and float(samples.max()) <= LEVELS - 1
    np.testing.assert_array_equal(samples, jnp.floor(samples))  # grey levels


@pytest.mark.slow
def test_zero_field_bits_per_dim_is_the_pushed_base_density(key, exact_model):
    """A zero velocity field is the identity flow: p_z = N(0, I) on z = 2 (x + u) / L - 1.

    Direct computation: log p_v(v) = log N(z) + D ln(2 / L) (Jacobian of v -> z), so the
    bits/dim is ``bits_per_dim(log N(z) + D ln 2, D, L)`` with the density on y = v / L.
    The Hutchinson estimate is exact for the zero field.
    """
    x = _images(key, 4)
    params = exact_model.init(key, x)  # the UNet's output layer is zero-initialised: v == 0
    logp = jax.jit(exact_model.distribution.log_prob)(params, x)
    u = jax.random.uniform(jax.random.key(EVAL_KEY_SEED), x.shape, jnp.float32)
    z = (2.0 * (x + u) / LEVELS - 1.0).reshape(4, -1)
    log_n = -0.5 * jnp.sum(z**2, 1) - 0.5 * D * math.log(2 * math.pi)
    np.testing.assert_allclose(logp, log_n + D * math.log(2.0 / LEVELS), rtol=1e-5)
    want = bits_per_dim(log_n + D * math.log(2.0), D, LEVELS)
    got = -logp / (D * math.log(2.0))  # what train_and_evaluate reports as test_bpd
    np.testing.assert_allclose(got, want, rtol=1e-5)
    hutch = _model(log_prob="hutchinson", num_probes=3)
    np.testing.assert_allclose(jax.jit(hutch.distribution.log_prob)(params, x), logp, rtol=1e-6)
