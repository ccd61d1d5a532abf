import jax
import jax.numpy as jnp
import numpy as np

from flowzoo import nets


def test_time_mlp_shapes_and_time_dependence(key):
    net = nets.time_mlp((3,), (16, 16), embed_dim=8)
    x = jax.random.normal(key, (5, 3))
    params = net.init(key, 0.5, x)
    out = net.apply(params, 0.5, x)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out, net.apply(params, jnp.full((5,), 0.5), x), atol=1e-6)
    assert not np.allclose(out, net.apply(params, 0.7, x), atol=1e-4)
    ctx = jnp.ones((5, 2))
    p2 = net.init(key, 0.1, x, ctx)
    assert net.apply(p2, 0.1, x, ctx).shape == (5, 3)


def test_time_mlp_zero_init_outputs_zero(key):
    net = nets.time_mlp(4, (8,), zero_init_last=True)
    x = jax.random.normal(key, (2, 4))
    np.testing.assert_array_equal(net.apply(net.init(key, 0.0, x), 0.3, x), 0.0)


def test_sinusoidal_embedding_odd_dim_and_range():
    emb = nets.sinusoidal_embedding(jnp.linspace(0, 1, 7), 9)
    assert emb.shape == (7, 9)
    assert float(jnp.max(jnp.abs(emb))) <= 1.0
