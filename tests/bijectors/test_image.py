"""Image bijectors (issue 3): ActNorm init, 1x1 convolutions, squeeze, factor-out priors.

Each test compares against an independent reference (numpy/scipy formulas, explicit loops);
tolerances are stated per assertion (float32 computations, float64 references).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from flowzoo import bijectors as bj
from flowzoo import nets
from flowzoo.distributions import standard_normal
from flowzoo.flows import glow, transformed


def _perturb(params, key, scale):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


def test_actnorm_init_standardises_each_channel(key):
    mean = np.array([3.0, -1.0, 0.5], np.float32)
    std = np.array([2.0, 0.1, 1.0], np.float32)
    x = jnp.asarray(mean + std * np.asarray(jax.random.normal(key, (16, 4, 4, 3))))
    an = bj.actnorm()
    params = an.init(jax.random.key(1), x)
    z, ld = an.inverse(params, x)
    z = np.asarray(z, np.float64)
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.var(axis=(0, 1, 2)), 1.0, atol=1e-4)
    # log-det of the normalizing direction: -(H W) sum_c log std_c of the batch
    ref = -16 * np.sum(np.log(np.asarray(x, np.float64).std(axis=(0, 1, 2))))
    np.testing.assert_allclose(ld, np.full(16, ref), rtol=1e-5)


def test_actnorm_inside_chain_sees_the_normalizing_direction(key):
    """chain.init runs from the data side: ActNorm sees fixed_affine.inverse(x), not x."""
    x = 5.0 + 3.0 * jax.random.normal(key, (32, 2, 2, 2))
    flow = bj.chain(bj.actnorm(), bj.fixed_affine(jnp.full((2,), 1.0), jnp.full((2,), 4.0)))
    z, _ = flow.inverse(flow.init(jax.random.key(1), x), x)
    np.testing.assert_allclose(np.mean(z, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.var(z, axis=(0, 1, 2)), 1.0, atol=1e-4)


@pytest.mark.parametrize("lu", [True, False])
def test_conv1x1_init_is_a_random_rotation(key, lu):
    conv = bj.conv1x1(lu=lu)
    x = jax.random.normal(key, (2, 3, 3, 5))
    p1, p2 = conv.init(jax.random.key(1), x), conv.init(jax.random.key(2), x)
    w = np.asarray(bj.lu_weight(p1) if lu else p1["weight"], np.float64)
    np.testing.assert_allclose(w @ w.T, np.eye(5), atol=1e-5)
    w2 = np.asarray(bj.lu_weight(p2) if lu else p2["weight"])
    assert np.abs(w - w2).max() > 0.1  # the key matters
    _, ld = conv.inverse(p1, x)
    np.testing.assert_allclose(ld, 0.0, atol=1e-4)  # volume preserving at init
    if lu:  # pivoting kept: the unit-lower factor is bounded by 1
        assert np.abs(np.tril(np.asarray(p1["lower"]), -1)).max() <= 1.0 + 1e-6


def test_conv1x1_lu_and_plain_agree_on_the_same_matrix(key):
    k1, k2 = jax.random.split(key)
    c = 4
    x = jax.random.normal(k1, (3, 2, 3, c))
    lu = bj.conv1x1(lu=True)
    p_lu = _perturb(lu.init(k2, x), jax.random.key(5), 0.3)
    # the matrix, rebuilt in float64 from the LU params by hand
    low = np.tril(np.asarray(p_lu["lower"], np.float64), -1) + np.eye(c)
    up = np.triu(np.asarray(p_lu["upper"], np.float64), 1) + np.diag(
        np.exp(np.asarray(p_lu["log_diag"], np.float64))
    )
    w = low @ up
    plain = bj.conv1x1(lu=False)
    p_plain = {"weight": jnp.asarray(w, jnp.float32)}
    z_lu, ld_lu = lu.inverse(p_lu, x)
    z_pl, ld_pl = plain.inverse(p_plain, x)
    z_ref = np.einsum("bhwj,ij->bhwi", np.asarray(x, np.float64), w)
    ld_ref = 6 * np.linalg.slogdet(w)[1]  # 2x3 pixels
    np.testing.assert_allclose(z_lu, z_ref, atol=1e-5)
    np.testing.assert_allclose(z_pl, z_ref, atol=1e-5)
    np.testing.assert_allclose(ld_lu, np.full(3, ld_ref), atol=1e-4)
    np.testing.assert_allclose(ld_pl, np.full(3, ld_ref), atol=1e-4)
    x_lu, fld_lu = lu.forward(p_lu, x)
    x_pl, fld_pl = plain.forward(p_plain, x)
    x_ref = np.einsum("bhwj,ij->bhwi", np.asarray(x, np.float64), np.linalg.inv(w))
    np.testing.assert_allclose(x_lu, x_ref, atol=1e-4)
    np.testing.assert_allclose(x_pl, x_ref, atol=1e-4)
    np.testing.assert_allclose(fld_lu, -ld_ref, atol=1e-4)
    np.testing.assert_allclose(fld_pl, -ld_ref, atol=1e-4)


def test_squeeze_is_the_2x2_space_to_depth_permutation(key):
    b, h, w, c = 2, 4, 6, 3
    x = np.asarray(jax.random.normal(key, (b, h, w, c)))
    sq = bj.squeeze()
    y, ld = sq.forward((), jnp.asarray(x))
    ref = np.empty((b, h // 2, w // 2, 4 * c), np.float32)
    for i in range(h // 2):
        for j in range(w // 2):
            for di in range(2):
                for dj in range(2):
                    ref[:, i, j, (di * 2 + dj) * c : (di * 2 + dj + 1) * c] = x[
                        :, 2 * i + di, 2 * j + dj, :
                    ]
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(ld, np.zeros(b))
    # a permutation: the same multiset of values, and unsqueeze undoes it exactly
    np.testing.assert_array_equal(np.sort(np.ravel(y)), np.sort(x.ravel()))
    x_back, ld_back = bj.unsqueeze().forward((), y)
    np.testing.assert_array_equal(x_back, x)
    np.testing.assert_array_equal(ld_back, np.zeros(b))
    np.testing.assert_array_equal(sq.inverse((), y)[0], x)
    with pytest.raises(ValueError, match="divisible"):
        sq.forward((), jnp.zeros((1, 3, 4, 1)))


def test_factor_out_split_prior_is_the_conditional_gaussian(key):
    """log p(x) = log p_inner(x_keep) + log N(x_out; mu(x_keep), sigma(x_keep)) by hand."""
    shape = (2, 2, 4)
    prior = bj.resnet_conditioner(hidden=4, num_blocks=0)
    fo = bj.factor_out(shape, bj.actnorm(), prior=prior)
    flow = transformed(standard_normal(shape), fo)
    x = 2.0 * jax.random.normal(key, (5, *shape))
    params = _perturb(flow.init(jax.random.key(1), x), jax.random.key(2), 0.3)
    logp = flow.log_prob(params, x)

    xk, xo = np.asarray(x[..., :2], np.float64), np.asarray(x[..., 2:], np.float64)
    an = params["bijector"]["inner"]
    loc, log_s = np.asarray(an["loc"], np.float64), np.asarray(an["log_scale"], np.float64)
    lp_keep = stats.norm.logpdf(xk, loc, np.exp(log_s)).sum(axis=(1, 2, 3))
    net = nets.resnet(4, hidden=4, num_blocks=0)  # the same architecture, applied directly
    out = np.asarray(net.apply(params["bijector"]["prior"], x[..., :2]), np.float64)
    mu, log_sigma = out[..., :2], 5.0 * np.tanh(out[..., 2:] / 5.0)  # tanh bound 5
    assert np.abs(mu).max() > 0.05 and np.abs(log_sigma).max() > 0.05  # a real prior
    lp_out = stats.norm.logpdf(xo, mu, np.exp(log_sigma)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(logp, lp_keep + lp_out, rtol=1e-5, atol=1e-4)


def test_image_couplings_start_as_identity_and_keep_their_half(key):
    x = jax.random.normal(key, (3, 4, 4, 2))
    cond = bj.resnet_conditioner(hidden=4, num_blocks=1)
    board = bj.checkerboard_mask((4, 4, 2), 0)
    chan = np.broadcast_to(np.arange(2) == 1, (4, 4, 2))  # parity 1 keeps the second channel
    for layer, kept in (
        (bj.checkerboard_coupling((4, 4, 2), 0, cond), board),
        (bj.channel_coupling((4, 4, 2), 1, cond), chan),
    ):
        params = layer.init(jax.random.key(1), x)
        y, ld = layer.forward(params, x)
        np.testing.assert_array_equal(y, x)  # zero-initialised conditioner output
        np.testing.assert_array_equal(ld, 0.0)
        y = np.asarray(layer.forward(_perturb(params, jax.random.key(2), 0.2), x)[0])
        np.testing.assert_array_equal(y[:, kept], np.asarray(x)[:, kept])
        assert not np.allclose(y[:, ~kept], np.asarray(x)[:, ~kept], atol=1e-3)


def test_glow_program_size_does_not_grow_with_depth(key):
    """Steps are scanned: the traced log-prob of depth 32 has as many equations as depth 5."""
    x = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)

    def n_eqns(depth):
        flow = glow((8, 8, 1), levels=2, depth=depth, hidden=4)
        params = jax.eval_shape(flow.init, key, x)
        return len(jax.make_jaxpr(flow.log_prob)(params, x).jaxpr.eqns)

    assert n_eqns(5) == n_eqns(32)
    assert n_eqns(2) > n_eqns(1)  # short stacks are unrolled (the counter is not blind)


@pytest.mark.parametrize("padding", ["SAME", ((1, 1), (0, 2))])
def test_resnet_conv_gradients_match_lax_conv(key, padding):
    """The ResNet's convolution (custom JVP with per-tap matmuls for the kernel tangent, the
    CPU workaround for slow kernel gradients inside lax.scan) against plain lax.conv."""
    from flowzoo.nets import conv_tap_grad

    kx, kw, kt = jax.random.split(key, 3)
    x = jax.random.normal(kx, (2, 5, 4, 3))
    w = jax.random.normal(kw, (3, 3, 3, 4))
    dn = ("NHWC", "HWIO", "NHWC")

    def ref(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=dn)

    def mine(x, w):
        return conv_tap_grad(x, w, padding)

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)))

    np.testing.assert_allclose(mine(x, w), ref(x, w), atol=1e-5)
    for g, r in zip(
        jax.grad(loss(mine), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w), strict=True
    ):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)
    tx, tw = jax.random.normal(kt, x.shape), jax.random.normal(kt, w.shape)
    _, t_mine = jax.jvp(mine, (x, w), (tx, tw))
    _, t_ref = jax.jvp(ref, (x, w), (tx, tw))
    np.testing.assert_allclose(t_mine, t_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's convolution forms")
def test_glow_gradient_compiles_to_canonical_convolutions_inside_its_scan(key):
    """The steps of a Glow level run in a ``lax.scan``; XLA:CPU rewrites a convolution into
    its Eigen (NHWC input, HWIO kernel) form at top level only, so every convolution of the
    gradient, the loop body's included, must already have that form. Plain ``lax.conv``
    fails this: its input gradient carries an HWOI kernel (``b01f_01oi->b01f``)."""
    flow = glow((8, 8, 2), levels=1, depth=8, hidden=8)
    x = jax.random.normal(key, (2, 8, 8, 2))
    params = flow.init(key, x)
    grad = jax.jit(jax.grad(lambda p: -jnp.mean(flow.log_prob(p, x))))
    hlo = grad.lower(params).compile().as_text()
    labels = [
        line.split("dim_labels=")[1].split(",")[0]
        for line in hlo.splitlines()
        if " convolution(" in line
    ]
    assert "while(" in hlo and labels  # the steps are scanned and convolve
    assert set(labels) == {"b01f_01io->b01f"}, labels
