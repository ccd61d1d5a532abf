"""Image flows (issue 3): Glow and multi-scale RealNVP densities.

References are independent of the flows' own log-det bookkeeping: numerical integration on a
4-D grid, and the change of variables with the Jacobian from autodiff. Tolerances are stated
per assertion. Inits are jitted (one XLA compile instead of one per eager scan).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowzoo.flows as ff
from flowzoo.distributions import standard_normal


def _perturb(params, key, scale):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


def _init(flow, shape, n=32, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, *shape))
    return jax.jit(flow.init)(jax.random.key(seed + 1), x)


def _grid_integral(flow, params, lim=7.5, n=35):
    """Riemann sum of p and of |p - N(0, I)| over [-lim, lim]^4 (2x2x1 images), one jitted
    call per slab of the last coordinate."""
    xs = np.linspace(-lim, lim, n, dtype=np.float32)
    h = float(xs[1] - xs[0])
    g = jnp.asarray(np.stack(np.meshgrid(xs, xs, xs, indexing="ij"), -1).reshape(-1, 3))
    base = standard_normal((2, 2, 1))

    @jax.jit
    def slab(v):
        pts = jnp.concatenate([g, jnp.full((g.shape[0], 1), v)], -1).reshape(-1, 2, 2, 1)
        p = jnp.exp(flow.log_prob(params, pts))
        return jnp.sum(p), jnp.sum(jnp.abs(p - jnp.exp(base.log_prob((), pts))))

    sums = np.array([slab(v) for v in xs], np.float64).sum(axis=0) * h**4
    return sums[0], 0.5 * sums[1]


@pytest.mark.slow
def test_4d_glow_density_integrates_to_one():
    """2x2x1 images, one level, depth 3 (squeeze, 3 steps of ActNorm, LU 1x1 conv, affine
    coupling). Grid [-7.5, 7.5]^4 with 35 points per axis (h = 0.44; the sum is 1 - 3.8e-4 here,
    1 - 4.8e-4 at 41 points on [-7, 7]); |integral - 1| < 1e-3; the
    flow is far from its base (total variation > 0.2), so the check is not vacuous. (The split
    prior needs two squeezes, i.e. 4x4 images: it is checked against the autodiff change of
    variables below and against the explicit Gaussian in tests/bijectors/test_image.py.)"""
    flow = ff.glow((2, 2, 1), levels=1, depth=3, hidden=8)
    params = _perturb(_init(flow, (2, 2, 1)), jax.random.key(3), 0.15)
    integral, tv = _grid_integral(flow, params)
    assert abs(integral - 1.0) < 1e-3, integral
    assert tv > 0.2, tv


@pytest.fixture(scope="module")
def glow2():
    """Two-level Glow on 4x4x2 (squeeze, steps, split with prior, squeeze, steps); depth 5
    so the steps run in a lax.scan."""
    flow = ff.glow((4, 4, 2), levels=2, depth=5, hidden=8)
    params = _init(flow, (4, 4, 2))
    return flow, params, _perturb(params, jax.random.key(7), 0.05)


def _change_of_variables(bijector, params, x):
    """log N(f^{-1}(x); 0, I) + log|det J_{f^{-1}}(x)| with the Jacobian from jax.jacfwd."""
    shape = x.shape[1:]

    @jax.jit
    def single(xi):
        inv = lambda v: bijector.inverse(params, v.reshape(1, *shape))[0].ravel()
        z = inv(xi.ravel())
        logdet = jnp.linalg.slogdet(jax.jacfwd(inv)(xi.ravel()))[1]
        return -0.5 * jnp.sum(z**2) - 0.5 * z.size * math.log(2 * math.pi) + logdet

    return np.array([single(xi) for xi in x])


@pytest.mark.slow
def test_glow_log_prob_matches_change_of_variables(glow2, key):
    flow, _, params = glow2
    assert flow.event_shape == (4, 4, 2)
    x = 1.5 * jax.random.normal(key, (3, 4, 4, 2))
    bij = ff.glow_bijector((4, 4, 2), levels=2, depth=5, hidden=8)
    ref = _change_of_variables(bij, params["bijector"], x)
    lp = jax.jit(flow.log_prob)(params, x)
    np.testing.assert_allclose(lp, ref, rtol=1e-5, atol=2e-3)
    assert np.abs(lp - standard_normal((4, 4, 2)).log_prob((), x)).max() > 0.1  # not the base


@pytest.mark.slow
def test_realnvp_image_log_prob_matches_change_of_variables(key):
    flow = ff.realnvp_image((4, 4, 1), num_scales=2, hidden=8, num_blocks=0)
    assert flow.event_shape == (4, 4, 1)
    params = _perturb(_init(flow, (4, 4, 1)), jax.random.key(5), 0.1)
    x = 1.5 * jax.random.normal(key, (3, 4, 4, 1))
    bij = ff.realnvp_image_bijector((4, 4, 1), num_scales=2, hidden=8, num_blocks=0)
    ref = _change_of_variables(bij, params["bijector"], x)
    lp = jax.jit(flow.log_prob)(params, x)
    np.testing.assert_allclose(lp, ref, rtol=1e-5, atol=2e-3)
    # and it is not the base density: the couplings do something
    assert np.abs(lp - standard_normal((4, 4, 1)).log_prob((), x)).max() > 0.1


def test_samples_are_images_and_match_log_prob(glow2, key):
    flow, _, params = glow2
    sample = jax.jit(flow.sample_and_log_prob, static_argnums=2)
    x, lp = sample(params, key, 7)
    assert x.shape == (7, 4, 4, 2) and lp.shape == (7,)
    assert np.all(np.isfinite(x))
    # log_prob of the samples (normalizing direction) equals the sampling-side value
    np.testing.assert_allclose(jax.jit(flow.log_prob)(params, x), lp, rtol=1e-4, atol=1e-3)


def test_temperature_scales_the_latent_noise(glow2, key):
    """At init the flow is affine (identity couplings and priors), so with a fixed key
    x_T - x_0 = T (x_1 - x_0) exactly (atol 1e-4). Perturbed (nonlinear), the spread of
    x_T around x_0 still shrinks with T: ratio at T = 0.5 in (0.3, 0.75)."""
    flow, init_params, params = glow2
    sample = jax.jit(flow.sample, static_argnums=2)
    x0, xh, x1 = (sample(init_params, key, 64, temperature=t) for t in (0.0, 0.5, 1.0))
    assert not np.allclose(x1, x0, atol=1e-2)
    np.testing.assert_allclose(xh - x0, 0.5 * (x1 - x0), atol=1e-4)
    x0, xh, x1 = (sample(params, key, 256, temperature=t) for t in (0.0, 0.5, 1.0))
    ratio = float(jnp.std(xh - x0) / jnp.std(x1 - x0))
    assert 0.3 < ratio < 0.75, ratio


def test_builders_validate_shapes_and_arguments():
    with pytest.raises(ValueError, match="divisible"):
        ff.glow((28, 28, 1), levels=3, depth=2, hidden=4)  # 28 -> 14 -> 7: no third squeeze
    with pytest.raises(ValueError, match="realnvp_image"):
        ff.realnvp((8, 8, 1), 4)  # the vector builder refuses images and names the other one
    with pytest.raises(ValueError, match="one pixel"):
        ff.realnvp_image((2, 2, 1), num_scales=2)
    assert ff.realnvp(3).event_shape == (3,)
