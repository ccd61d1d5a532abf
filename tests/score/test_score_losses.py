"""Score-matching losses: minimisers, agreement in expectation, contrastive divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flowzoo.nets import mlp
from flowzoo.paths import bcast, vp_sde
from flowzoo.score import (
    cd_loss,
    dsm_loss,
    exact_score_matching_loss,
    geometric_sigmas,
    ncsn_loss,
    sde_dsm_loss,
    sliced_score_matching_loss,
)
from flowzoo.train import persistent_cd

DATA_STD = 0.7


def _data(key, n=20000):
    return DATA_STD * jax.random.normal(key, (n, 2))


def _argmin_scale(loss, key, batch, scales):
    vals = [float(loss(a, key, batch)[0]) for a in scales]
    return scales[int(np.argmin(vals))]


def test_dsm_minimised_by_analytic_score(key):
    sigma = 0.5
    var = DATA_STD**2 + sigma**2  # the noised data is N(0, var I): score -x / var
    loss = jax.jit(dsm_loss(lambda a, x: -a * x / var, sigma))
    scales = np.linspace(0.8, 1.2, 21)
    assert abs(_argmin_scale(loss, key, _data(jax.random.fold_in(key, 99)), scales) - 1.0) < 0.03


def test_ncsn_and_sde_dsm_minimised_by_analytic_score(key):
    sigmas = geometric_sigmas(2.0, 0.1, 8)
    ncsn = jax.jit(ncsn_loss(lambda a, s, x: -a * x / bcast(DATA_STD**2 + s**2, x), sigmas))
    scales = np.linspace(0.8, 1.2, 21)
    assert abs(_argmin_scale(ncsn, key, _data(jax.random.fold_in(key, 99)), scales) - 1.0) < 0.03
    sde = vp_sde()

    def exact(a, t, x):
        mean_coeff, std = sde.marginal(jnp.ones_like(x), t)
        return -a * x / (mean_coeff**2 * DATA_STD**2 + bcast(std**2, x))

    for lw in (False, True):
        loss = jax.jit(sde_dsm_loss(exact, sde, t_min=1e-3, likelihood_weighting=lw))
        assert (
            abs(_argmin_scale(loss, key, _data(jax.random.fold_in(key, 99)), scales) - 1.0) < 0.05
        )


def test_sliced_and_exact_score_matching_agree(key):
    net = mlp(2, (16,), "tanh")
    x = jax.random.normal(key, (256, 2))
    params = net.init(jax.random.key(1), x)
    exact = float(exact_score_matching_loss(net.apply)(params, key, x)[0])
    for vr in (True, False):
        loss = jax.jit(
            sliced_score_matching_loss(net.apply, num_projections=64, variance_reduced=vr)
        )
        vals = np.array([float(loss(params, jax.random.key(i), x)[0]) for i in range(8)])
        assert abs(vals.mean() - exact) < 4 * vals.std() / np.sqrt(len(vals)) + 0.01 * abs(exact)


def test_exact_score_matching_minimised_by_true_score(key):
    loss = exact_score_matching_loss(lambda a, x: -a * x / DATA_STD**2)
    assert (
        abs(
            _argmin_scale(
                jax.jit(loss), key, _data(jax.random.fold_in(key, 99)), np.linspace(0.8, 1.2, 21)
            )
            - 1
        )
        < 0.03
    )


def test_cd_gradient_vanishes_at_the_data_distribution(key):
    energy = lambda v, x: 0.5 * jnp.sum(x**2, 1) / v  # N(0, v I)
    loss = cd_loss(energy, num_steps=20, step_size=0.01, alpha=0.0)
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (8192, 2))
    neg = jax.random.normal(kn, (8192, 2))  # chains started at the model (v=1) stay there
    g1 = jax.grad(lambda v: loss(v, key, (x, neg))[0])(1.0)
    assert abs(float(g1)) < 0.05
    # the short-run (noise-initialised) form runs and reports its metrics
    val, metrics = jax.jit(loss)(1.0, key, x)
    assert np.isfinite(val) and set(metrics) >= {"cd", "e_data", "e_model"}


def test_persistent_cd_step_updates_buffer(key):
    net = mlp(1, (16,), "silu")
    energy = lambda p, x: net.apply(p, x)[:, 0]
    x = jax.random.normal(key, (64, 2))
    pcd = persistent_cd(energy, optax.adam(1e-3), num_steps=5, step_size=0.01)
    state = pcd.init(net.init(key, x), key, 256, (2,))
    new, metrics = jax.jit(pcd.step)(state, jax.random.key(3), x)
    assert new.buffer.shape == (256, 2) and int(new.train_state.step) == 1
    assert int(jnp.sum(jnp.any(new.buffer != state.buffer, 1))) > 0
    assert np.isfinite(float(metrics["loss"]))


def test_sde_dsm_network_rng_passes_a_fresh_key_and_leaves_the_other_draws(key):
    """``network_rng=True`` calls the score network with ``rng=`` (a key that changes with
    the loss key); the loss's own draws (times, noise) are those of ``network_rng=False``, so
    a network that ignores the key gives the same loss either way."""
    sde = vp_sde()
    seen = []

    def score(a, t, x):
        return -a * x

    def keyed(a, t, x, *, rng):
        seen.append(rng)
        return score(a, t, x)

    data = _data(jax.random.fold_in(key, 3), 64)
    plain = sde_dsm_loss(score, sde)(0.5, key, data)[0]
    loss = sde_dsm_loss(keyed, sde, network_rng=True)
    assert float(loss(0.5, key, data)[0]) == float(plain)
    loss(0.5, jax.random.key(7), data)
    k0, k1 = (jax.random.key_data(k) for k in seen)
    assert not np.array_equal(k0, k1)
