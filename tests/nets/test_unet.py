import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import nets


def test_unet_shapes_28x28(key):
    """Shapes only, by abstract evaluation (28 -> 14 -> 7 -> 14 -> 28); nothing is compiled."""
    net = nets.unet((8, 16), embed_dim=16)
    x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
    ctx = jax.ShapeDtypeStruct((2, 10), jnp.float32)
    params = jax.eval_shape(net.init, key, 0.5, x, ctx)
    out = jax.eval_shape(net.apply, params, jax.ShapeDtypeStruct((2,), jnp.float32), x, ctx)
    assert out.shape == x.shape and out.dtype == jnp.float32


@pytest.mark.slow
def test_unet_8x8_context_and_time_dependence(key):
    net = nets.unet((8, 16), embed_dim=16)
    x = jax.random.normal(key, (3, 8, 8, 3))
    ctx = jax.nn.one_hot(jnp.array([0, 1, 2]), 10)
    params = net.init(key, 0.0, x, ctx)
    apply = jax.jit(net.apply)  # one compile for the four calls (eager dispatch is slow)
    np.testing.assert_array_equal(apply(params, 0.2, x, ctx), 0.0)
    # perturb the zero output layer so the output depends on the inputs
    params = jax.tree.map(lambda p: p + 0.1, params)
    a = apply(params, 0.2, x, ctx)
    assert a.shape == x.shape
    assert not np.allclose(a, apply(params, 0.7, x, ctx))
    assert not np.allclose(a, apply(params, 0.2, x, jnp.zeros_like(ctx)))


def test_self_attention_block_identity_at_init_and_permutation_equivariant(key):
    """The attention block starts as the identity (zero output projection); once perturbed it
    mixes positions and, having no positional encoding, commutes with permuting them."""
    from flowzoo.nets._unet import _SelfAttention

    block = _SelfAttention(heads=2)
    x = jax.random.normal(key, (2, 3, 3, 8))
    params = block.init(key, x)
    np.testing.assert_array_equal(block.apply(params, x), x)
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(key, p.shape), params)
    y = block.apply(params, x)
    assert not np.allclose(y, x, atol=1e-3)
    perm = jax.random.permutation(jax.random.key(1), 9)
    xp = x.reshape(2, 9, 8)[:, perm].reshape(x.shape)
    yp = block.apply(params, xp)
    np.testing.assert_allclose(yp.reshape(2, 9, 8), y.reshape(2, 9, 8)[:, perm], atol=1e-5)


def test_unet_attention_option(key):
    net = nets.unet((8, 16), embed_dim=16, attention_heads=4)
    x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
    params = jax.eval_shape(net.init, key, 0.5, x)
    assert "_SelfAttention_0" in params["params"]
    assert jax.eval_shape(net.apply, params, 0.5, x).shape == x.shape
    for bad in (3, -1):
        with pytest.raises(ValueError, match="attention_heads"):
            nets.unet((8, 16), attention_heads=bad)


@pytest.mark.slow
def test_xla_conv_computes_the_same_unet(key):
    """``conv="xla"`` (lax.conv) and the default im2col give the same network: the same
    parameter tree, and outputs equal to float32 rounding on 28x28 (odd sizes through the
    stride-2 convolutions: 28 -> 14 -> 7) with perturbed, non-zero parameters."""
    a, b = nets.unet((8, 16, 16), 32), nets.unet((8, 16, 16), 32, conv="xla")
    x = jax.random.normal(key, (2, 28, 28, 1))
    t = jnp.array([0.2, 0.7])
    params = a.init(jax.random.key(1), t, x)
    assert jax.tree.structure(params) == jax.tree.structure(b.init(jax.random.key(1), t, x))
    leaves, tree = jax.tree.flatten(params)
    ks = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(
        tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, ks, strict=True)]
    )
    out_a = jax.jit(a.apply)(params, t, x)
    out_b = jax.jit(b.apply)(params, t, x)
    assert float(jnp.std(out_a)) > 0.1  # not the zero field
    np.testing.assert_allclose(out_b, out_a, atol=2e-4, rtol=2e-4)
    with pytest.raises(ValueError, match="conv must be"):
        nets.unet((8, 16), conv="fft")


@pytest.mark.slow
def test_unet_dropout_acts_only_with_a_key_and_is_unbiased(key):
    """Dropout leaves the parameters and the keyless (sampling) network unchanged; with a key
    it is random, reproducible per key, and, being applied just before a linear convolution
    with inverted scaling, it is unbiased there: the mean of a residual block's output over
    many keys equals the deterministic output (Monte Carlo, 4 standard errors)."""
    from flowzoo.nets._unet import _ResBlock

    plain, dropped = nets.unet((8, 16), 16), nets.unet((8, 16), 16, dropout=0.3)
    x = jax.random.normal(key, (2, 8, 8, 1))
    t = jnp.array([0.2, 0.7])
    params = plain.init(jax.random.key(1), t, x)
    same = dropped.init(jax.random.key(1), t, x)
    for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(same), strict=True):
        np.testing.assert_array_equal(p, q)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero output layer
    apply = jax.jit(dropped.apply)
    np.testing.assert_array_equal(apply(params, t, x), jax.jit(plain.apply)(params, t, x))
    k1, k2 = jax.random.split(jax.random.key(3))
    a = jax.jit(lambda p, k: dropped.apply(p, t, x, rng=k))
    np.testing.assert_array_equal(a(params, k1), a(params, k1))
    assert not np.allclose(a(params, k1), a(params, k2))
    assert not np.allclose(a(params, k1), apply(params, t, x))

    block = _ResBlock(8, dropout=0.3)
    h = jax.random.normal(key, (1, 4, 4, 4))
    emb = jax.random.normal(jax.random.key(4), (1, 16))
    bp = block.init(key, h, emb)
    det = block.apply(bp, h, emb)
    keys = jax.random.split(jax.random.key(5), 4000)
    draws = jax.jit(jax.vmap(lambda k: block.apply(bp, h, emb, True, rngs={"dropout": k})))(keys)
    se = jnp.std(draws, axis=0) / np.sqrt(len(keys))
    assert float(jnp.max(jnp.std(draws, axis=0))) > 0.05  # the draws do vary
    assert bool(jnp.all(jnp.abs(jnp.mean(draws, axis=0) - det) <= 4 * se + 1e-6))
    with pytest.raises(ValueError, match="dropout"):
        nets.unet((8, 16), dropout=1.0)


def test_unet_num_blocks(key):
    """``num_blocks`` adds residual blocks per level, down and up: the default (1) is the
    same parameter tree as before the option existed, ``(1, 2)`` adds one block at the
    coarse level each way (two 16-channel blocks with the parameter count of a 16 -> 16
    residual block), and bad values are refused."""
    x = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)

    def shapes(**kw):
        return jax.eval_shape(nets.unet((8, 16), embed_dim=16, **kw).init, key, 0.5, x)

    one = shapes()
    assert jax.tree.structure(shapes(num_blocks=1)) == jax.tree.structure(one)
    assert jax.tree.structure(shapes(num_blocks=(1, 1))) == jax.tree.structure(one)
    more = shapes(num_blocks=(1, 2))
    blocks = {k for k in more["params"] if k.startswith("_ResBlock_")}
    assert len(blocks) == len([k for k in one["params"] if k.startswith("_ResBlock_")]) + 2

    def count(tree):
        return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))

    # a 16 -> 16 block: two 3x3 convs, the time projection, two GroupNorms; no 1x1 skip
    per_block = 2 * (9 * 16 * 16 + 16) + (16 * 16 + 16) + 2 * (2 * 16)
    assert count(more) - count(one) == 2 * per_block
    net = nets.unet((8, 16), embed_dim=16, num_blocks=(1, 2))
    assert jax.eval_shape(net.apply, more, 0.5, x).shape == x.shape
    for bad in (0, (1,), (1, 0), (1, 2, 1)):
        with pytest.raises(ValueError, match="num_blocks"):
            nets.unet((8, 16), num_blocks=bad)
