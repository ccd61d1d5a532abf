"""Densities of flows: normalisation on a grid, sampling consistency, closed forms."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowzoo as fz
from flowzoo import bijectors as bj
from flowzoo.distributions import diagonal_normal, standard_normal


def _perturb(params, key, scale):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)],
    )


def _grid(lim=10.0, n=801):
    xs = np.linspace(-lim, lim, n, dtype=np.float32)
    xx, yy = np.meshgrid(xs, xs)
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1)), float(xs[1] - xs[0])


def _assert_normalised_and_far_from_base(flow, params, min_tv, n=801):
    """Grid quadrature on [-10, 10]^2: integral within 1e-2 of 1, and total variation from
    the standard normal base above ``min_tv`` (so the check is not vacuous)."""
    pts, h = _grid(n=n)
    logp = jax.jit(flow.log_prob)(params, pts)
    integral = float(jnp.sum(jnp.exp(logp)) * h * h)
    assert abs(integral - 1.0) < 1e-2, integral
    base = standard_normal(2).log_prob((), pts)
    tv = 0.5 * float(jnp.sum(jnp.abs(jnp.exp(logp) - jnp.exp(base))) * h * h)
    assert tv > min_tv, tv


@pytest.fixture(scope="module")
def perturbed_flow():
    flow = fz.realnvp(2, 6, (32, 32))
    x = jax.random.normal(jax.random.key(1), (64, 2))
    params = _perturb(flow.init(jax.random.key(2), x), jax.random.key(3), 0.05)
    return flow, params


@pytest.mark.slow
def test_perturbed_realnvp_density_integrates_to_one(perturbed_flow):
    _assert_normalised_and_far_from_base(*perturbed_flow, min_tv=0.1)


@pytest.mark.slow
def test_conditional_density_integrates_to_one_for_each_context():
    flow = fz.realnvp(2, 4, (16,))
    ctx = jnp.array([[-1.0, 0.5], [2.0, 1.0]])
    x0 = jax.random.normal(jax.random.key(0), (2, 2))
    params = _perturb(flow.init(jax.random.key(1), x0, ctx), jax.random.key(2), 0.05)
    pts, h = _grid()
    dens = []
    for c in ctx:
        logp = flow.log_prob(params, pts, jnp.broadcast_to(c, (pts.shape[0], 2)))
        dens.append(jnp.exp(logp))
        assert abs(float(jnp.sum(dens[-1]) * h * h) - 1.0) < 1e-2
    assert float(jnp.max(jnp.abs(dens[0] - dens[1]))) > 1e-2  # the context matters


def test_sample_and_log_prob_agrees_with_log_prob(perturbed_flow, key):
    flow, params = perturbed_flow
    x, lp = flow.sample_and_log_prob(params, key, 500)
    assert x.shape == (500, 2) and lp.shape == (500,)
    np.testing.assert_allclose(lp, flow.log_prob(params, x), atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(flow.sample(params, key, 500), x, atol=1e-6)


@pytest.mark.slow
def test_samples_follow_the_density(perturbed_flow, key):
    """Monte-Carlo check: E_samples[f] equals the grid integral of f p for f = x, x^2."""
    flow, params = perturbed_flow
    x = flow.sample(params, key, 40000)
    pts, h = _grid()
    p = jnp.exp(flow.log_prob(params, pts)) * h * h
    for f in (lambda v: v, lambda v: v**2):
        mc = jnp.mean(f(x), axis=0)
        ref = jnp.sum(f(pts) * p[:, None], axis=0)
        se = jnp.std(f(x), axis=0) / math.sqrt(x.shape[0])
        assert np.all(np.abs(mc - ref) < 5 * se + 1e-3), (mc, ref, se)


def test_temperature_scales_base_noise(key):
    flow = fz.realnvp(2, 2, (8,))
    params = flow.init(key, jnp.zeros((4, 2)))  # identity at init: samples are base noise
    cold = flow.sample(params, key, 20000, temperature=0.5)
    np.testing.assert_allclose(jnp.std(cold, axis=0), 0.5, atol=0.02)
    x, lp = flow.sample_and_log_prob(params, key, 100, temperature=0.5)
    np.testing.assert_allclose(lp, flow.log_prob(params, x), atol=1e-5)


def test_diagonal_normal_matches_closed_form(key):
    dist = diagonal_normal(3)
    params = {"loc": jnp.array([0.5, -1.0, 2.0]), "log_scale": jnp.array([0.0, 0.3, -0.7])}
    x = jax.random.normal(key, (10, 3))
    sd = np.exp(np.asarray(params["log_scale"]))
    ref = np.sum(
        -0.5 * ((np.asarray(x) - np.asarray(params["loc"])) / sd) ** 2
        - np.log(sd)
        - 0.5 * np.log(2 * np.pi),
        axis=1,
    )
    np.testing.assert_allclose(dist.log_prob(params, x), ref, rtol=1e-5, atol=1e-5)
    s = dist.sample(params, key, 50000)
    np.testing.assert_allclose(jnp.mean(s, 0), params["loc"], atol=0.03)
    np.testing.assert_allclose(jnp.std(s, 0), sd, rtol=0.02)


def test_transformed_affine_gives_gaussian_closed_form(key):
    """standard normal pushed through x = z * s + b is N(b, s^2)."""
    flow = fz.transformed(
        standard_normal(2), bj.fixed_affine(jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0]))
    )
    x = jax.random.normal(key, (7, 2))
    ref = diagonal_normal(2).log_prob(
        {"loc": jnp.array([1.0, -2.0]), "log_scale": jnp.log(jnp.array([0.5, 3.0]))}, x
    )
    np.testing.assert_allclose(flow.log_prob((flow.init(key, x)), x), ref, rtol=1e-6, atol=1e-6)


def test_shape_errors_are_clear(perturbed_flow, key):
    flow, params = perturbed_flow
    with pytest.raises(ValueError, match=r"expected an array of shape \(batch, 2\)"):
        flow.log_prob(params, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="context has leading size"):
        flow.sample(params, key, 5, context=jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="models vectors"):
        fz.realnvp((4, 4))  # neither a vector nor an (H, W, C) image
    with pytest.raises(ValueError, match="mask must keep some entries"):
        bj.affine_coupling(np.ones(3, bool))
    with pytest.raises(ValueError, match="unknown scale kind"):
        bj.affine_coupling(bj.half_mask(4), scale="cube")


@pytest.mark.slow
@pytest.mark.parametrize(
    "build",
    [
        lambda: fz.realnvp(2, 4, (16,), transformer="spline"),
        lambda: fz.flows.maf(2, 3, (16,), transformer="spline"),
        lambda: fz.flows.iaf(2, 3, (16,)),
    ],
    ids=["spline_realnvp", "spline_maf", "iaf"],
)
def test_spline_and_autoregressive_densities_integrate_to_one(build):
    """Grid quadrature on [-10, 10]^2 (step 0.05): the spline's identity tails and the
    autoregressive log-dets must give a normalised density far from the base."""
    flow = build()
    x = jax.random.normal(jax.random.key(1), (64, 2))
    params = _perturb(flow.init(jax.random.key(2), x), jax.random.key(3), 0.1)
    _assert_normalised_and_far_from_base(flow, params, min_tv=0.05, n=401)
