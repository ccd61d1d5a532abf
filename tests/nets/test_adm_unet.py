"""``nets.adm_unet``: torchcfm's CIFAR-10 UNet.

The reference is torchcfm's own ``UNetModelWrapper`` (``torchcfm/models/unet/unet.py``):
its weights, every one randomised (torchcfm zero-initialises its output convolutions, so an
untouched copy outputs zeros), are loaded with ``adm_unet_params_from_torch`` and both
networks run on the same inputs and times in float32. Tolerance: max |difference| <= 1e-4
of max |torch output| (measured: about 2e-6). Those tests need torch and torchcfm (the
``bench`` extra) and are skipped without them; the others run on JAX alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo import nets

# a tiny network that keeps every feature: two levels, attention at the 4x4 level (2 heads
# of 32 channels) and in the middle, a 1x1 skip convolution, down- and upsampling, dropout
SMALL = dict(
    image_shape=(8, 8, 3),
    num_channels=32,
    num_res_blocks=1,
    channel_mult=(1, 2),
    num_head_channels=32,
    attention_resolutions=(4,),
)
# one level at 4x4: a residual block down, the middle (res, attention, res), two blocks up;
# 64 channels, as GroupNorm(32) of 32 channels (one per group) would cancel the embedding's
# per-channel shift, and with it the time and the label
TINY = dict(
    SMALL, image_shape=(4, 4, 3), num_channels=64, channel_mult=(1,), attention_resolutions=()
)


def _random_params(net, seed, *inputs):
    """Params of ``net`` drawn at random, every one non-zero (torchcfm zero-initialises the
    output convolutions): weights of variance 1 / fan_in, GroupNorm scales around 1, biases
    around 0. Filled with numpy on ``eval_shape``'s tree: no init is compiled."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(net.init, jax.random.key(0), *inputs)

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        z = rng.standard_normal(shape).astype(np.float32)
        if name in ("kernel", "embedding"):
            return jnp.asarray(z / np.sqrt(np.prod(shape[:-1])))
        return jnp.asarray(float(name == "scale") + 0.2 * z)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def small():
    net = nets.adm_unet(**SMALL)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    t = jnp.array([0.3, 0.8])
    return net, _random_params(net, 0, t, x), t, x


def test_default_is_torchcfm_cifar10_size(key):
    """35,746,307 parameters (torchcfm's count); shapes only, nothing is compiled."""
    net = nets.adm_unet()
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    params = jax.eval_shape(net.init, key, 0.5, x)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == 35_746_307
    assert "input_blocks_4_1" in params["params"]  # attention after the first 16x16 block
    for dtype in (None, jnp.bfloat16):
        out = jax.eval_shape(nets.adm_unet(dtype=dtype).apply, params, 0.5, x)
        assert out.shape == x.shape and out.dtype == jnp.float32


@pytest.mark.slow
def test_init_as_torchcfm(key):
    """torch's default initialisation, zeros where torchcfm zeroes (output convolutions)."""
    p = nets.adm_unet(**TINY).init(key, 0.5, jnp.zeros((1, 4, 4, 3)))["params"]
    for zeroed in (
        p["out_2"],
        p["input_blocks_1_0"]["out_layers_3"],
        p["middle_block_1"]["proj_out"],
    ):
        assert not any(np.any(leaf) for leaf in jax.tree.leaves(zeroed))
    conv = p["input_blocks_1_0"]["in_layers_2"]  # 3x3, 64 -> 64: uniform on +-1/sqrt(576)
    for leaf in (conv["kernel"], conv["bias"]):
        assert 0.9 < np.abs(leaf).max() * 576**0.5 <= 1.0
    np.testing.assert_array_equal(p["out_0"]["scale"], 1.0)


@pytest.mark.slow
def test_dropout_only_with_rng(small):
    net, params, t, x = small
    apply = jax.jit(net.apply)
    out = apply(params, t, x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, apply(params, t, x))
    assert not np.allclose(apply(params, t[::-1], x), out, atol=1e-3)  # the times act
    k = jax.random.key(3)
    dropped = jax.jit(lambda p, t, x, k: net.apply(p, t, x, rng=k))(params, t, x, k)
    assert not np.allclose(dropped, out, atol=1e-3)


@pytest.mark.slow
def test_remat_keeps_values_and_gradients():
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    params = _random_params(nets.adm_unet(**TINY), 1, 0.5, x)
    k = jax.random.key(3)

    def grads(remat):
        net = nets.adm_unet(**TINY, remat=remat)
        loss = lambda p: jnp.sum(net.apply(p, 0.5, x, rng=k) ** 2)  # noqa: E731
        return jax.jit(jax.value_and_grad(loss))(params)

    (v0, g0), (v1, g1) = grads("none"), grads("full")
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(g0))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


def test_im2col_matches_xla(small):
    """The same network with convolutions as patches @ kernel, torch's zero padding on every
    side included (for the stride-2 downsampling ``"SAME"`` would pad only the far side)."""
    net, params, t, x = small
    ref = jax.jit(net.apply)(params, t, x)
    out = jax.jit(nets.adm_unet(**SMALL, conv="im2col").apply)(params, t, x)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.slow
def test_bfloat16_compute_is_close_to_float32(key):
    net = nets.adm_unet(**TINY)
    x = jax.random.normal(key, (2, 4, 4, 3))
    params = _random_params(net, 2, 0.5, x)
    ref = jax.jit(net.apply)(params, 0.5, x)
    scale = float(jnp.max(jnp.abs(ref)))
    bf16 = jax.jit(nets.adm_unet(**TINY, dtype=jnp.bfloat16).apply)(params, 0.5, x)
    assert bf16.dtype == jnp.float32
    assert 0 < float(jnp.max(jnp.abs(bf16 - ref))) < 5e-2 * scale  # bfloat16's 8-bit mantissa
    # bfloat16 params (flowzoo.train's compute_dtype) compute in bfloat16 by themselves
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    np.testing.assert_allclose(jax.jit(net.apply)(half, 0.5, x), ref, atol=5e-2 * scale)


def test_class_labels_as_integers_or_one_hot(key):
    net = nets.adm_unet(**TINY, num_classes=3)
    x = jax.random.normal(key, (2, 4, 4, 3))
    labels = jnp.array([0, 2])
    params = _random_params(net, 4, 0.5, x, labels)
    apply = jax.jit(net.apply)
    out = apply(params, 0.5, x, labels)
    np.testing.assert_allclose(apply(params, 0.5, x, jax.nn.one_hot(labels, 3)), out, atol=1e-5)
    assert not np.allclose(apply(params, 0.5, x, jnp.array([1, 1])), out, atol=1e-3)
    with pytest.raises(ValueError, match="context"):
        net.apply(params, 0.5, x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_channels=48), "multiple of 32"),
        (dict(channel_mult=(1, 2, 2, 2), image_shape=(12, 12, 3)), "divisible by 2"),
        (dict(attention_resolutions=(16,)), "attention resolution 16"),
        (dict(num_head_channels=48), "heads"),
        (dict(num_head_channels=-1, num_heads=5), "heads"),
        (dict(dropout=1.0), "dropout"),
        (dict(conv="fft"), "conv"),
        (dict(remat="some"), "remat"),
        (dict(dtype=jnp.int32), "dtype"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nets.adm_unet(**{**SMALL, **kwargs})


def test_wrong_input_shape(small):
    net, params, t, x = small
    with pytest.raises(ValueError, match="x must have shape"):
        net.apply(params, t, x[:, :4])
    with pytest.raises(ValueError, match="context"):
        net.apply(params, t, x, jnp.zeros((2,), jnp.int32))


def _torchcfm_reference(kwargs, n, seed, labels=None):
    """torchcfm's network with every weight randomised, in eval mode; its output on random
    NHWC inputs and times, and the inputs."""
    torch = pytest.importorskip("torch")
    unet = pytest.importorskip("torchcfm.models.unet.unet")
    torch.manual_seed(seed)
    model = unet.UNetModelWrapper(**kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:  # weights of variance 1 / fan_in
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            else:  # GroupNorm scales around 1, biases around 0
                p.copy_(float(name.endswith("weight")) + 0.2 * torch.randn_like(p))
    model.eval()
    c, h, w = kwargs["dim"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    t = rng.uniform(size=n).astype(np.float32)
    y = None if labels is None else torch.from_numpy(labels)
    with torch.no_grad():
        ref = model(torch.from_numpy(t), torch.from_numpy(x.transpose(0, 3, 1, 2)), y=y)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    count = sum(p.numel() for p in model.parameters())
    return ref.numpy().transpose(0, 2, 3, 1), state, count, t, x


def _compare(net, kwargs, n, seed, labels=None):
    ref, state, count, t, x = _torchcfm_reference(kwargs, n, seed, labels)
    params = nets.adm_unet_params_from_torch(state)
    shapes = jax.eval_shape(net.init, jax.random.key(0), t, x, labels)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, shapes)
    assert sum(p.size for p in jax.tree.leaves(params)) == count
    out = np.asarray(jax.jit(net.apply)(params, t, x, labels))
    scale = np.abs(ref).max()
    assert scale > 0.1  # the randomised output convolution acts
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("conditional", [False, True])
def test_matches_torchcfm_small(conditional):
    """16x16 -> 8x8 (attention) -> 4x4, two blocks per level; unconditional with 32-channel
    heads, or class-conditional (torchcfm's ``class_cond``) with ``num_heads=2``."""
    kwargs = dict(
        dim=(3, 16, 16),
        num_channels=32,
        num_res_blocks=2,
        channel_mult=[1, 2, 2],
        attention_resolutions="8",
        dropout=0.1,
    )
    heads = dict(num_heads=2, num_head_channels=-1) if conditional else dict(num_head_channels=32)
    labels = np.array([3, 0, 9]) if conditional else None
    classes = dict(class_cond=True, num_classes=10) if conditional else {}
    net = nets.adm_unet(
        (16, 16, 3),
        32,
        2,
        (1, 2, 2),
        attention_resolutions=(8,),
        **heads,
        num_classes=10 if conditional else None,
    )
    _compare(net, {**kwargs, **heads, **classes}, 3, int(conditional), labels)


@pytest.mark.slow
def test_matches_torchcfm_cifar10_default():
    """The full CIFAR-10 configuration (35.7M parameters) on a batch of 2."""
    kwargs = dict(
        dim=(3, 32, 32),
        num_channels=128,
        num_res_blocks=2,
        channel_mult=[1, 2, 2, 2],
        num_heads=4,
        num_head_channels=64,
        attention_resolutions="16",
        dropout=0.1,
    )
    _compare(nets.adm_unet(), kwargs, 2, 5)
