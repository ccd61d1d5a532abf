"""Score SDEs on images: the UNet ``score_sde`` recipe on quantised images, and the
probability-flow ODE likelihood on a 2x2x1 image against the exact Gaussian density.

SDE time convention: t=0 data, t=T noise.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.integrate import ode_log_prob
from flowzoo.metrics import bits_per_dim
from flowzoo.paths import probability_flow, vp_sde
from flowzoo.score import log_time
from flowzoo.zoo import build_model, default_config

LEVELS = 17
SHAPE = (4, 4, 1)


def _config(**model):
    config = default_config()
    config["model"] = {
        "name": "score_sde",
        "sde": "vp",
        "net": "unet",
        "channels": [4, 8],
        "embed_dim": 8,
        "sample_steps": 2,
        "data_levels": LEVELS,
        "log_prob_eps": 1e-3,
        "log_prob_time": "log",
        "log_prob_solver": "rk4",
        "log_prob_steps": 1,
        "log_prob_chunk": 4,
        **model,
    }
    return config


@pytest.mark.slow
def test_image_score_sde_trains_and_gives_finite_bits_per_dim(key):
    model = build_model(_config(), SHAPE)
    x = jax.random.randint(key, (8, *SHAPE), 0, LEVELS).astype(jnp.float32)
    params = model.init(key, x)
    step = jax.jit(jax.value_and_grad(lambda p, k: model.loss(p, k, x)[0]))
    for i in range(3):
        value, grads = step(params, jax.random.fold_in(key, i))
        params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
        assert np.isfinite(float(value))
    logp = jax.jit(model.distribution.log_prob)(params, x[:5])
    assert logp.shape == (5,)
    assert bool(jnp.all(jnp.isfinite(bits_per_dim(logp, math.prod(SHAPE), LEVELS))))
    samples = jax.jit(lambda p, k: model.sample(p, k, 3))(params, key)  # predictor-corrector
    assert samples.shape == (3, *SHAPE)
    assert float(samples.min()) >= 0 and float(samples.max()) <= LEVELS - 1


@pytest.mark.slow
def test_image_score_sde_samples_with_its_predictor_corrector_sampler(key):
    """``model.sample`` on images runs the predictor-corrector sampler of ``sample_steps``,
    as on vectors (the density's probability-flow ODE, which ignores ``sample_steps``, gave
    the same images at 1 and 3 steps)."""
    models = [build_model(_config(sample_steps=s), SHAPE) for s in (1, 3)]
    x = jax.random.randint(key, (8, *SHAPE), 0, LEVELS).astype(jnp.float32)
    params = models[0].init(key, x)
    one, three = (np.asarray(jax.jit(m.sample, static_argnums=2)(params, key, 16)) for m in models)
    assert one.shape == three.shape == (16, *SHAPE)
    assert not np.array_equal(one, three)


# Gaussian data x0 ~ N(mu, s^2 I) on 2x2x1 images: under the VP SDE the marginal at t is
# N(a(t) mu, (a(t)^2 s^2 + sigma(t)^2) I), a(t) = marginal mean coefficient.
MU = jnp.array([0.5, -1.0, 0.25, 2.0]).reshape(1, 2, 2, 1)
S = 0.3


def _marginal(sde, t):
    a = sde.marginal(jnp.ones((1,)), jnp.asarray(t))[0][0]
    sigma = sde.marginal(jnp.ones((1,)), jnp.asarray(t))[1]
    return a, a**2 * S**2 + sigma**2


def _gauss_log_prob(x, mean, var):
    r = (x - mean).reshape(x.shape[0], -1)
    return -0.5 * jnp.sum(r**2, 1) / var - 0.5 * r.shape[1] * jnp.log(2 * jnp.pi * var)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("time_change", "divergence", "solver", "steps", "atol"),
    [
        ("linear", "exact", "tsit5", None, 2e-3),
        ("log", "exact", "rk4", 16, 2e-3),
        ("log", "hutchinson", "rk4", 16, 2e-3),  # isotropic Jacobian: Rademacher is exact
    ],
)
def test_pf_ode_log_prob_of_exact_gaussian_score(key, time_change, divergence, solver, steps, atol):
    sde = vp_sde()
    eps = 1e-3

    def score(t, x):
        a, var = _marginal(sde, t)
        return -(x - a * MU) / var

    x = MU + S * jax.random.normal(key, (5, 2, 2, 1))
    a_eps, var_eps = _marginal(sde, eps)
    want = _gauss_log_prob(x, a_eps * MU, var_eps)
    a_T, var_T = _marginal(sde, sde.T)
    field = probability_flow(sde, score)
    t_data, t_base = eps, sde.T
    if time_change == "log":
        field, t_data, t_base = log_time(field, eps, sde.T), 0.0, 1.0
    out = ode_log_prob(
        field,
        x,
        t_data=t_data,
        t_base=t_base,
        base_log_prob=lambda z: _gauss_log_prob(z, a_T * MU, var_T),  # exact marginal at T
        divergence=divergence,
        key=key,
        num_probes=2,
        solver=solver,
        num_steps=steps,
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(out.log_prob, want, atol=atol)
    # with the SDE's N(0, I) prior the error is the prior mismatch at T only (a(T) ~ 7e-3)
    prior = ode_log_prob(
        field,
        x,
        t_data=t_data,
        t_base=t_base,
        base_log_prob=sde.prior_log_prob,
        divergence="exact",
        solver=solver,
        num_steps=steps,
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(prior.log_prob, want, atol=0.05)
