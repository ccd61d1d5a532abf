"""MADE and the autoregressive layers: the autoregressive structure itself (round trips
and log-dets of every layer are in the bijector battery)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import bijectors as bj
from flowzoo import flows
from flowzoo.nets import made


def _perturbed(params, key, scale=0.3):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)],
    )


def test_made_output_i_sees_only_inputs_before_i():
    dim, k = 5, 3
    net = made(dim, k, (16, 16))
    x = jax.random.normal(jax.random.key(0), (1, dim))
    params = _perturbed(net.init(jax.random.key(1), x), jax.random.key(2))
    jac = jax.jit(jax.jacfwd(lambda v: net.apply(params, v[None])[0]))(x[0])  # (k * dim, dim)
    deps = np.abs(np.asarray(jac)).reshape(k, dim, dim) > 0
    strictly_lower = np.tril(np.ones((dim, dim), bool), -1)
    assert not deps[:, ~strictly_lower].any()  # never on itself or later inputs
    assert deps[:, strictly_lower].all()  # and on every earlier one (nonzero weights)


@pytest.mark.parametrize("transformer", [None, bj.spline_transformer(4, 2.0)])
def test_maf_jacobian_is_triangular_and_context_reaches_every_entry(transformer):
    dim = 4
    layer = bj.masked_autoregressive(dim, transformer, (12, 12))
    x = 0.5 * jax.random.normal(jax.random.key(0), (3, dim))  # inside the spline's [-2, 2]
    c = jax.random.normal(jax.random.key(1), (3, 2))
    params = _perturbed(layer.init(jax.random.key(2), x, c), jax.random.key(3))
    # compiled: the inverse is a loop of ``dim`` passes, slow to dispatch op by op
    jac = jax.jit(jax.jacfwd(lambda v: layer.inverse(params, v[None], c[:1])[0][0]))(x[0])
    np.testing.assert_array_equal(np.triu(np.asarray(jac), 1), 0.0)
    jc = jax.jit(jax.jacfwd(lambda cc: layer.inverse(params, x[:1], cc[None])[0][0]))(c[0])
    assert (np.abs(np.asarray(jc)).sum(1) > 0).all()


def test_iaf_samples_in_one_pass_and_agrees_with_maf_direction():
    dist = flows.iaf(3, 2, (8,))
    params = _perturbed(dist.init(jax.random.key(0), jnp.zeros((4, 3))), jax.random.key(1), 0.2)
    x, lp = jax.jit(dist.sample_and_log_prob, static_argnums=2)(params, jax.random.key(2), 64)
    np.testing.assert_allclose(jax.jit(dist.log_prob)(params, x), lp, atol=2e-4)
    maf = flows.maf(3, 2, (8,))
    mparams = _perturbed(maf.init(jax.random.key(0), jnp.zeros((4, 3))), jax.random.key(1), 0.2)
    xs, lps = jax.jit(maf.sample_and_log_prob, static_argnums=2)(mparams, jax.random.key(2), 64)
    np.testing.assert_allclose(jax.jit(maf.log_prob)(mparams, xs), lps, atol=2e-4)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dim - 1"):
        bj.masked_autoregressive(6, hidden=(4,))
    with pytest.raises(ValueError, match="dim must be >= 2"):
        bj.masked_autoregressive(1)
    layer = bj.masked_autoregressive(3, hidden=(8,))
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        layer.init(jax.random.key(0), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="vectors"):
        flows.maf((4, 4, 1))
