"""Library boundary checks: bad arguments to flows and CNFs fail where they are passed, with
flowzoo's own ValueError/TypeError naming the argument, never an error from deep inside
JAX or flax. Property-based (hypothesis) over random shapes, dtypes and counts."""

from __future__ import annotations

import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowzoo import flow_matching, flows, nets, paths

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def models():
    """A RealNVP and a flow-matching CNF on 2-D points, with their params."""
    out = {}
    realnvp = flows.realnvp(2, 2, (8,))
    out["realnvp"] = (realnvp, realnvp.init(KEY, jnp.zeros((3, 2))))
    fm = flow_matching.distribution(nets.time_mlp((2,), (8,)), paths.cond_ot_path(), (2,))
    out["cnf"] = (fm, fm.init(KEY, jnp.zeros((3, 2))))
    return out


def _raised_by_flowzoo(err: BaseException) -> bool:
    """The error is a ValueError/TypeError raised in flowzoo's own code."""
    frames = traceback.extract_tb(err.__traceback__)
    return isinstance(err, ValueError | TypeError) and "/flowzoo/" in frames[-1].filename


_DTYPES = st.sampled_from(
    [np.float32, np.float16, np.float64, np.int32, np.uint8, np.bool_, np.complex64]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["realnvp", "cnf"]),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple),
    dtype=_DTYPES,
)
def test_log_prob_on_random_shapes_and_dtypes(models, name, shape, dtype):
    dist, params = models[name]
    x = np.zeros(shape, dtype)
    valid = len(shape) == 2 and shape[0] >= 1 and shape[1] == 2
    valid = valid and (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer))
    try:
        lp = dist.log_prob(params, jnp.asarray(x))
    except Exception as err:  # noqa: BLE001
        assert not valid, f"valid input refused: {err}"
        assert _raised_by_flowzoo(err), "".join(traceback.format_exception(err))
        return
    assert valid, f"invalid input {shape} {dtype} accepted"
    assert lp.shape == (shape[0],) and np.all(np.isfinite(np.asarray(lp)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["realnvp", "cnf"]),
    n=st.one_of(st.integers(-3, 3), st.floats(-2, 4), st.booleans(), st.just(None)),
    key=st.sampled_from(["key", "legacy", "int", "floats", "none"]),
)
def test_sample_on_random_counts_and_keys(models, name, n, key):
    dist, params = models[name]
    keys = {
        "key": KEY,
        "legacy": jax.random.PRNGKey(0),
        "int": 0,
        "floats": jnp.zeros(3),
        "none": None,
    }
    valid = isinstance(n, int) and not isinstance(n, bool) and n >= 1
    valid = valid and key in ("key", "legacy")
    try:
        x = dist.sample(params, keys[key], n)
    except Exception as err:  # noqa: BLE001
        assert not valid, f"valid input refused: {err}"
        assert _raised_by_flowzoo(err), "".join(traceback.format_exception(err))
        return
    assert valid, f"invalid input n={n!r} key={key} accepted"
    assert x.shape == (n, 2)


@pytest.mark.parametrize("name", ["realnvp", "cnf"])
def test_context_on_an_unconditional_model_and_foreign_params(models, name):
    dist, params = models[name]
    x = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="made without a context"):
        dist.log_prob(params, x, jnp.zeros((3, 4)))
    other = flows.realnvp(2, 3, (4,)).init(KEY, x)
    with pytest.raises(ValueError, match="params do not fit this model"):
        dist.log_prob(other, x)
    with pytest.raises(ValueError, match="params do not fit this model"):
        jax.jit(dist.log_prob)(other, x)  # also while tracing


def test_conditional_model_without_its_context():
    flow = flows.realnvp(2, 2, (8,))
    x, ctx = jnp.zeros((3, 2)), jnp.ones((3, 4))
    params = flow.init(KEY, x, ctx)
    assert flow.log_prob(params, x, ctx).shape == (3,)
    with pytest.raises(ValueError, match="made with a context"):
        flow.log_prob(params, x)


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: flows.realnvp(2, 2.5, (8,)), "num_layers must be an int"),
        (lambda: flows.realnvp(2, 0, (8,)), "num_layers must be >= 1"),
        (lambda: flows.realnvp(2, 2, 64), "hidden must be a sequence of layer widths"),
        (lambda: flows.realnvp(2, 2, (8, 0)), "hidden entries must be >= 1"),
        (lambda: flows.glow((8, 8, 1), 1.5, 2, 8), "levels must be an int"),
        (lambda: flows.realnvp_image((8, 8, 1), 2, [8]), "hidden .* must be an int"),
        (lambda: nets.time_mlp((2,), 32), "hidden must be a sequence"),
    ],
)
def test_builder_arguments(build, needle):
    with pytest.raises((TypeError, ValueError), match=needle):
        build()
