"""Elementwise transformers: round trip, elementwise log-derivative against autodiff, and
the identity at zero parameters, for every affine scale kind and the spline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as bj

TRANSFORMERS = {
    **{
        f"affine_{k}": (lambda k=k: bj.affine_transformer(k, 2.0))
        for k in ("tanh", "sigmoid", "softplus", "exp")
    },
    "additive": lambda: bj.affine_transformer(additive=True),
    "spline": lambda: bj.spline_transformer(5, 3.0),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_transformer_round_trip_log_derivative_and_identity(name):
    tr = TRANSFORMERS[name]()
    key_x, key_p = jax.random.split(jax.random.key(0))
    x = 1.5 * jax.random.normal(key_x, (64,))
    params = tuple(jax.random.normal(k, (64,)) for k in jax.random.split(key_p, tr.num_params))
    y, ld = tr.forward(params, x)
    x_back, ld_inv = tr.inverse(params, y)
    np.testing.assert_allclose(x_back, x, atol=2e-5)
    np.testing.assert_allclose(ld_inv, -ld, atol=2e-5)
    dydx = jax.vmap(jax.grad(lambda v, *p: tr.forward(p, v)[0]))(x, *params)
    np.testing.assert_allclose(ld, jnp.log(jnp.abs(dydx)), atol=2e-5)
    zeros = tuple(jnp.zeros_like(p) for p in params)
    y0, ld0 = tr.forward(zeros, x)
    np.testing.assert_allclose(y0, x, atol=1e-6)
    np.testing.assert_allclose(ld0, 0.0, atol=1e-6)


def test_unknown_scale_kind_names_the_choices():
    with pytest.raises(ValueError, match="softplus"):
        bj.affine_transformer("cube")
