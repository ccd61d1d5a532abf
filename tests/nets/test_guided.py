"""``nets.guided``: the combination ``guide + w (main - guide)`` and its use as a CNF field."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import flow_matching, nets, paths
from flowzoo.integrate import SolverConfig


def _linear(name: str) -> nets.Network:
    """The field ``v(t, x) = a x`` with a scalar parameter ``a``."""
    return nets.Network(
        lambda key, t, x, context=None: {name: jnp.asarray(0.0)},
        lambda p, t, x, context=None: p[name] * x,
    )


@pytest.mark.parametrize("weight", [0.0, 1.0, 2.5, -0.5])
def test_guided_is_the_linear_extrapolation(key, weight):
    main = nets.time_mlp((3,), (16,), embed_dim=8)
    guide = nets.time_mlp((3,), (8,), embed_dim=8)
    net = nets.guided(main, guide, weight)
    x = jax.random.normal(key, (5, 3))
    params = net.init(key, 0.3, x)
    assert set(params) == {"main", "guide"}
    vm = main.apply(params["main"], 0.3, x)
    vg = guide.apply(params["guide"], 0.3, x)
    assert not np.allclose(vm, vg, atol=1e-3)  # the two fields differ, so the test can fail
    np.testing.assert_allclose(net.apply(params, 0.3, x), vg + weight * (vm - vg), atol=1e-6)
    if weight == 1.0:
        np.testing.assert_allclose(net.apply(params, 0.3, x), vm, atol=1e-6)


def test_guided_init_draws_independent_params(key):
    net_ = nets.time_mlp((2,), (8,), embed_dim=4)
    params = nets.guided(net_, net_, 2.0).init(key, 0.0, jnp.zeros((2, 2)))
    a, b = (jax.tree.leaves(params[k])[-1] for k in ("main", "guide"))
    assert not np.allclose(a, b)


def test_guided_refuses_bad_input(key):
    main, guide = _linear("a"), _linear("b")
    with pytest.raises(ValueError, match="finite"):
        nets.guided(main, guide, float("nan"))
    net = nets.guided(main, guide, 2.0)
    with pytest.raises(ValueError, match="'main' and 'guide'"):
        net.apply({"a": 1.0}, 0.0, jnp.ones((2, 2)))
    wide = nets.Network(main.init, lambda p, t, x, context=None: jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="differ in shape"):
        nets.guided(wide, guide, 2.0).apply(
            {"main": {}, "guide": {"b": 1.0}}, 0.0, jnp.ones((2, 2))
        )


def test_guided_field_as_a_cnf_matches_the_closed_form():
    """Linear fields ``a x`` and ``b x`` guided with weight w: ``x' = c x``, c = b + w (a - b),
    so the CNF from N(0, I) at t=0 to t=1 is N(0, e^{2c} I); RK4 with 32 steps is exact to
    ~1e-9 relative for |c| < 1."""
    a, b, w = 0.4, -0.3, 2.0
    c = b + w * (a - b)
    field = nets.guided(_linear("a"), _linear("b"), w)
    dist = flow_matching.distribution(
        field, paths.cond_ot_path(), 2, log_prob_solver=SolverConfig("rk4", 32)
    )
    params = {"main": {"a": jnp.asarray(a)}, "guide": {"b": jnp.asarray(b)}}
    x = jnp.array([[0.3, -1.2], [2.0, 0.5], [0.0, 0.0]])
    want = jax.scipy.stats.norm.logpdf(x, scale=np.exp(c)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(params, x), want, rtol=1e-5, atol=1e-5)
    xs = dist.sample(params, jax.random.key(0), 4000)
    np.testing.assert_allclose(jnp.std(xs), np.exp(c), rtol=0.05)  # 4000 draws: ~1.1% s.e.
