"""flowzoo.nets.dropout: the mask against jax.random.bits, its statistics, values and
gradients, and the flax module."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import nets


def test_mask_statistics():
    n_ex, shape = 64, (64, 16, 16, 16)
    keep = 0.9
    m = np.asarray(
        jax.jit(nets.dropout_mask, static_argnums=(1, 2))(jax.random.key(3), keep, shape)
    )
    assert m.shape == shape and m.dtype == bool
    n = m.size
    # fraction kept: within 5 binomial standard deviations (sd = sqrt(p(1-p)/n) = 1.2e-4)
    assert abs(m.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)
    # neighbours along every axis uncorrelated: |corr| < 5/sqrt(pairs)
    f = m.astype(np.float64)
    for axis in range(4):
        a = np.moveaxis(f, axis, 0)
        corr = np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]
        assert abs(corr) < 5 / np.sqrt(a[1:].size), (axis, corr)
    # per-example fractions spread as binomials (chi-square-like check of the variance)
    per = f.reshape(n_ex, -1).mean(axis=1)
    sd = np.sqrt(keep * (1 - keep) / (n / n_ex))
    assert 0.5 * sd < per.std() < 1.6 * sd


def test_mask_is_a_threshold_of_the_bits_and_ignores_batch_size():
    key = jax.random.key(0)
    big = np.asarray(nets.dropout_mask(key, 0.5, (6, 5, 7)))
    np.testing.assert_array_equal(big, np.asarray(jax.random.bits(key, (6, 5, 7))) < 2**31)
    small = np.asarray(nets.dropout_mask(key, 0.5, (2, 5, 7)))
    np.testing.assert_array_equal(big[:2], small)
    other = np.asarray(nets.dropout_mask(jax.random.key(1), 0.5, (6, 5, 7)))
    assert (big != other).mean() > 0.3
    assert (big[0] != big[1]).mean() > 0.3  # examples get different masks


def test_mask_limits():
    assert bool(jnp.all(nets.dropout_mask(jax.random.key(0), 1.0, (2, 3))))
    assert not bool(jnp.any(nets.dropout_mask(jax.random.key(0), 0.0, (2, 3))))
    with pytest.raises(ValueError, match="keep must be in"):
        nets.dropout_mask(jax.random.key(0), 1.5, (2, 3))


def test_dropout_values_and_gradient():
    key = jax.random.key(2)
    x = jax.random.normal(jax.random.key(9), (4, 8, 8, 3))
    rate = 0.25
    y = nets.dropout(key, rate, x)
    mask = np.asarray(nets.dropout_mask(key, 1 - rate, x.shape))
    np.testing.assert_allclose(np.asarray(y), np.where(mask, np.asarray(x) / 0.75, 0.0), rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(nets.dropout(key, rate, x) * 2.0))(x)
    np.testing.assert_allclose(np.asarray(g), np.where(mask, 2.0 / 0.75, 0.0), rtol=1e-6)
    assert nets.dropout(key, 0.0, x) is x or np.array_equal(nets.dropout(key, 0.0, x), x)
    np.testing.assert_array_equal(np.asarray(nets.dropout(key, 1.0, x)), 0.0)
    xb = x.astype(jnp.bfloat16)
    assert nets.dropout(key, rate, xb).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="rate must be in"):
        nets.dropout(key, -0.1, x)


def test_dropout_module_as_flax_dropout():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            return nets.Dropout(0.5, deterministic=not train)(nn.Dense(4)(x))

    x = jnp.ones((3, 5))
    params = Net().init(jax.random.key(0), x, False)
    plain = Net().apply(params, x, False)
    a = Net().apply(params, x, True, rngs={"dropout": jax.random.key(1)})
    b = Net().apply(params, x, True, rngs={"dropout": jax.random.key(1)})
    c = Net().apply(params, x, True, rngs={"dropout": jax.random.key(2)})
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    kept = np.asarray(a) != 0
    np.testing.assert_allclose(np.asarray(a)[kept], 2 * np.asarray(plain)[kept], rtol=1e-6)
    with pytest.raises(Exception, match="dropout"):  # no rng given: flax names the collection
        Net().apply(params, x, True)
