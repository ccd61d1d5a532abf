"""nets.from_linen / from_nnx / from_equinox / from_haiku: foreign modules as flowzoo Networks.

Each adapter must give the module's own output (the module called directly, tolerance
1e-6), parameters that are plain array pytrees (a checkpoint round trip restores them
bit-exactly), an ``init`` that is a function of its key, a velocity field that
``flowzoo.train.fit`` trains on a flow-matching loss, and an error naming the collection
of a module with mutable state.
"""

from __future__ import annotations

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flowzoo import checkpoint, nets, paths
from flowzoo import flow_matching as fm
from flowzoo.data import array_batches
from flowzoo.train import fit

D, H = 2, 16


class LinenField(nn.Module):
    """``(t, x[, context]) -> (batch, D)``: a time-conditioned MLP."""

    @nn.compact
    def __call__(self, t, x, context=None):
        h = jnp.concatenate([x, t[:, None]], axis=-1)
        if context is not None:
            h = jnp.concatenate([h, context], axis=-1)
        return nn.Dense(D)(jnp.tanh(nn.Dense(H)(h)))


class NNXField(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(D + 1, H, rngs=rngs), nnx.Linear(H, D, rngs=rngs)])

    def __call__(self, t, x):
        h = jnp.tanh(self.layers[0](jnp.concatenate([x, t[:, None]], axis=-1)))
        return self.layers[1](h)


def _equinox_field(eqx):
    class EqxField(eqx.Module):
        mlp: eqx.nn.MLP
        scale: jax.Array
        index: jax.Array  # an integer array: static, not a parameter

        def __init__(self, key):
            self.mlp = eqx.nn.MLP(D + 1, D, H, 1, activation=jnp.tanh, key=key)
            self.scale = jnp.ones(D)
            self.index = jnp.arange(D)

        def __call__(self, t, x):
            h = jnp.concatenate([x, t[:, None]], axis=-1)
            return jax.vmap(self.mlp)(h)[:, self.index] * self.scale[None, :]

    return EqxField


def _haiku_field(t, x):
    import haiku as hk

    return hk.nets.MLP([H, D], activation=jnp.tanh)(jnp.concatenate([x, t[:, None]], axis=-1))


def _adapter(kind):
    """``(network, direct(params, t, x))``: the adapter and the module called directly."""
    if kind == "linen":
        module = LinenField()
        return nets.from_linen(module), lambda p, t, x: module.apply(p, t, x)
    if kind == "nnx":
        return nets.from_nnx(NNXField), lambda p, t, x: _nnx_direct(p, t, x)
    if kind == "equinox":
        eqx = pytest.importorskip("equinox")
        field = _equinox_field(eqx)
        return nets.from_equinox(field), lambda p, t, x: _eqx_direct(eqx, field, p, t, x)
    hk = pytest.importorskip("haiku")
    transformed = hk.transform(_haiku_field)
    return nets.from_haiku(_haiku_field), lambda p, t, x: transformed.apply(p, None, t, x)


def _nnx_direct(params, t, x):
    # an independent rebuild: the module of key 0 with the params written into its layers
    module = NNXField(nnx.Rngs(0))
    for i, layer in enumerate(module.layers):
        layer.kernel.value = params["layers"][i]["kernel"]
        layer.bias.value = params["layers"][i]["bias"]
    return module(t, x)


def _eqx_direct(eqx, field, params, t, x):
    module = field(jax.random.key(0))
    layers = params["mlp"]["layers"]
    for i in range(2):
        module = eqx.tree_at(
            lambda m, i=i: m.mlp.layers[i].weight, module, layers[str(i)]["weight"]
        )
        module = eqx.tree_at(lambda m, i=i: m.mlp.layers[i].bias, module, layers[str(i)]["bias"])
    module = eqx.tree_at(lambda m: m.scale, module, params["scale"])
    return module(t, x)


KINDS = ["linen", "nnx", "equinox", "haiku"]


def _inputs(n=5):
    rng = np.random.default_rng(1)
    return (
        jnp.asarray(rng.uniform(size=n), jnp.float32),
        jnp.asarray(rng.standard_normal((n, D)), jnp.float32),
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_output_equals_the_module_and_init_follows_the_key(kind, key):
    net, direct = _adapter(kind)
    t, x = _inputs()
    params = net.init(key, t, x)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(params))
    # a perturbed copy, so the check does not rest on the module's own init
    params = jax.tree.map(lambda p: p + 0.1 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), params)
    got = jax.jit(net.apply)(params, t, x, None)  # a trailing context=None is dropped
    assert got.shape == (5, D)
    np.testing.assert_allclose(got, direct(params, t, x), rtol=1e-6, atol=1e-6)
    same, again, other = (net.init(k, t, x) for k in (key, key, jax.random.fold_in(key, 1)))
    assert jax.tree.structure(same) == jax.tree.structure(other)
    leaves = zip(*(jax.tree.leaves(p) for p in (same, again, other)), strict=True)
    assert all(np.array_equal(a, b) for a, b, _ in leaves)
    leaves = zip(jax.tree.leaves(same), jax.tree.leaves(other), strict=True)
    assert not all(np.array_equal(a, c) for a, c in leaves)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_trains_a_velocity_and_params_round_trip_a_checkpoint(kind, key, tmp_path):
    net, _ = _adapter(kind)
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((64, D)) * [2.0, 0.5] + 1.0).astype(np.float32)
    params = net.init(key, *_inputs())
    loss = fm.cfm_loss(net.apply, paths.cond_ot_path(0.0))
    res = fit(
        loss,
        optax.adam(1e-2),
        params,
        array_batches(data, 32),
        key=key,
        num_steps=60,
        steps_per_call=20,
        progress=False,
    )
    first, last = res.history[0]["loss"], res.history[-1]["loss"]
    assert last < 0.8 * first, (first, last)
    trained = res.state.params
    checkpoint.save(tmp_path, 60, trained)
    restored, step = checkpoint.restore(tmp_path, jax.tree.map(jnp.zeros_like, trained))
    assert step == 60 and jax.tree.structure(restored) == jax.tree.structure(trained)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(trained), strict=True):
        np.testing.assert_array_equal(a, b)
    t, x = _inputs()
    np.testing.assert_array_equal(net.apply(restored, t, x), net.apply(trained, t, x))


def test_linen_conditioner_with_context_and_a_refused_collection(key):
    net = nets.from_linen(LinenField())
    t, x = _inputs()
    ctx = jnp.ones((5, 3))
    params = net.init(key, t, x, ctx)
    assert net.apply(params, t, x, ctx).shape == (5, D)

    class WithBatchNorm(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(x)

    with pytest.raises(ValueError, match="batch_stats"):
        nets.from_linen(WithBatchNorm()).init(key, x)


@pytest.mark.parametrize(
    "make, named",
    [
        (lambda rngs: nnx.BatchNorm(D, rngs=rngs), "BatchStat"),
        (lambda rngs: nnx.Dropout(0.5, rngs=rngs), "RngKey"),
    ],
)
def test_nnx_refuses_state(make, named):
    with pytest.raises(ValueError, match=named):
        nets.from_nnx(make)


def test_equinox_refuses_state():
    eqx = pytest.importorskip("equinox")
    with pytest.raises(ValueError, match="StateIndex"):
        nets.from_equinox(lambda key: eqx.nn.BatchNorm(D, axis_name="batch", mode="ema"))


def test_haiku_refuses_state(key):
    hk = pytest.importorskip("haiku")

    def counter(x):
        count = hk.get_state("count", [], init=jnp.zeros)
        hk.set_state("count", count + 1)
        return x

    with pytest.raises(ValueError, match="~/count"):
        nets.from_haiku(counter).init(key, jnp.ones((2, D)))


def test_a_missing_optional_package_is_named(monkeypatch):
    for module, adapter, package in (
        ("haiku", nets.from_haiku, "dm-haiku"),
        ("equinox", nets.from_equinox, "equinox"),
    ):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
        with pytest.raises(ImportError, match=f"pip install {package}"):
            adapter(lambda *a: None)
