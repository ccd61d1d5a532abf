"""i-ResNet blocks: Lipschitz bound, fixed-point inverse, power-series and roulette log-dets.

The round trip, log-det vs autodiff Jacobian and jit checks of the exact-log-det Bijector
run in the shared battery (``tests/bijectors/registry.py``: ``residual_block``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.bijectors import power_series_terms, residual_block

C = 0.9


@pytest.fixture(scope="module")
def block():
    blk = residual_block(2, (16, 16), lipschitz=C, num_terms=12)
    params = blk.bijector.init(jax.random.key(0), jnp.zeros((1, 2)))
    # scale weights up so the normalisation is active in every layer
    params = jax.tree.map(lambda p: 3.0 * p, params)
    z = jax.random.normal(jax.random.key(1), (3, 2))
    return blk, params, z


def jac_g(blk, params, z):
    return jax.vmap(jax.jacfwd(lambda v: blk.residual(params, v[None])[0]))(z)


def test_lipschitz_below_one(block):
    blk, params, z = block
    norms = np.asarray(blk.spectral_norms(params))
    assert np.all(norms <= C + 1e-5) and np.all(norms > C - 1e-3)  # capped, and active
    big = jax.random.normal(jax.random.key(2), (64, 2)) * 3
    sv = jnp.linalg.svd(jac_g(blk, params, big), compute_uv=False)[:, 0]
    assert float(jnp.max(sv)) <= C**3 + 1e-5  # three layers, each at most C
    power = residual_block(2, (16, 16), lipschitz=C, spectral="power", power_iterations=50)
    assert np.all(np.asarray(power.spectral_norms(params)) <= C + 1e-3)


def test_inverse_round_trip(block):
    blk, params, z = block
    x, ld = blk.bijector.forward(params, z)
    z_back, ld_inv = blk.bijector.inverse(params, x)
    np.testing.assert_allclose(z_back, z, atol=1e-5)
    np.testing.assert_allclose(ld, -ld_inv, atol=1e-5)


def exact_series(blk, params, z, num_terms):
    """Truncated power series with exact traces (probes = all basis vectors)."""
    jvp = lambda w: jax.jvp(lambda u: blk.residual(params, u), (z,), (w,))[1]
    eye = jnp.eye(z.shape[1], dtype=z.dtype)
    per_basis = jax.vmap(
        lambda e: power_series_terms(jvp, jnp.broadcast_to(e, z.shape), num_terms)
    )(eye)
    return jnp.sum(per_basis, axis=(0, 1))


def test_power_series_matches_slogdet_within_truncation_bound(block):
    blk, params, z = block
    _, exact = blk.bijector.forward(params, z)
    lip = float(jnp.max(jnp.linalg.svd(jac_g(blk, params, z), compute_uv=False)))
    for n in (4, 12):
        bound = z.shape[1] * lip ** (n + 1) / ((n + 1) * (1 - lip))
        err = np.abs(np.asarray(exact_series(blk, params, z, n) - exact))
        assert np.all(err <= bound + 1e-5), (n, err, bound)
    assert float(np.max(np.abs(exact_series(blk, params, z, 40) - exact))) < 1e-4


@pytest.mark.parametrize("estimator", ["series", "roulette"])
def test_stochastic_logdet_unbiased(block, estimator):
    # series: unbiased for the truncated series; roulette: for the exact log-det. 4 SE.
    _, params, z = block
    blk = residual_block(2, (16, 16), lipschitz=C, num_terms=12, estimator=estimator)
    target = exact_series(blk, params, z, 12) if estimator == "series" else None
    if target is None:
        target = blk.bijector.forward(params, z)[1]
    keys = jax.random.split(jax.random.key(7), 4000)
    est = jax.jit(jax.vmap(lambda k: blk.logdet_estimate(params, k, z)))(keys)
    se = np.std(est, axis=0) / np.sqrt(len(keys))
    assert np.all(np.std(est, axis=0) > 1e-3)
    np.testing.assert_array_less(np.abs(np.mean(est, axis=0) - target), 4 * se + 1e-4)
