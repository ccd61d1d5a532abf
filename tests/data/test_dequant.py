"""Dequantization and preprocessing bookkeeping: ranges, log-dets against autodiff, and
bits/dim against hand computations (a uniform model must give exactly log2(levels))."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as bj
from flowzoo import data, flows, metrics
from flowzoo.distributions import Distribution, standard_normal


@pytest.mark.parametrize("levels", [17, 256])
def test_uniform_dequantize_range_and_inverse(key, levels):
    x = jnp.tile(jnp.arange(levels, dtype=jnp.uint8 if levels <= 256 else jnp.int32), 40)
    x = x.reshape(-1, 1, 1, 1) if levels == 17 else x.reshape(-1, 4, 4, 1)
    y = data.uniform_dequantize(key, x, levels)
    assert y.dtype == jnp.float32 and y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) < 1.0
    np.testing.assert_array_equal(np.floor(np.asarray(y) * levels), np.asarray(x))
    np.testing.assert_array_equal(data.quantize(y, levels), np.asarray(x, np.float32))
    # the noise is uniform on each bin: its mean is close to 1/2
    assert float(jnp.mean(y * levels - x)) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_bits_per_dim_of_uniform_density_is_log2_levels(levels):
    """``log p(y) = 0`` on the unit cube: ``(0 + D ln L) / (D ln 2) = log2 L`` exactly."""
    bpd = metrics.bits_per_dim(jnp.zeros(3), 64, levels)
    np.testing.assert_allclose(bpd, math.log2(levels), rtol=1e-6)
    # hand computation for a non-trivial value: D=4, L=17, log p = -3 nats
    expected = (3.0 + 4 * math.log(17)) / (4 * math.log(2))
    assert float(metrics.bits_per_dim(-3.0, 4, 17)) == pytest.approx(expected, rel=1e-6)


def _logistic(shape) -> Distribution:
    """Standard logistic density per pixel: pushed through a sigmoid it is U(0, 1)."""

    def log_prob(params, z, context=None):
        return bj.sum_except_batch(jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z))

    def sample(params, key, n, context=None, temperature=1.0):
        return jax.random.logistic(key, (n, *shape))

    return Distribution(
        lambda key, x, context=None: (),
        log_prob,
        sample,
        lambda p, k, n, context=None, temperature=1.0: (
            sample(p, k, n),
            log_prob(p, sample(p, k, n)),
        ),
        tuple(shape),
    )


@pytest.mark.parametrize("levels", [17, 256])
def test_uniform_model_end_to_end_gives_log2_levels(key, levels):
    """Logistic flow + sigmoid preprocessing = uniform density on the cube: every image
    costs exactly ``log2(levels)`` bits/dim through the full change-of-variables path."""
    shape = (4, 4, 1)
    model = flows.dequantized(_logistic(shape), levels, preprocess=data.logit_transform(0.0))
    x = jax.random.randint(key, (16, *shape), 0, levels)
    params = model.init(key, x)
    lp = model.log_prob_estimate(params, jax.random.fold_in(key, 1), x)
    np.testing.assert_allclose(lp, -16 * math.log(levels), rtol=1e-5)
    loss, aux = flows.nll_loss(model, bits_per_dim=True)(params, key, x)
    assert float(loss) == pytest.approx(math.log2(levels), rel=1e-5)
    assert float(aux["nll"]) == pytest.approx(16 * math.log(levels), rel=1e-5)


def _jacobian_logdet(f, x):
    """log|det J| per example for an elementwise map, from the autodiff Jacobian."""
    flat = x.reshape(x.shape[0], -1)

    def one(row):
        j = jax.jacfwd(lambda r: f(r.reshape(1, *x.shape[1:]))[0].reshape(-1))(row)
        return jnp.linalg.slogdet(j)[1]

    return jax.vmap(one)(flat)


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_logit_transform_logdet_matches_autodiff(key, alpha):
    b = data.logit_transform(alpha)
    y = jax.random.uniform(key, (3, 2, 2, 1), minval=0.01, maxval=0.99)
    z, ld_inv = b.inverse((), y)
    expected = jnp.log(alpha + (1 - 2 * alpha) * y)
    expected = expected - jnp.log1p(-(alpha + (1 - 2 * alpha) * y))
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        ld_inv, _jacobian_logdet(lambda v: b.inverse((), v)[0], y), rtol=1e-5, atol=1e-4
    )
    y_back, ld_fwd = b.forward((), z)
    np.testing.assert_allclose(y_back, y, atol=1e-5)
    np.testing.assert_allclose(ld_fwd, -ld_inv, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        ld_fwd, _jacobian_logdet(lambda v: b.forward((), v)[0], z), rtol=1e-5, atol=1e-4
    )


def test_logit_forward_logdet_is_finite_for_large_inputs():
    z = jnp.array([[-60.0, -20.0, 20.0, 60.0]])
    _, ld = data.logit_transform(0.05).forward((), z)
    assert np.isfinite(float(ld[0]))


def test_shift_and_scale_logdets(key):
    y = jax.random.uniform(key, (2, 3, 3, 1))
    z, ld = data.shift_transform().inverse((), y)
    np.testing.assert_allclose(z, y - 0.5, atol=1e-7)
    np.testing.assert_allclose(ld, 0.0)
    v, ld = data.scale_transform(17).forward((), y)
    np.testing.assert_allclose(v, 17 * y, rtol=1e-6)
    np.testing.assert_allclose(ld, 9 * math.log(17), rtol=1e-6)


def test_logit_transform_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha must be in"):
        data.logit_transform(0.5)


@pytest.mark.parametrize("preprocess", ["logit", "shift"])
def test_model_log_prob_agrees_with_bits_per_dim(key, preprocess):
    """The model's discrete bound equals ``bits_per_dim`` of the density on [0, 1)^D."""
    shape, levels = (2, 2, 1), 17
    coupling = bj.affine_coupling(bj.checkerboard_mask(shape), bj.mlp_conditioner((8,)))
    flow = flows.transformed(standard_normal(shape), coupling)
    model = flows.dequantized(flow, levels, preprocess=preprocess)
    x = jax.random.randint(key, (5, *shape), 0, levels)
    params = model.init(key, x)
    # non-trivial conditioner weights (init is the identity coupling)
    params = jax.tree.map(
        lambda a: a + 0.3 * jax.random.normal(jax.random.fold_in(key, a.size), a.shape), params
    )
    k = jax.random.fold_in(key, 3)
    lp = model.log_prob_estimate(params, k, x)
    # the same u, by hand: the density of y = (x + u) / L, through the preprocessing only
    y = (x + jax.random.uniform(k, x.shape)) / levels
    pre = data.logit_transform(0.05) if preprocess == "logit" else data.shift_transform()
    lp_y = flows.transformed(flow, pre).log_prob(
        {"base": params["density"]["base"], "bijector": ()}, y
    )
    np.testing.assert_allclose(
        -lp / (4 * math.log(2)), metrics.bits_per_dim(lp_y, 4, levels), rtol=1e-5
    )
