"""The bijector battery of DESIGN.md section 4, run over every entry of the registry.

Tolerances (float32): round trip ``atol=1e-5`` (relative to values of order 1);
log-dets ``atol=1e-4`` against ``slogdet`` of the autodiff Jacobian.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import REGISTRY

NAMES = sorted(REGISTRY)


def _setup(name, key, batch=4):
    bij, event_shape, context_shape = REGISTRY[name]()
    kx, kc, ki, kp = jax.random.split(key, 4)
    x = jax.random.normal(kx, (batch, *event_shape))
    context = None if context_shape is None else jax.random.normal(kc, (batch, *context_shape))
    params = bij.init(ki, x, context)
    # Perturb every parameter so zero-initialised conditioners are not the identity.
    leaves, treedef = jax.tree.flatten(params)
    ks = jax.random.split(kp, max(len(leaves), 1))[: len(leaves)]
    leaves = [
        p + 0.1 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, ks, strict=True)
    ]
    params = jax.tree.unflatten(treedef, leaves)
    return bij, params, x, context


def _not_identity(bij, params, x, context):
    y, _ = bij.forward(params, x, context)
    return not np.allclose(y, x, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name, key):
    bij, params, x, context = _setup(name, key)
    y, ld_f = bij.forward(params, x, context)
    x_back, ld_i = bij.inverse(params, y, context)
    np.testing.assert_allclose(x_back, x, atol=1e-5, rtol=1e-5)
    z, _ = bij.inverse(params, x, context)
    x_again, _ = bij.forward(params, z, context)
    np.testing.assert_allclose(x_again, x, atol=1e-5, rtol=1e-5)
    # forward log-det at z equals minus the inverse log-det at f(z)
    np.testing.assert_allclose(ld_f, -ld_i, atol=1e-5, rtol=1e-5)
    assert ld_f.shape == (x.shape[0],)


@pytest.mark.parametrize("name", NAMES)
def test_logdet_matches_autodiff_jacobian(name, key):
    bij, params, x, context = _setup(name, key, batch=3)
    event_shape = x.shape[1:]
    d = int(np.prod(event_shape))

    def single(direction, xi, ci):
        ci = None if ci is None else ci[None]
        f = lambda v: getattr(bij, direction)(params, v.reshape(1, *event_shape), ci)[0].ravel()
        jac = jax.jacfwd(f)(xi.ravel())
        assert jac.shape == (d, d)
        return jnp.linalg.slogdet(jac)[1]

    for direction in ("forward", "inverse"):
        _, ld = getattr(bij, direction)(params, x, context)
        ref = jnp.stack(
            [single(direction, x[i], None if context is None else context[i]) for i in range(3)]
        )
        np.testing.assert_allclose(ld, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_jit_matches_eager_and_traces_once(name, key):
    bij, params, x, context = _setup(name, key)
    chex.clear_trace_counter()  # chex counts traces per function code across tests

    @jax.jit
    @chex.assert_max_traces(n=1)
    def both(params, x, context):
        y, ld = bij.forward(params, x, context)
        return y, ld, bij.inverse(params, y, context)

    out_jit = both(params, x, context)
    out_jit2 = both(params, x + 1.0, context)  # new values, same shapes: no retrace
    y, ld = bij.forward(params, x, context)
    np.testing.assert_allclose(out_jit[0], y, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out_jit[1], ld, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out_jit[2][0], x, atol=1e-5, rtol=1e-5)
    assert out_jit2[0].shape == y.shape


@pytest.mark.parametrize(
    "name", [n for n in NAMES if n not in ("reverse", "random_permutation", "fixed_affine")]
)
def test_perturbed_bijector_is_not_identity(name, key):
    """Guards the battery against passing vacuously on an identity map."""
    bij, params, x, context = _setup(name, key)
    assert _not_identity(bij, params, x, context)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n]()[2] is not None])
def test_context_changes_the_map(name, key):
    bij, params, x, context = _setup(name, key)
    y1, _ = bij.forward(params, x, context)
    y2, _ = bij.forward(params, x, context + 1.0)
    assert not np.allclose(y1, y2, atol=1e-4)
