"""The CFM loss: FM/CFM gradient identity, time sampling, labels and guidance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from flowzoo import flow_matching as fm
from flowzoo import paths


def linear_field(params, t, x, context=None):
    """v(t, x) = W [x, t, 1]: linear in the parameters, so per-sample gradients are cheap."""
    del context
    t = jnp.broadcast_to(t, x.shape[:1])
    feats = jnp.concatenate([x, t[:, None], jnp.ones_like(t)[:, None]], axis=-1)
    return feats @ params


def test_cfm_and_fm_gradients_agree(key):
    """Lipman et al. 2023, Thm 2: grad L_CFM == grad L_FM (the losses differ by a constant).

    Same samples (t, x0, x1) for both; the per-sample gradient difference
    2 (u_t(x_t) - u_t(x_t | x1)) [x_t, t, 1] has mean zero, checked to within 4 standard errors,
    at two parameter values. The loss difference is the same at both."""
    path = paths.cond_ot_path(0.05)
    data = jnp.array([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.0], [0.5, -1.5]])
    oracle = fm.marginal_velocity(path, data)
    n = 100_000
    k0, k1, kt, kp = jax.random.split(key, 4)
    x0 = jax.random.normal(k0, (n, 2))
    x1 = data[jax.random.randint(k1, (n,), 0, 4)]
    t = jax.random.uniform(kt, (n,), maxval=0.95)
    xt = path.sample_xt(x0, x1, t)
    u_cond, u_marg = path.velocity(x0, x1, t), oracle(t, xt)

    def per_sample(params, target):
        return jnp.sum((linear_field(params, t, xt) - target) ** 2, axis=-1)

    diffs = []
    for i in range(2):
        params = jax.random.normal(jax.random.fold_in(kp, i), (4, 2))
        # per-sample gradient differences in closed form (the model is linear)
        feats = jnp.concatenate([xt, t[:, None], jnp.ones((n, 1))], axis=-1)
        dg = 2 * feats[:, :, None] * (u_marg - u_cond)[:, None, :]  # grad_c - grad_m per sample
        mean, se = dg.mean(0), dg.std(0) / np.sqrt(n)
        assert bool(jnp.all(jnp.abs(mean) < 4 * se)), (mean, se)
        # autodiff through the two losses agrees with the closed form above
        grad_c = jax.grad(lambda p: per_sample(p, u_cond).mean())(params)
        grad_m = jax.grad(lambda p: per_sample(p, u_marg).mean())(params)
        np.testing.assert_allclose(grad_c - grad_m, mean, rtol=1e-3, atol=1e-4)
        diffs.append(per_sample(params, u_cond).mean() - per_sample(params, u_marg).mean())
    # the loss gap is parameter independent: equal up to the same mean-zero noise
    assert abs(float(diffs[0] - diffs[1])) < 0.05 * abs(float(diffs[0]))


def test_cfm_loss_gradient_matches_fm_gradient(key):
    """The library loss: its large-batch gradient equals the FM gradient (oracle target)."""
    path = paths.cond_ot_path()
    data = jnp.array([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.0]])
    oracle = fm.marginal_velocity(path, data)
    n = 200_000
    batch = data[jax.random.randint(key, (n,), 0, 3)]
    params = jnp.array([[0.5, 0.1], [-0.2, 0.3], [1.0, -1.0], [0.1, 0.2]])
    loss = fm.cfm_loss(linear_field, path, time_range=(0.0, 0.9))
    g_cfm = jax.grad(lambda p: loss(p, key, batch)[0])(params)

    def fm_loss(p, k):
        k0, kt = jax.random.split(k)
        x0 = jax.random.normal(k0, batch.shape)
        t = jax.random.uniform(kt, (n,), maxval=0.9)
        xt = path.sample_xt(x0, batch, t)
        return jnp.mean((linear_field(p, t, xt) - oracle(t, xt)) ** 2)

    g_fm = jax.grad(fm_loss)(params, jax.random.fold_in(key, 1))
    np.testing.assert_allclose(g_cfm, g_fm, atol=0.03 * float(jnp.abs(g_fm).max()))


def test_time_sampling(key):
    t = fm.sample_times(key, 20_000, "logit_normal", (0.0, 0.5))
    assert float(t.min()) > 0 and float(t.max()) < 0.5
    np.testing.assert_allclose(jnp.median(t), 0.25, atol=0.01)
    u = fm.sample_times(key, 20_000)
    np.testing.assert_allclose(u.mean(), 0.5, atol=0.01)
    with pytest.raises(ValueError, match="time_sampling"):
        fm.sample_times(key, 3, "beta")


def test_time_sampling_uniform_mixture_matches_its_cdf(key):
    """P(t > c) of f U(0,1) + (1-f) logit-normal(0,1) is f (1-c) + (1-f) Phi(-logit(c))."""
    f, n = 0.5, 200_000
    t = np.asarray(fm.sample_times(key, n, "logit_normal", uniform_fraction=f))
    for c in (0.02, 0.5, 0.95, 0.99):
        want = f * (1 - c) + (1 - f) * stats.norm.sf(np.log(c / (1 - c)))
        se = np.sqrt(want * (1 - want) / n)
        assert abs((t > c).mean() - want) < 5 * se, (c, (t > c).mean(), want)
    with pytest.raises(ValueError, match="uniform_fraction"):
        fm.sample_times(key, 3, "logit_normal", uniform_fraction=1.5)


def test_conditional_loss_label_dropout_and_guidance(key):
    seen = []

    def field(params, t, x, context=None):
        seen.append(context)
        return params * x + jnp.sum(context, -1, keepdims=True)

    loss = fm.cfm_loss(
        field,
        paths.cond_ot_path(),
        coupling=fm.exact_ot_coupling(),
        num_classes=3,
        label_dropout=0.5,
    )
    x1 = jax.random.normal(key, (300, 2))
    labels = jnp.arange(300) % 3
    value, aux = loss(jnp.float32(0.3), key, (x1, labels))
    assert np.isfinite(float(value)) and "target_sq" in aux
    ctx = seen[-1]
    assert ctx.shape == (300, 3)
    kept = float(ctx.sum(-1).mean())
    assert 0.4 < kept < 0.6  # half the labels dropped to the all-zero context
    # guidance: v_u + w (v_c - v_u); here v_c - v_u = 1 for every point
    x = jnp.zeros((4, 2))
    v = fm.guided_velocity(field, jnp.float32(1.0), 0.5, x, jnp.array([0, 1, 2, 0]), 3.0, 3)
    np.testing.assert_allclose(v, 3.0)
    v1 = fm.guided_velocity(
        field, jnp.float32(1.0), 0.5, x, jax.nn.one_hot(jnp.zeros(4, jnp.int32), 3), 1.0
    )
    np.testing.assert_allclose(v1, 1.0)


def test_network_rng_passes_a_fresh_key_and_leaves_the_other_draws(key):
    """``network_rng=True`` calls the network with ``rng=`` (a key that changes with the loss
    key); the loss's own draws (noise, times) are those of ``network_rng=False``, so a network
    that ignores the key gives the same loss either way."""
    path = paths.cond_ot_path(0.0)
    params = jax.random.normal(key, (4, 2))
    seen = []

    def keyed_field(params, t, x, context=None, *, rng):
        seen.append(rng)
        return linear_field(params, t, x, context)

    data = jax.random.normal(jax.random.key(1), (16, 2))
    plain = fm.cfm_loss(linear_field, path)(params, key, data)[0]
    keyed = fm.cfm_loss(keyed_field, path, network_rng=True)
    assert float(keyed(params, key, data)[0]) == float(plain)
    keyed(params, jax.random.key(7), data)
    k0, k1 = (jax.random.key_data(k) for k in seen)
    assert not np.array_equal(k0, k1)
