"""The rational-quadratic spline against its defining properties (Durkan et al. 2019).

Independent references: the knots it must interpolate, the knot derivatives (autodiff of
the forward map), a bisection inverse, and the identity outside ``[-B, B]``. Float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as bj
from flowzoo.bijectors._spline import _derivatives, _knots

B = 3.0


@pytest.fixture
def params():
    with jax.enable_x64(True):
        ks = jax.random.split(jax.random.key(7), 3)
        yield tuple(
            2.0 * jax.random.normal(k, (n,), jnp.float64)
            for k, n in zip(ks, (6, 6, 5), strict=True)
        )


@jax.jit(static_argnames="inverse")  # compiled once per shape: eager ops compile one by one
def _f(x, p, inverse=False):
    n = x.shape[0]
    w, h, d = (jnp.broadcast_to(a, (n, a.shape[0])) for a in p)
    return bj.rq_spline(x, w, h, d, B, inverse=inverse)


def test_interpolates_knots_with_the_given_derivatives(params):
    with jax.enable_x64(True):
        xk, _ = _knots(params[0], B)
        yk, _ = _knots(params[1], B)
        y, log_d = _f(xk[1:-1], params)  # interior knots (the ends are the tail boundary)
        np.testing.assert_allclose(y, yk[1:-1], atol=1e-12)
        np.testing.assert_allclose(jnp.exp(log_d), _derivatives(params[2])[1:-1], rtol=1e-10)
        dydx = jax.jit(jax.vmap(jax.grad(lambda v: _f(v[None], params)[0][0])))(xk[1:-1])
        np.testing.assert_allclose(dydx, _derivatives(params[2])[1:-1], rtol=1e-8)


def test_inverse_matches_bisection_and_tails_are_identity(params):
    with jax.enable_x64(True):
        y = jnp.linspace(-4.0, 4.0, 401)
        x, log_inv = _f(y, params, inverse=True)
        lo, hi = jnp.full_like(y, -5.0), jnp.full_like(y, 5.0)
        for _ in range(80):  # bisection on the monotone forward map
            mid = 0.5 * (lo + hi)
            above = _f(mid, params)[0] > y
            lo, hi = jnp.where(above, lo, mid), jnp.where(above, mid, hi)
        np.testing.assert_allclose(x, 0.5 * (lo + hi), atol=1e-10)
        _, log_fwd = _f(x, params)
        np.testing.assert_allclose(log_inv, -log_fwd, atol=1e-10)
        out = jnp.abs(y) >= B
        np.testing.assert_array_equal(x[out], y[out])
        np.testing.assert_array_equal(log_inv[out], 0.0)


def test_zero_params_are_the_identity_and_the_map_is_monotone(params):
    with jax.enable_x64(True):
        x = jnp.linspace(-5.0, 5.0, 2001)
        zeros = tuple(jnp.zeros_like(p) for p in params)
        y0, ld0 = _f(x, zeros)
        np.testing.assert_allclose(y0, x, atol=1e-12)
        np.testing.assert_allclose(ld0, 0.0, atol=1e-12)
        y, _ = _f(x, params)
        assert bool(jnp.all(jnp.diff(y) > 0))


def test_bad_parameter_counts_and_arguments_are_refused():
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match="K - 1"):
        bj.rq_spline(x, jnp.zeros((3, 4)), jnp.zeros((3, 4)), jnp.zeros((3, 4)), 1.0)
    with pytest.raises(ValueError, match="num_bins must be >= 2"):
        bj.spline_transformer(1)
    with pytest.raises(ValueError, match="bound must be > 0"):
        bj.spline_transformer(8, 0.0)


def test_image_couplings_and_realnvp_take_the_spline_transformer():
    """The ``transformer=`` arguments reach the couplings: a perturbed spline channel
    coupling and a spline RealNVP round-trip and differ from their affine versions (their
    log-dets are checked by the battery's spline entries, which share the code path)."""
    from flowzoo.flows import realnvp_bijector

    tr = bj.spline_transformer(4, 2.0)
    x = 0.5 * jax.random.normal(jax.random.key(0), (3, 2, 2, 2))
    conv = bj.resnet_conditioner(hidden=4, num_blocks=0)
    for make in (bj.channel_coupling, bj.checkerboard_coupling):
        layer = make((2, 2, 2), 0, conv, transformer=tr)

        @jax.jit  # one compiled program: eager dispatch compiles every small op on its own
        def round_trip(x, layer=layer):
            p = layer.init(jax.random.key(1), x)
            p = jax.tree.map(lambda a: a + 0.3 * jnp.ones_like(a), p)
            y, ld = layer.forward(p, x)
            return y, ld, layer.inverse(p, y)[0]

        y, ld, x_back = round_trip(x)
        np.testing.assert_allclose(x_back, x, atol=1e-5)
        assert float(jnp.max(jnp.abs(y - x))) > 1e-3 and ld.shape == (3,)

    def n_params(flow):  # shapes only: nothing is computed
        shapes = jax.eval_shape(flow.init, jax.random.key(2), x.reshape(3, -1)[:, :3])
        return sum(a.size for a in jax.tree.leaves(shapes))

    assert n_params(realnvp_bijector(3, 2, (8,), transformer="spline")) > n_params(
        realnvp_bijector(3, 2, (8,))
    )
    with pytest.raises(ValueError, match="unknown transformer"):
        realnvp_bijector(3, 2, (8,), transformer="cubic")
