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
# the same transformers by name through the one resolver, bijectors.transformer
OPTIONS = {
    "affine": {"scale": "sigmoid", "scale_bound": 2.0, "orientation": "sampling"},
    "additive": {"orientation": "sampling"},
    "spline": {"num_bins": 5, "bound": 3.0},
}
DIRECT = {
    "affine": lambda: bj.affine_transformer("sigmoid", 2.0, orientation="sampling"),
    "additive": lambda: bj.affine_transformer(additive=True, orientation="sampling"),
    "spline": TRANSFORMERS["spline"],
}
TRANSFORMERS.update(
    {f"named_{n}": (lambda n=n: bj.transformer(n, **OPTIONS[n])) for n in bj.TRANSFORMERS}
)


@pytest.mark.slow
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


@pytest.mark.parametrize("name", bj.TRANSFORMERS)
def test_transformer_by_name_is_the_builders_transformer(name):
    """``bijectors.transformer(name, **options)`` builds what the named builder builds with
    those options (bit for bit), and without options what it builds by default."""
    assert sorted(OPTIONS) == sorted(bj.TRANSFORMERS)
    x = jax.random.normal(jax.random.key(0), (16,))
    named, direct = bj.transformer(name, **OPTIONS[name]), DIRECT[name]()
    assert named.num_params == direct.num_params
    params = tuple(0.3 * (i + 1) * jnp.ones_like(x) for i in range(direct.num_params))
    for a, b in zip(named.forward(params, x), direct.forward(params, x), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(named.inverse(params, x), direct.inverse(params, x), strict=True):
        np.testing.assert_array_equal(a, b)
    default = {"affine": bj.affine_transformer(), "spline": bj.spline_transformer()}
    if name in default:
        assert bj.transformer(name).num_params == default[name].num_params


def test_transformer_resolver_refuses_what_it_cannot_build():
    tr = bj.spline_transformer(4, 2.0)
    assert bj.transformer(tr) is tr
    with pytest.raises(TypeError, match="apply to a name"):
        bj.transformer(tr, num_bins=4)
    with pytest.raises(ValueError, match="unknown transformer 'cubic'"):
        bj.transformer("cubic")
    with pytest.raises(TypeError, match=r"takes the options \['num_bins', 'bound'\]"):
        bj.transformer("spline", scale_bound=2.0)


def test_flow_builders_pass_transformer_options_to_the_resolver():
    """``transformer_options`` reach the couplings of RealNVP and MAF: the conditioners'
    parameter count is affine in the spline's ``3 * num_bins - 1`` params per entry, so 4,
    7 and the default 8 bins (11, 20, 23 params) give counts with differences in ratio 12:3."""
    from flowzoo.flows import autoregressive_bijector, realnvp_bijector

    x = jnp.zeros((2, 3))

    def n_params(build, **options):  # shapes only: nothing is computed
        bijector = build(3, 2, (8,), transformer="spline", transformer_options=options or None)
        shapes = jax.eval_shape(bijector.init, jax.random.key(0), x)
        return sum(a.size for a in jax.tree.leaves(shapes))

    for build in (realnvp_bijector, autoregressive_bijector):
        n4, n7, n8 = n_params(build, num_bins=4), n_params(build, num_bins=7), n_params(build)
        assert n4 < n7 < n8 and n8 - n4 == 4 * (n8 - n7)
    with pytest.raises(TypeError, match="num_bins"):
        realnvp_bijector(3, 2, (8,), transformer_options={"num_bins": 4})
