"""``nets.GroupNorm`` against ``flax.linen.GroupNorm``: same parameters, same function.

Reference: flax's ``GroupNorm(num_groups)`` (both at their defaults, epsilon 1e-6) with the
same ``scale`` and ``bias`` (drawn at random, not the ones and zeros of the
initialisation), on standard normal inputs given per-channel offsets of order 1 and scales
between 1 and 2, where both compute ``E[x^2] - E[x]^2`` in float32. Tolerances: values
within 2e-5 (outputs are of order 1), gradients with respect to the input and both
parameters within 1e-4 of their largest entry.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import nets

CASES = [  # shape, groups: images, a 1-D signal with 6 channels per group, no positions
    ((2, 5, 7, 64), 32),
    ((3, 6, 48), 8),
    ((4, 12), 4),
]


def _params(c, seed):
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "scale": jnp.asarray(1.0 + 0.3 * rng.standard_normal(c), jnp.float32),
            "bias": jnp.asarray(0.3 * rng.standard_normal(c), jnp.float32),
        }
    }


@pytest.mark.slow
@pytest.mark.parametrize("shape,groups", CASES)
def test_matches_flax_values_and_gradients(shape, groups):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    # per-channel offsets and scales, so the groups differ
    c = shape[-1]
    lead = (1,) * (len(shape) - 1)
    x = x * jnp.asarray(1.0 + rng.random(c), jnp.float32).reshape(*lead, c)
    x = x + jnp.asarray(rng.standard_normal(c), jnp.float32).reshape(*lead, c)
    params = _params(shape[-1], 1)
    ours, ref = nets.GroupNorm(groups), nn.GroupNorm(num_groups=groups)  # defaults too
    init = jax.eval_shape(ours.init, jax.random.key(0), x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), init) == jax.tree.map(
        lambda a: (a.shape, a.dtype), jax.eval_shape(ref.init, jax.random.key(0), x)
    )
    y, vjp = jax.vjp(ours.apply, params, x)
    y_ref, vjp_ref = jax.vjp(ref.apply, params, x)
    np.testing.assert_allclose(y, y_ref, atol=2e-5)
    assert y.dtype == x.dtype
    cot = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    for g, g_ref in zip(jax.tree.leaves(vjp(cot)), jax.tree.leaves(vjp_ref(cot)), strict=True):
        np.testing.assert_allclose(g, g_ref, atol=1e-4 * float(jnp.max(jnp.abs(g_ref))))


def test_normalises_each_group():
    """With unit scale and zero bias, each sample's group has mean 0 and variance
    ``var / (var + eps)`` over its positions and channels (closed form), eps 1e-3."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(3.0 + 2.0 * rng.standard_normal((2, 4, 4, 16)), jnp.float32)
    gn = nets.GroupNorm(4, epsilon=1e-3)
    y = gn.apply(gn.init(jax.random.key(0), x), x)
    grouped = np.asarray(y).reshape(2, 16, 4, 4).transpose(0, 2, 1, 3).reshape(2, 4, -1)
    var = np.asarray(x).reshape(2, 16, 4, 4).transpose(0, 2, 1, 3).reshape(2, 4, -1).var(-1)
    np.testing.assert_allclose(grouped.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(grouped.var(-1), var / (var + 1e-3), rtol=1e-4)


def test_bfloat16_input_computes_in_float32():
    """A bfloat16 input gives a bfloat16 output: the float32 result, rounded once."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 3, 3, 32)), jnp.bfloat16)
    gn = nets.GroupNorm(8)
    params = _params(32, 4)
    y = gn.apply(params, x)
    assert y.dtype == jnp.bfloat16
    want = gn.apply(params, x.astype(jnp.float32)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(want, np.float32))


@pytest.mark.parametrize(
    "shape,groups,match",
    [((2, 4, 4, 30), 32, "30 channels do not split"), ((6,), 2, r"expected \(N, ..., C\)")],
)
def test_bad_input(shape, groups, match):
    with pytest.raises(ValueError, match=match):
        nets.GroupNorm(groups).init(jax.random.key(0), jnp.zeros(shape))
