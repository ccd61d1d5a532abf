"""The bijector battery of DESIGN.md section 4, run over every entry of the registry.

Tolerances (float32): round trip ``atol=1e-5`` (relative to values of order 1);
log-dets ``atol=1e-4`` against ``slogdet`` of the autodiff Jacobian.

A registry entry is ``(bijector, event_shape, context_shape)`` or, for reshaping layers
(squeeze), ``(bijector, latent_shape, context_shape, data_shape)``: ``forward`` maps
``latent_shape`` to ``data_shape``. Their log-det is checked against
``0.5 * slogdet(J^T J)`` of the (flattened) Jacobian.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import REGISTRY, _coupling

from flowzoo import bijectors as bj
from flowzoo.bijectors import _base as bj_base

NAMES = sorted(REGISTRY)


def _entry(name):
    """``(bijector, latent_shape, context_shape, data_shape)`` of a registry entry."""
    entry = REGISTRY[name]()
    return entry if len(entry) == 4 else (*entry, entry[1])


def _setup(name, key, batch=4):
    """``(bij, params, z, x, context)``: ``z`` latent-side, ``x`` data-side (the same array
    unless the bijector reshapes).

    Memoised per (name, key, batch): every test of an entry shares one bijector and its
    params, so ``init`` (whose scans are compiled anew on every eager call) runs once.
    """
    return _setup_cached(name, tuple(np.asarray(jax.random.key_data(key)).ravel()), batch)


@functools.cache
def _setup_cached(name, key_data, batch):
    key = jax.random.wrap_key_data(np.asarray(key_data, np.uint32))
    bij, event_shape, context_shape, data_shape = _entry(name)
    kx, kc, ki, kp = jax.random.split(key, 4)
    z = jax.random.normal(kx, (batch, *event_shape))
    x = z if data_shape == event_shape else jax.random.normal(kx, (batch, *data_shape))
    context = None if context_shape is None else jax.random.normal(kc, (batch, *context_shape))
    params = bij.init(ki, x, context)
    # Perturb every parameter so zero-initialised conditioners are not the identity.
    leaves, treedef = jax.tree.flatten(params)
    ks = jax.random.split(kp, max(len(leaves), 1))[: len(leaves)]
    leaves = [
        p + 0.1 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, ks, strict=True)
    ]
    params = jax.tree.unflatten(treedef, leaves)
    return bij, params, z, x, context


def _not_identity(bij, params, z, context):
    y, _ = bij.forward(params, z, context)
    return y.shape != z.shape or not np.allclose(y, z, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name, key):
    bij, params, z0, x, context = _setup(name, key)
    y, ld_f = bij.forward(params, z0, context)
    assert y.shape == x.shape
    z_back, ld_i = bij.inverse(params, y, context)
    np.testing.assert_allclose(z_back, z0, atol=1e-5, rtol=1e-5)
    z, _ = bij.inverse(params, x, context)
    assert z.shape == z0.shape
    x_again, _ = bij.forward(params, z, context)
    np.testing.assert_allclose(x_again, x, atol=1e-5, rtol=1e-5)
    # forward log-det at z equals minus the inverse log-det at f(z)
    np.testing.assert_allclose(ld_f, -ld_i, atol=1e-5, rtol=1e-5)
    assert ld_f.shape == (x.shape[0],)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_logdet_matches_autodiff_jacobian(name, key):
    bij, params, z, x, context = _setup(name, key)
    z, x = z[:3], x[:3]
    context = None if context is None else context[:3]
    reshaping = z.shape != x.shape
    d = int(np.prod(x.shape[1:]))

    def single(direction, vi, ci):
        ci = None if ci is None else ci[None]
        shape = vi.shape
        f = lambda v: getattr(bij, direction)(params, v.reshape(1, *shape), ci)[0].ravel()
        jac = jax.jacfwd(f)(vi.ravel())
        assert jac.shape == (d, d)
        if reshaping:  # volume change of a map between differently shaped arrays
            return 0.5 * jnp.linalg.slogdet(jac.T @ jac)[1]
        return jnp.linalg.slogdet(jac)[1]

    for direction, v in (("forward", z), ("inverse", x)):
        _, ld = getattr(bij, direction)(params, v, context)
        # one example at a time inside (batch of 1), vmapped over the 3 examples and compiled
        # once: XLA compiles one program faster than eager dispatch compiles each small op
        ref = jax.jit(jax.vmap(lambda vi, ci, dn=direction: single(dn, vi, ci)))(v, context)
        np.testing.assert_allclose(ld, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_jit_matches_eager_and_traces_once(name, key):
    bij, params, z, x, context = _setup(name, key)
    chex.clear_trace_counter()  # chex counts traces per function code across tests

    @jax.jit
    @chex.assert_max_traces(n=1)
    def both(params, x, context):
        y, ld = bij.forward(params, x, context)
        return y, ld, bij.inverse(params, y, context)

    out_jit = both(params, z, context)
    out_jit2 = both(params, z + 1.0, context)  # new values, same shapes: no retrace
    y, ld = bij.forward(params, z, context)
    np.testing.assert_allclose(out_jit[0], y, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out_jit[1], ld, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out_jit[2][0], z, atol=1e-5, rtol=1e-5)
    assert out_jit2[0].shape == y.shape


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in NAMES
        if n not in ("reverse", "random_permutation", "fixed_affine", "squeeze", "unsqueeze")
    ],
)
def test_perturbed_bijector_is_not_identity(name, key):
    """Guards the battery against passing vacuously on an identity map."""
    bij, params, z, x, context = _setup(name, key)
    assert _not_identity(bij, params, z, context)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n]()[2] is not None])
def test_context_changes_the_map(name, key):
    bij, params, z, x, context = _setup(name, key)
    y1, _ = bij.forward(params, z, context)
    y2, _ = bij.forward(params, z, context + 1.0)
    assert not np.allclose(y1, y2, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("layers", [False, True], ids=["stacked", "layers"])
def test_unrolled_stacks_equal_the_scanned_stack(key, monkeypatch, layers):
    """The unrolled stack holds the same params as the scanned one in the saved layout (the
    same draws from a key, the same structure) and computes the same map, log-det and
    jitted gradient, both ways, on params perturbed away from the identity: with stacked
    params (small stacks) and with Layers (stacks over the size threshold), whose gradient
    is Layers too."""
    if layers:
        monkeypatch.setattr(bj_base, "_LAYERS_MIN_PARAMS", 0)
    layer = _coupling(bj.alternating_mask(4))
    scanned, unrolled = bj.stack(layer, 3, max_unroll=0), bj.stack(layer, 3)
    x = jax.random.normal(key, (5, 4))
    stacked = scanned.init(jax.random.key(1), x)
    same = unrolled.init(jax.random.key(1), x)
    assert isinstance(same, bj.Layers) == layers
    assert jax.tree.structure(bj.saved_layout(same)) == jax.tree.structure(stacked)
    same = bj.saved_layout(same)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(stacked), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    leaves, tree = jax.tree.flatten(stacked)
    ks = jax.random.split(jax.random.key(2), len(leaves))
    stacked = jax.tree.unflatten(
        tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, ks, strict=True)]
    )
    for direction in ("forward", "inverse"):
        y_s, ld_s = getattr(scanned, direction)(stacked, x)
        assert float(jnp.max(jnp.abs(y_s - x))) > 0.05  # not the identity
        mine = bj.memory_layout(stacked, unrolled.init(jax.random.key(1), x))
        for bij, params in ((unrolled, mine), (scanned, mine), (unrolled, stacked)):
            y_u, ld_u = getattr(bij, direction)(params, x)
            np.testing.assert_allclose(y_u, y_s, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(ld_u, ld_s, rtol=1e-5, atol=1e-5)

    # jitted, as in a train step: the gradient lands on the same rows of the stacked params
    def objective(bij):
        def f(params):
            y, ld = bij.inverse(params, x)
            return jnp.sum(ld) + jnp.sum(jnp.sin(y))

        return jax.jit(jax.grad(f))

    g_scan, g_unrolled = objective(scanned)(stacked), objective(unrolled)(mine)
    assert isinstance(g_unrolled, bj.Layers) == layers
    assert float(max(jnp.max(jnp.abs(g)) for g in jax.tree.leaves(g_scan))) > 1e-3
    g_unrolled = bj.saved_layout(g_unrolled)
    for a, b in zip(jax.tree.leaves(g_unrolled), jax.tree.leaves(g_scan), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_short_stacks_of_any_size_save_stacked_params():
    """A short stack's saved params are stacked arrays whatever its size: an 8-layer
    RealNVP at dim 2 and at dim 784 (over the size at which init returns Layers) have the
    same saved structure, every leaf with the leading layer axis, and memory_layout
    restores the large one's Layers from it."""
    from flowzoo import flows

    def params_of(dim):
        flow = flows.realnvp_bijector(dim, 8)
        return flow.init(jax.random.key(0), jnp.zeros((2, dim)))

    small, large = params_of(2), params_of(784)
    assert not any(isinstance(n, bj.Layers) for n in jax.tree.leaves(small, is_leaf=_is_layers))
    assert any(isinstance(n, bj.Layers) for n in jax.tree.leaves(large, is_leaf=_is_layers))
    saved = bj.saved_layout(large)
    assert jax.tree.structure(small) == jax.tree.structure(saved)
    assert sum(a.size for a in jax.tree.leaves(small)) <= bj_base._LAYERS_MIN_PARAMS
    assert sum(a.size for a in jax.tree.leaves(large)) > bj_base._LAYERS_MIN_PARAMS
    for params in (small, saved):
        assert all(a.shape[0] == 4 for a in jax.tree.leaves(params))
    back = bj.memory_layout(saved, large)
    assert jax.tree.structure(back) == jax.tree.structure(large)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(large), strict=True):
        np.testing.assert_array_equal(a, b)


def _is_layers(node) -> bool:
    return isinstance(node, bj.Layers)


@pytest.mark.parametrize("max_unroll", [4, 0], ids=["unrolled", "scanned"])
def test_stack_refuses_params_of_another_layout(key, max_unroll):
    """A tuple of per-layer params (or any leaves without the leading layer axis) is refused
    with an error that says what the stack expects and how to stack such a tuple, instead
    of being sliced into wrong layers."""
    layer = _coupling(bj.alternating_mask(4))
    stack = bj.stack(layer, 3, max_unroll=max_unroll)
    x = jax.random.normal(key, (5, 4))
    stacked = stack.init(jax.random.key(1), x)
    tup = tuple(jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(3))
    with pytest.raises(ValueError, match="stacked along a leading axis of size 3") as err:
        stack.forward(tup, x)
    assert "in a tuple of 3 entries" in str(err.value) and "Layers(params)" in str(err.value)
    assert "FORMAT" not in str(err.value)
    np.testing.assert_allclose(stack.inverse(bj.Layers(tup), x)[0], stack.inverse(stacked, x)[0])
    with pytest.raises(ValueError, match="stack of 3 layers got Layers of 2"):
        stack.inverse(bj.Layers(tup[:2]), x)
    with pytest.raises(ValueError, match="leading axis of size 3"):
        stack.inverse(jax.tree.map(lambda a: a[:2], stacked), x)
