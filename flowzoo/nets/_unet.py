"""A small UNet for NHWC images (8x8, 28x28, ...) as a time-conditioned network.

``apply(params, t, x, context=None)``: ``t`` scalar or ``(batch,)`` (the caller's time
convention; flow matching uses t=0 noise, t=1 data), ``x``: ``(batch, H, W, C)``, optional
``context`` (e.g. a one-hot class, ``(batch, *ctx)``, flattened) added to the time embedding.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from .._types import Array, Key, Params
from ._dropout import Dropout
from ._group_norm import GroupNorm
from ._mlp import Network
from ._remat import CONV_NAME, remat_policy
from ._time import _batch_times, sinusoidal_embedding


class _Conv(nn.Module):
    """A ``SAME``-padded 2-D convolution (NHWC, HWIO kernel) computed as patches @ kernel.

    XLA:CPU runs the gradients of ``conv_general_dilated`` inside a ``lax.scan`` body (the
    training loop of :func:`flowzoo.train.fit`) as naive loop nests, tens of times slower
    than at top level (it rewrites them into its Eigen kernels' form at top level only);
    this im2col form (shifted slices concatenated on the channel axis, then one matmul)
    runs at about the same speed in both. ``impl="xla"`` uses ``lax.conv_general_dilated`` instead (the same
    parameters and the same ``SAME`` padding), the faster choice for a step compiled without
    a loop around it (``train.steps_per_call = 1``): there it beats im2col inside ``fit``'s
    scan.
    Initialisation as ``flax.linen.Conv`` (LeCun-normal kernel, zero bias).
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    impl: str = "im2col"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = self.kernel_size
        sh, sw = self.strides
        n, h, w, c = x.shape
        kernel = self.param("kernel", self.kernel_init, (kh, kw, c, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.impl == "xla":
            out = jax.lax.conv_general_dilated(
                x,
                kernel.astype(x.dtype),
                self.strides,
                "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            return checkpoint_name(out, CONV_NAME) + bias.astype(x.dtype)[None, None, None, :]
        oh, ow = -(-h // sh), -(-w // sw)
        ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
        xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        cols = [
            xp[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
            for i in range(kh)
            for j in range(kw)
        ]
        patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
        out = patches @ kernel.reshape(kh * kw * c, self.features).astype(x.dtype)
        return checkpoint_name(out, CONV_NAME) + bias.astype(x.dtype)[None, None, None, :]


Im2ColConv = _Conv  # public name; flax names the params after the class (``_Conv_<i>``)


def _norm(ch: int) -> GroupNorm:
    """GroupNorm with ``gcd(8, ch)`` groups: :class:`flowzoo.nets.GroupNorm`, the function
    and parameters of ``flax.linen.GroupNorm`` (flax names it ``GroupNorm_<i>`` either way)."""
    return GroupNorm(num_groups=math.gcd(8, ch))


class _ResBlock(nn.Module):
    ch: int
    conv: str = "im2col"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, emb: Array, train: bool = False) -> Array:
        h = _Conv(self.ch, (3, 3), impl=self.conv)(nn.silu(_norm(x.shape[-1])(x)))
        h = h + nn.Dense(self.ch)(emb)[:, None, None, :]
        h = nn.silu(_norm(self.ch)(h))
        if self.dropout > 0.0:  # before the second conv, as in the DDPM UNet (Ho et al. 2020)
            h = Dropout(self.dropout, deterministic=not train)(h)
        h = _Conv(self.ch, (3, 3), impl=self.conv)(h)
        skip = x if x.shape[-1] == self.ch else _Conv(self.ch, (1, 1), impl=self.conv)(x)
        return skip + h


class _SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over the H*W positions, added as a residual; the
    output projection is zero-initialised, so the block starts as the identity."""

    heads: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        n, h, w, c = x.shape
        tokens = _norm(c)(x).reshape(n, h * w, c)
        out = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, out_kernel_init=nn.initializers.zeros
        )(tokens, tokens)
        return x + out.reshape(n, h, w, c)


class _UNet(nn.Module):
    channels: Sequence[int]
    embed_dim: int
    attention_heads: int = 0
    conv: str = "im2col"
    dropout: float = 0.0
    num_blocks: Sequence[int] = ()
    remat: str = "none"

    @nn.compact
    def __call__(self, t: Array, x: Array, context: Array | None, train: bool = False) -> Array:
        emb = sinusoidal_embedding(t, self.embed_dim)
        emb = nn.Dense(self.embed_dim)(nn.silu(nn.Dense(self.embed_dim)(emb)))
        if context is not None:
            emb = emb + nn.Dense(self.embed_dim)(context.reshape(context.shape[0], -1))
        emb = nn.silu(emb)
        res_block, attention = _ResBlock, _SelfAttention
        if self.remat != "none":  # one jax.checkpoint per block; params named as without
            policy = remat_policy(self.remat)
            res_block = nn.remat(_ResBlock, policy=policy, static_argnums=(3,))
            attention = nn.remat(_SelfAttention, policy=policy)
        count = itertools.count()

        def block(ch: int, h: Array) -> Array:
            name = f"_ResBlock_{next(count)}"
            return res_block(ch, self.conv, self.dropout, name=name)(h, emb, train)

        blocks = self.num_blocks or (1,) * len(self.channels)
        h = _Conv(self.channels[0], (3, 3), impl=self.conv)(x)
        skips = []
        for i, ch in enumerate(self.channels):  # down: the level's blocks, then stride 2
            for _ in range(blocks[i]):
                h = block(ch, h)
            skips.append(h)
            if i < len(self.channels) - 1:
                h = _Conv(ch, (3, 3), strides=(2, 2), impl=self.conv)(h)
        h = block(self.channels[-1], h)
        if self.attention_heads:
            h = attention(self.attention_heads, name="_SelfAttention_0")(h)
        h = block(self.channels[-1], h)
        for i in reversed(range(len(self.channels))):  # up: concat skip, blocks, upsample
            h = block(self.channels[i], jnp.concatenate([h, skips[i]], axis=-1))
            for _ in range(blocks[i] - 1):
                h = block(self.channels[i], h)
            if i > 0:
                hw = skips[i - 1].shape[1:3]
                h = jax.image.resize(h, (h.shape[0], *hw, h.shape[-1]), "nearest")
                h = _Conv(self.channels[i - 1], (3, 3), impl=self.conv)(h)
        h = nn.silu(_norm(h.shape[-1])(h))
        return _Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros, impl=self.conv)(h)


def unet(
    channels: Sequence[int] = (32, 64),
    embed_dim: int = 64,
    attention_heads: int = 0,
    conv: str = "im2col",
    dropout: float = 0.0,
    num_blocks: int | Sequence[int] = 1,
    remat: str = "none",
) -> Network:
    """A UNet ``(t, x[, context]) -> (batch, H, W, C)`` for NHWC images.

    ``num_blocks`` residual blocks (GroupNorm, SiLU, 3x3 convs, time embedding added) per
    resolution on the way down and again on the way up (an int for every level, or one per
    level, finest first; default 1: one each), stride-2 convolutions down and
    nearest-neighbour upsampling with skip concatenation up (any H, W: 28 -> 14 -> 7 and
    8 -> 4 -> 2 with the default two levels). The time
    embedding is sinusoidal then a 2-layer MLP; ``context`` is projected and added to it. The
    output convolution is zero-initialised, so the network starts as the zero field.
    ``attention_heads > 0`` puts a multi-head self-attention block (over the H*W positions of
    the coarsest level, e.g. 7x7 = 49 for 28x28 with three levels) between the two middle
    residual blocks, as in the DDPM UNet (Ho et al. 2020); it gives every position the whole
    image at little cost.

    ``conv`` picks how convolutions are computed, with the same parameters either way:
    ``"im2col"`` (patches @ kernel; fast inside a ``lax.scan``, such as ``fit``'s loop of
    several steps per call) or ``"xla"`` (``lax.conv_general_dilated``; faster when the step
    is compiled without a loop, ``steps_per_call=1``; its gradients run an order of
    magnitude slower inside one on XLA:CPU).

    ``dropout > 0`` drops features of every residual block before its second convolution
    with that probability (the DDPM UNet's regulariser; Ho et al. 2020 used 0.1 on CIFAR-10).
    It acts only when ``apply`` is given a key, ``apply(params, t, x, context, rng=key)``
    (training); without one the network is deterministic (sampling, likelihoods). The
    parameters do not depend on ``dropout``.

    ``remat`` rematerialises every residual block and the attention block, each as one
    ``jax.checkpoint`` with that policy (:func:`flowzoo.nets.remat_policy`: ``"none"``,
    ``"full"``, ``"dots"``, ``"conv_outputs"``): the training step keeps fewer activations and
    recomputes them in the backward pass. Values, gradients and parameters are those of
    ``remat="none"``.

    ``init(key, t, x, context=None)`` takes example inputs.
    """
    remat_policy(remat)  # an unknown name fails here, with the choices
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if conv not in ("im2col", "xla"):
        raise ValueError(f"conv must be 'im2col' or 'xla', got {conv!r}")
    channels = tuple(int(c) for c in channels)
    blocks = (num_blocks,) * len(channels) if isinstance(num_blocks, int) else tuple(num_blocks)
    if len(blocks) != len(channels) or any(int(b) != b or b < 1 for b in blocks):
        raise ValueError(
            f"num_blocks={num_blocks!r} must be an int >= 1 or one such int per level "
            f"({len(channels)} levels: channels={channels})"
        )
    if attention_heads < 0 or (attention_heads and channels[-1] % attention_heads):
        raise ValueError(
            f"attention_heads={attention_heads} must be 0 or a divisor of the coarsest level's "
            f"{channels[-1]} channels"
        )
    module = _UNet(
        channels,
        int(embed_dim),
        int(attention_heads),
        conv,
        float(dropout),
        tuple(map(int, blocks)),
        remat,
    )

    @jax.jit  # compiled: eager flax init of a UNet takes twice as long (10 s vs 5 s, 4x4)
    def init(key: Key, t: Array, x: Array, context: Array | None = None) -> Params:
        return module.init(key, _batch_times(t, x.shape[0]), x, context)

    def apply(
        params: Params, t: Array, x: Array, context: Array | None = None, *, rng: Key | None = None
    ) -> Array:
        t = _batch_times(t, x.shape[0])
        if rng is None or not dropout:
            return module.apply(params, t, x, context)
        return module.apply(params, t, x, context, True, rngs={"dropout": rng})

    return Network(init, apply)
