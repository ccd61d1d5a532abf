"""Image models: variational dequantization (a normalised q(u|x) whose -log q enters the
loss) and a short training run on digits that beats the full-covariance Gaussian."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowzoo import bijectors as bj
from flowzoo import data, flows
from flowzoo.flows import image_coupling_flow


def _perturb(params, key, scale=0.3):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    noisy = [a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, noisy)


def test_variational_dequantizer_is_a_normalised_density_on_the_unit_square(key):
    """q(u|x) for a 1x2x1 image: in (0, 1)^2, exact log q, integrates to 1 on a grid."""
    shape = (1, 2, 1)
    q = flows.variational_dequantizer(shape, num_layers=2, hidden=(8,))
    ctx = jnp.array([[[[0.3], [-0.2]]]])
    params = _perturb(q.init(key, jnp.full((1, *shape), 0.5), ctx), jax.random.fold_in(key, 1))
    log_q = jax.jit(lambda u: q.log_prob(params, u, jnp.repeat(ctx, len(u), axis=0)))
    u, lq = jax.jit(q.sample_and_log_prob, static_argnums=2)(
        params, key, 1000, jnp.repeat(ctx, 1000, axis=0)
    )
    assert u.shape == (1000, *shape) and float(u.min()) > 0.0 and float(u.max()) < 1.0
    np.testing.assert_allclose(lq, log_q(u), rtol=1e-4, atol=1e-4)
    n = 400  # midpoint rule on (0, 1)^2
    g = (jnp.arange(n) + 0.5) / n
    dens = jnp.exp(log_q(jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 1, 2, 1)))
    assert float(jnp.sum(dens) / n**2) == pytest.approx(1.0, abs=0.01)


@pytest.mark.slow
def test_variational_bound_includes_minus_log_q(key):
    shape, levels = (2, 2, 1), 17
    flow = image_coupling_flow(shape, 2, (8,))
    q = flows.variational_dequantizer(shape, num_layers=2, hidden=(8,))
    model = flows.dequantized(flow, levels, preprocess="logit", dequantizer=q)
    x = jax.random.randint(key, (6, *shape), 0, levels)
    params = _perturb(model.init(key, x), jax.random.fold_in(key, 2), 0.1)
    k = jax.random.fold_in(key, 3)
    lp = jax.jit(model.log_prob_estimate)(params, k, x)

    pre = data.logit_transform(0.05)
    density = flows.transformed(flow, bj.chain(pre, data.scale_transform(levels)))

    @jax.jit
    def by_hand(params):
        u, lq = q.sample_and_log_prob(params["dequantizer"], k, 6, x / levels - 0.5)
        return density.log_prob(params["density"], x + u) - lq

    np.testing.assert_allclose(lp, by_hand(params), rtol=1e-5, atol=1e-4)
    loss_fn = flows.nll_loss(model, bits_per_dim=True)
    loss, grads = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, k, x)[0]))(params)
    expected = -float(jnp.mean(by_hand(params))) / (4 * math.log(2))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["dequantizer"]))


def test_sample_returns_integer_levels(key):
    shape, levels = (4, 4, 1), 17
    model = flows.dequantized(image_coupling_flow(shape, 2, (8,)), levels, preprocess="shift")
    params = model.init(key, jnp.zeros((2, *shape)))
    x = jax.jit(model.sample, static_argnums=2)(params, key, 7, None, 0.7)
    assert x.shape == (7, *shape) and x.dtype == jnp.float32
    assert np.all(np.asarray(x) == np.floor(np.asarray(x)))
    assert float(x.min()) >= 0 and float(x.max()) <= levels - 1


def test_dequantized_rejects_wrong_image_shape(key):
    model = flows.dequantized(image_coupling_flow((4, 4, 1), 2, (8,)), 17)
    with pytest.raises(ValueError, match=r"expected an array of shape \(batch, 4, 4, 1\)"):
        model.init(key, jnp.zeros((2, 8, 8, 1)))


@pytest.mark.slow
def test_short_training_on_digits_beats_gaussian_baseline(key):
    """300 Adam steps of 8 checkerboard couplings (MLP conditioners) on dequantized digits.

    Measured: 2.22 bits/dim on the 300 held-out digits; the full-covariance Gaussian on the
    same split gets 2.95. Asserted: at least 0.3 bits/dim below the Gaussian.
    """
    d = data.image_dataset("digits")
    baseline = data.gaussian_bits_per_dim(d.train, d.test, d.levels)
    model = flows.dequantized(image_coupling_flow((8, 8, 1), 8, (256,)), d.levels)
    loss_fn = flows.nll_loss(model, bits_per_dim=True)
    params = model.init(key, jnp.asarray(d.train[:512]))
    opt = optax.adam(optax.cosine_decay_schedule(2e-3, 300, 0.05))
    batches = data.array_batches(d.train, 128)

    @jax.jit
    def run(params, state):
        def body(carry, step):
            params, state = carry
            batch = batches(jax.random.fold_in(key, 1), step)
            grad = jax.grad(lambda p: loss_fn(p, jax.random.fold_in(key, step), batch)[0])
            updates, state = opt.update(grad(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(body, (params, state), jnp.arange(300))[0]

    params, _ = run(params, opt.init(params))
    nll = -jnp.mean(jax.jit(model.log_prob_estimate)(params, jax.random.fold_in(key, 2), d.test))
    bpd = float(nll) / (64 * math.log(2))
    print(f"digits: {bpd:.3f} bits/dim after 300 steps (Gaussian {baseline:.3f})")
    assert bpd < baseline - 0.3, (bpd, baseline)
