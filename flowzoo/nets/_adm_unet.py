"""torchcfm's CIFAR-10 UNet (the ADM UNet of guided-diffusion) as a flowzoo network.

A port of ``UNetModelWrapper`` / ``UNetModel`` in torchcfm's ``torchcfm/models/unet/unet.py``
(github.com/atong01/conditional-flow-matching), itself OpenAI's guided-diffusion
``guided_diffusion/unet.py`` (Dhariwal & Nichol 2021, "ADM"), with the wrapper's defaults:
``use_scale_shift_norm=False``, ``resblock_updown=False`` (learned-convolution resampling),
``use_new_attention_order=False`` (``QKVAttentionLegacy``: heads split before q/k/v),
``learn_sigma=False``. Parameters are named after torchcfm's ``state_dict`` keys
(``input_blocks.1.0.in_layers.2.weight`` -> ``input_blocks_1_0/in_layers_2/kernel``), so
:func:`adm_unet_params_from_torch` loads torchcfm checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from .._types import Array, Float, Key, Params, count_arg
from ._dropout import Dropout
from ._group_norm import GroupNorm
from ._mlp import Network, _fan_in_uniform
from ._remat import CONV_NAME, remat_policy
from ._time import _batch_times

_GROUPS = 32  # torchcfm's normalization(): GroupNorm32(32, channels), eps 1e-5, in float32
_ZERO = nn.initializers.zeros


def _timestep_embedding(t: Array, dim: int, max_period: float = 10_000.0) -> Array:
    """torchcfm's ``timestep_embedding``: ``[cos(t f), sin(t f)]``, ``(batch,) -> (batch, dim)``.

    Frequencies ``f_i = max_period ** (-i / (dim // 2))``; ``t`` enters unscaled (flow
    matching times in [0, 1]), unlike :func:`flowzoo.nets.sinusoidal_embedding`, which
    scales by 1000 and puts the sines first. Computed in float32.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


class _Conv2d(nn.Module):
    """``torch.nn.Conv2d(cin, features, k, stride, padding)`` on NHWC (HWIO kernel).

    Zero padding of ``padding`` on every side, as torch (for a stride-2 3x3 convolution
    of an even size this differs from ``"SAME"``, which pads only the far side).
    ``impl="xla"``: ``lax.conv_general_dilated``; ``"im2col"``: shifted slices
    concatenated on the channel axis, then one matmul (same parameters). Torch's default
    initialisation (weights and bias uniform on ``+-1/sqrt(fan_in)``), or zeros.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    impl: str = "xla"
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k, s, p = self.kernel_size, self.stride, self.padding
        fan_in = k * k * x.shape[-1]
        init = _ZERO if self.zero_init else _fan_in_uniform(fan_in)
        kernel = self.param("kernel", init, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        kernel = kernel.astype(x.dtype)
        if self.impl == "xla":
            out = jax.lax.conv_general_dilated(
                x, kernel, (s, s), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        else:
            xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
            oh, ow = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
            cols = [
                xp[:, i : i + (oh - 1) * s + 1 : s, j : j + (ow - 1) * s + 1 : s]
                for i in range(k)
                for j in range(k)
            ]
            patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
            out = patches @ kernel.reshape(-1, self.features)
        return checkpoint_name(out, CONV_NAME) + bias.astype(x.dtype)[None, None, None, :]


def _dense(features: int, fan_in: int, dtype: Any, name: str, zero: bool = False) -> nn.Dense:
    """``torch.nn.Linear`` (or a 1x1 ``Conv1d``) with torch's initialisation, or zeros."""
    init = _ZERO if zero else _fan_in_uniform(fan_in)
    return nn.Dense(features, dtype=dtype, kernel_init=init, bias_init=init, name=name)


def _group_norm(x: Array, name: str) -> Array:
    """torchcfm's ``GroupNorm32`` (32 groups, eps 1e-5, computed in float32, cast back to
    the input's dtype): :class:`flowzoo.nets.GroupNorm` named ``name``."""
    return GroupNorm(_GROUPS, 1e-5, name=name)(x)


class _ResBlock(nn.Module):
    """``ResBlock``: GN, SiLU, conv3x3; + Linear(SiLU(emb)); GN, SiLU, dropout, zero conv3x3;
    skip = identity or a 1x1 conv when the channels change."""

    out_ch: int
    dropout: float
    conv: str
    dtype: Any

    @nn.compact
    def __call__(self, x: Array, emb: Array, train: bool = False) -> Array:
        h = nn.silu(_group_norm(x, "in_layers_0"))
        h = _Conv2d(self.out_ch, impl=self.conv, name="in_layers_2")(h)
        e = _dense(self.out_ch, emb.shape[-1], self.dtype, "emb_layers_1")(nn.silu(emb))
        h = h + e.astype(h.dtype)[:, None, None, :]
        h = nn.silu(_group_norm(h, "out_layers_0"))
        if self.dropout > 0.0:
            h = Dropout(self.dropout, deterministic=not train)(h)
        h = _Conv2d(self.out_ch, impl=self.conv, zero_init=True, name="out_layers_3")(h)
        if x.shape[-1] != self.out_ch:
            x = _Conv2d(self.out_ch, 1, padding=0, impl=self.conv, name="skip_connection")(x)
        return x + h


class _Linear(nn.Module):
    """The ``kernel`` ``(fan_in, features)`` and ``bias`` ``(features,)`` of a
    ``torch.nn.Linear`` (or 1x1 ``Conv1d``), as ``nn.Dense`` names and initialises them
    (:func:`_dense`), cast to ``dtype``; the caller contracts them in its own layout."""

    features: int
    dtype: Any
    zero: bool = False

    @nn.compact
    def __call__(self, fan_in: int) -> tuple[Array, Array]:
        init = _ZERO if self.zero else _fan_in_uniform(fan_in)
        kernel = self.param("kernel", init, (fan_in, self.features))
        bias = self.param("bias", init, (self.features,))
        return kernel.astype(self.dtype), bias.astype(self.dtype)


class _Attention(nn.Module):
    """``AttentionBlock`` with ``QKVAttentionLegacy``: GN, 1x1 qkv projection whose channels
    are ``(heads, [q, k, v], head_dim)``, softmax attention over the H*W positions (q and k
    each scaled by ``head_dim ** -0.25``, softmax in float32), zero-initialised output
    projection, residual.

    The projections contract the kernels viewed per head (``(C, heads, 3, head_dim)`` and
    ``(heads, head_dim, C)``), so q, k, v and the attention output stay head-major
    ``(N, heads, HW, head_dim)``: every product is a batched matmul on contiguous operands,
    with no slice of the interleaved qkv channels in between. Slicing q, k and v out of the
    projection, as torchcfm does, gives the same function and a slower program on CPU
    (``benchmarks/adm_layers.py`` times both).
    """

    heads: int
    dtype: Any

    @nn.compact
    def __call__(self, x: Array) -> Array:
        n, hh, ww, c = x.shape
        heads, d = self.heads, c // self.heads
        tokens = _group_norm(x, "norm").reshape(n, hh * ww, c).astype(self.dtype)
        w_qkv, b_qkv = _Linear(3 * c, self.dtype, name="qkv")(c)
        w_qkv, b_qkv = w_qkv.reshape(c, heads, 3, d), b_qkv.reshape(heads, 3, d)
        scale = d**-0.25

        def project(i: int) -> Array:  # (N, heads, HW, d)
            out = jnp.einsum("ntc,chd->nhtd", tokens, w_qkv[:, :, i])
            return out + b_qkv[None, :, None, i]

        q, k, v = project(0) * scale, project(1) * scale, project(2)
        logits = jnp.einsum("nhtd,nhsd->nhts", q, k)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("nhts,nhsd->nhtd", weights, v)
        w_out, b_out = _Linear(c, self.dtype, zero=True, name="proj_out")(c)
        out = jnp.einsum("nhtd,hdc->ntc", out, w_out.reshape(heads, d, c)) + b_out[None, None]
        return x + out.astype(x.dtype).reshape(x.shape)


class _Downsample(nn.Module):
    """``Downsample(conv_resample=True)``: a 3x3 convolution of stride 2, padding 1."""

    conv: str

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return _Conv2d(x.shape[-1], stride=2, impl=self.conv, name="op")(x)


class _Upsample(nn.Module):
    """``Upsample(conv_resample=True)``: nearest-neighbour 2x, then a 3x3 convolution."""

    conv: str

    @nn.compact
    def __call__(self, x: Array) -> Array:
        n, h, w, c = x.shape
        x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
        return _Conv2d(c, impl=self.conv, name="conv")(x.reshape(n, 2 * h, 2 * w, c))


Layer = tuple[str, int]  # ("conv" | "res" | "attn" | "down" | "up", channels or heads)


def _plan(
    level_channels: Sequence[int],
    num_res_blocks: int,
    attention_ds: Sequence[int],
    heads: Any,
) -> tuple[tuple[tuple[Layer, ...], ...], tuple[Layer, ...], tuple[tuple[Layer, ...], ...]]:
    """The layers of ``UNetModel.__init__``: (input_blocks, middle_block, output_blocks).

    ``heads(ch)`` gives an attention block's head count; ``ds`` is the downsampling
    factor (1 at full resolution) that ``attention_ds`` is matched against.
    """
    ch = level_channels[0]
    inputs: list[tuple[Layer, ...]] = [(("conv", ch),)]
    ds = 1
    for level, out in enumerate(level_channels):
        for _ in range(num_res_blocks):
            ch = out
            attn = (("attn", heads(ch)),) if ds in attention_ds else ()
            inputs.append((("res", ch), *attn))
        if level != len(level_channels) - 1:
            inputs.append((("down", ch),))
            ds *= 2
    middle = (("res", ch), ("attn", heads(ch)), ("res", ch))
    outputs: list[tuple[Layer, ...]] = []
    for level in reversed(range(len(level_channels))):
        for i in range(num_res_blocks + 1):
            ch = level_channels[level]
            layers: list[Layer] = [("res", ch)]
            if ds in attention_ds:
                layers.append(("attn", heads(ch)))
            if level and i == num_res_blocks:
                layers.append(("up", ch))
                ds //= 2
            outputs.append(tuple(layers))
    return tuple(inputs), middle, tuple(outputs)


class _ADMUNet(nn.Module):
    inputs: tuple[tuple[Layer, ...], ...]
    middle: tuple[Layer, ...]
    outputs: tuple[tuple[Layer, ...], ...]
    num_channels: int
    out_channels: int
    num_classes: int | None
    dropout: float
    conv: str
    remat: str
    dtype: Any

    def _block(
        self, prefix: str, layers: Sequence[Layer], h: Array, emb: Array, train: bool
    ) -> Array:
        """One ``TimestepEmbedSequential``: its layers, named ``{prefix}_{index}``."""
        res_block, attention = _ResBlock, _Attention
        if self.remat != "none":  # one jax.checkpoint per block; params named as without
            policy = remat_policy(self.remat)
            res_block = nn.remat(_ResBlock, policy=policy, static_argnums=(3,))
            attention = nn.remat(_Attention, policy=policy)
        for j, (kind, arg) in enumerate(layers):
            name = f"{prefix}_{j}"
            if kind == "conv":
                h = _Conv2d(arg, impl=self.conv, name=name)(h)
            elif kind == "res":
                h = res_block(arg, self.dropout, self.conv, self.dtype, name=name)(h, emb, train)
            elif kind == "attn":
                h = attention(arg, self.dtype, name=name)(h)
            elif kind == "down":
                h = _Downsample(self.conv, name=name)(h)
            else:
                h = _Upsample(self.conv, name=name)(h)
        return h

    def _embedding(self, t: Array, context: Array | None) -> Array:
        """``time_embed(timestep_embedding(t))`` plus ``label_emb`` of the class labels."""
        c, dt = self.num_channels, self.dtype
        emb = _dense(4 * c, c, dt, "time_embed_0")(_timestep_embedding(t, c))
        emb = _dense(4 * c, 4 * c, dt, "time_embed_2")(nn.silu(emb))
        if self.num_classes is not None:
            init = nn.initializers.normal(1.0)  # torch.nn.Embedding's N(0, 1)
            embed = nn.Embed(self.num_classes, 4 * c, embedding_init=init, name="label_emb")
            if jnp.issubdtype(context.dtype, jnp.integer):
                label = embed(context)
            else:  # one-hot (or soft) labels
                table = embed(jnp.arange(self.num_classes))
                label = jnp.matmul(context.astype(jnp.float32), table, precision="highest")
            emb = emb + label.astype(emb.dtype)
        return emb

    @nn.compact
    def __call__(self, t: Array, x: Array, context: Array | None, train: bool = False) -> Array:
        emb = self._embedding(t, context)
        h, hs = x.astype(self.dtype), []
        for i, layers in enumerate(self.inputs):
            h = self._block(f"input_blocks_{i}", layers, h, emb, train)
            hs.append(h)
        h = self._block("middle_block", self.middle, h, emb, train)
        for i, layers in enumerate(self.outputs):
            h = jnp.concatenate([h, hs.pop()], axis=-1)
            h = self._block(f"output_blocks_{i}", layers, h, emb, train)
        h = nn.silu(_group_norm(h, "out_0"))
        h = _Conv2d(self.out_channels, impl=self.conv, zero_init=True, name="out_2")(h)
        return h.astype(x.dtype)


def _level_channels(num_channels: int, channel_mult: Sequence[float]) -> tuple[int, ...]:
    chans = tuple(int(m * num_channels) for m in channel_mult)
    if not chans or any(c < _GROUPS or c % _GROUPS for c in chans):
        raise ValueError(
            f"adm_unet: every level's channels int(mult * num_channels) must be a positive "
            f"multiple of {_GROUPS} (GroupNorm with {_GROUPS} groups), got {chans} from "
            f"num_channels={num_channels}, channel_mult={tuple(channel_mult)}"
        )
    return chans


def _attention_ds(image_shape: Sequence[int], levels: int, resolutions: Sequence[int]):
    """The downsampling factors of ``attention_resolutions`` (widths, as torchcfm's
    ``image_size // res``), checked against the resolutions the levels have."""
    if len(image_shape) != 3 or any(int(s) != s or s < 1 for s in image_shape):
        raise ValueError(f"adm_unet: image_shape must be (H, W, C), got {tuple(image_shape)}")
    h, w, _ = image_shape
    step = 2 ** (levels - 1)
    if h % step or w % step:
        raise ValueError(
            f"adm_unet: image height and width must be divisible by 2 ** (levels - 1) = {step} "
            f"for {levels} levels, got image_shape={tuple(image_shape)}"
        )
    widths = [w // 2**level for level in range(levels)]
    for res in resolutions:
        if res not in widths:
            raise ValueError(
                f"adm_unet: attention resolution {res!r} is not the width of a level; the "
                f"levels of a {h}x{w} image with {levels} levels have widths {widths}"
            )
    return tuple(sorted({w // int(res) for res in resolutions}))


def _heads_fn(num_heads: int, num_head_channels: int):
    def heads(ch: int) -> int:
        per_head = ch // num_heads if num_head_channels == -1 else num_head_channels
        if per_head < 1 or ch % per_head:
            what = f"num_heads={num_heads}" if num_head_channels == -1 else "num_head_channels"
            raise ValueError(
                f"adm_unet: an attention block has {ch} channels, not divisible into heads "
                f"by {what} (num_head_channels={num_head_channels})"
            )
        return ch // per_head

    return heads


def adm_unet(
    image_shape: Sequence[int] = (32, 32, 3),
    num_channels: int = 128,
    num_res_blocks: int = 2,
    channel_mult: Sequence[float] = (1, 2, 2, 2),
    num_heads: int = 4,
    num_head_channels: int = 64,
    attention_resolutions: Sequence[int] | str = (16,),
    dropout: float = 0.1,
    *,
    num_classes: int | None = None,
    conv: str = "xla",
    remat: str = "none",
    dtype: Any = None,
) -> Network:
    """torchcfm's CIFAR-10 UNet ``(t, x[, context]) -> (batch, H, W, C)`` on NHWC images.

    The architecture of torchcfm's ``UNetModelWrapper(dim=(C, H, W), num_channels,
    num_res_blocks, channel_mult, num_heads=..., num_head_channels=...,
    attention_resolutions="16", dropout=...)`` (``torchcfm/models/unet/unet.py``, from
    OpenAI's guided-diffusion ADM UNet), ported layer for layer. The defaults are torchcfm's
    CIFAR-10 recipe: 35,746,307 parameters for 3 channels.

    * Time: ``timestep_embedding`` of ``t`` (``[cos, sin]``, ``num_channels`` features,
      max period 10000, ``t`` unscaled), then Linear(4c), SiLU, Linear(4c). Flow-matching
      time convention, the same in torchcfm and flowzoo: t=0 noise, t=1 data; times pass
      through unchanged.
    * Levels ``int(mult * num_channels)`` channels each; ``num_res_blocks`` residual blocks
      per level down and ``num_res_blocks + 1`` up (skip concatenation), a stride-2 3x3
      convolution down and nearest 2x + 3x3 convolution up between levels.
    * Residual blocks: GroupNorm(32), SiLU, conv3x3, + Linear(SiLU(emb)), GroupNorm(32),
      SiLU, dropout, zero-initialised conv3x3; a 1x1 skip convolution when channels change.
    * Self-attention (heads split before q/k/v, ``QKVAttentionLegacy``) after every residual
      block of the levels whose width is in ``attention_resolutions`` (16: the 16x16 level
      of a 32x32 image) and in the middle (res, attention, res). Heads: ``ch //
      num_head_channels``, or ``num_heads`` when ``num_head_channels == -1``.
    * Output: GroupNorm(32), SiLU, zero-initialised conv3x3, so the network starts as 0.

    Initialisation is torch's (uniform on ``+-1/sqrt(fan_in)``, zeros where torchcfm zeroes).
    Checkpoints of torchcfm load through :func:`adm_unet_params_from_torch`.

    Args:
      image_shape: ``(H, W, C)``; H and W divisible by ``2 ** (len(channel_mult) - 1)``.
      num_channels: base width; every level's width must be a multiple of 32.
      num_res_blocks: residual blocks per level.
      channel_mult: width multipliers, finest level first.
      num_heads: heads per attention block when ``num_head_channels == -1``.
      num_head_channels: channels per head (``-1``: use ``num_heads``).
      attention_resolutions: level widths (pixels) that get attention after each block, or
        torchcfm's string form (``"16"``, ``"16,8"``).
      dropout: drop probability in the residual blocks; active only when ``apply`` gets
        ``rng=key`` (training), otherwise the network is deterministic.
      num_classes: class-conditional (torchcfm ``class_cond``): ``context`` is integer
        labels ``(batch,)`` or one-hot rows ``(batch, num_classes)``; their embedding is
        added to the time embedding.
      conv: ``"xla"`` (``lax.conv_general_dilated``) or ``"im2col"`` (patches @ kernel,
        faster inside a ``lax.scan`` on XLA:CPU); the same parameters either way.
      remat: rematerialise every residual and attention block with that policy
        (:func:`flowzoo.nets.remat_policy`); values and parameters are those of ``"none"``.
      dtype: compute dtype of activations, convolutions and matmuls (e.g. ``jnp.bfloat16``;
        parameters stay as given, GroupNorm and softmax run in float32, as torchcfm's
        ``GroupNorm32`` under autocast). ``None``: the parameters' dtype when that is a
        half-precision one (``flowzoo.train``'s ``compute_dtype``), else float32.

    Returns:
      A :class:`Network`: ``init(key, t, x, context=None)`` (example inputs) and
      ``apply(params, t, x, context=None, *, rng=None)`` with ``t`` a scalar or ``(batch,)``,
      ``x`` of shape ``(batch, *image_shape)``; the output has ``x``'s shape and dtype.
    """
    remat_policy(remat)  # an unknown name fails here, with the choices
    if conv not in ("im2col", "xla"):
        raise ValueError(f"adm_unet: conv must be 'im2col' or 'xla', got {conv!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"adm_unet: dropout must be in [0, 1), got {dropout!r}")
    if num_classes is not None:
        num_classes = count_arg(num_classes, "num_classes", "adm_unet")
    num_channels = count_arg(num_channels, "num_channels", "adm_unet")
    num_res_blocks = count_arg(num_res_blocks, "num_res_blocks", "adm_unet")
    if num_head_channels != -1:
        count_arg(num_head_channels, "num_head_channels (or -1)", "adm_unet")
    chans = _level_channels(num_channels, tuple(channel_mult))
    shape = tuple(image_shape)
    if isinstance(attention_resolutions, str):
        attention_resolutions = [int(r) for r in attention_resolutions.split(",")]
    attn_ds = _attention_ds(shape, len(chans), tuple(attention_resolutions))
    heads = _heads_fn(count_arg(num_heads, "num_heads", "adm_unet"), num_head_channels)
    inputs, middle, outputs = _plan(chans, num_res_blocks, attn_ds, heads)
    config = dict(
        inputs=inputs,
        middle=middle,
        outputs=outputs,
        num_channels=num_channels,
        out_channels=int(shape[-1]),
        num_classes=num_classes,
        dropout=float(dropout),
        conv=conv,
        remat=remat,
    )
    compute = None if dtype is None else jnp.dtype(dtype)
    if compute is not None and not jnp.issubdtype(compute, jnp.floating):
        raise ValueError(f"adm_unet: dtype must be a floating dtype or None, got {dtype!r}")
    return _network(config, shape, compute)


def _check_inputs(shape: tuple[int, ...], num_classes: int | None, x: Array, context: Any):
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"adm_unet: x must have shape (batch, *{shape}), got {x.shape}")
    if num_classes is None:
        if context is not None:
            raise ValueError("adm_unet: context given to a network built without num_classes")
        return
    n = x.shape[0]
    ok = context is not None and (
        (context.shape == (n,) and jnp.issubdtype(context.dtype, jnp.integer))
        or (context.shape == (n, num_classes) and jnp.issubdtype(context.dtype, jnp.floating))
    )
    if not ok:
        got = None if context is None else (context.shape, str(context.dtype))
        raise ValueError(
            f"adm_unet: context must be integer labels ({n},) or one-hot rows "
            f"({n}, {num_classes}) for num_classes={num_classes}, got {got}"
        )


def _compute_dtype(params: Params, dtype: Any) -> Any:
    if dtype is not None:
        return dtype
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.floating) and jnp.finfo(leaf.dtype).bits < 32:
            return leaf.dtype
    return jnp.dtype(jnp.float32)


def _network(config: dict[str, Any], shape: tuple[int, ...], dtype: Any) -> Network:
    num_classes, dropout = config["num_classes"], config["dropout"]

    @jax.jit  # compiled: eager flax init of a UNet is slower than compiling it
    def init(key: Key, t: Array, x: Array, context: Array | None = None) -> Params:
        _check_inputs(shape, num_classes, x, context)
        module = _ADMUNet(**config, dtype=dtype or jnp.dtype(jnp.float32))
        return module.init(key, _batch_times(t, x.shape[0]), x, context)

    def apply(
        params: Params,
        t: Float[Array, " batch"] | float,
        x: Float[Array, "batch H W C"],
        context: Array | None = None,
        *,
        rng: Key | None = None,
    ) -> Float[Array, "batch H W C"]:
        _check_inputs(shape, num_classes, x, context)
        module = _ADMUNet(**config, dtype=_compute_dtype(params, dtype))
        t = _batch_times(t, x.shape[0])
        if rng is None or not dropout:
            return module.apply(params, t, x, context)
        return module.apply(params, t, x, context, True, rngs={"dropout": rng})

    return Network(init, apply)


_TOP_PARTS = {
    "input_blocks": 3,
    "output_blocks": 3,
    "middle_block": 2,
    "time_embed": 2,
    "out": 2,
    "label_emb": 1,
}


def _leaf(key: str, name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """The flax leaf name and array of one torch tensor (OIHW -> HWIO, (out, in) -> (in, out))."""
    if name == "bias" and value.ndim == 1:
        return "bias", value
    if name == "weight":
        if value.ndim == 4:  # Conv2d
            return "kernel", value.transpose(2, 3, 1, 0)
        if value.ndim == 3 and value.shape[2] == 1:  # the attention's 1x1 Conv1d
            return "kernel", value[:, :, 0].T
        if value.ndim == 2:
            return ("embedding", value) if key.startswith("label_emb.") else ("kernel", value.T)
        if value.ndim == 1:  # GroupNorm affine
            return "scale", value
    raise ValueError(f"adm_unet_params_from_torch: unexpected tensor {key!r} {value.shape}")


def adm_unet_params_from_torch(state_dict: Mapping[str, Any]) -> Params:
    """flowzoo params of :func:`adm_unet` from a torchcfm ``UNetModelWrapper`` state dict.

    ``state_dict`` maps torchcfm's parameter names to arrays convertible with
    ``np.asarray`` (``{k: v.cpu().numpy() for k, v in model.state_dict().items()}``; a
    ``"module."`` prefix, as ``torch.nn.DataParallel`` saves, is dropped). Convolution
    kernels go from OIHW to HWIO, linear and 1x1 ``Conv1d`` weights are transposed,
    GroupNorm weights become ``scale``; values are float32. Build the network with the
    matching arguments (the shapes are checked when ``apply`` uses the params).

    Returns:
      ``{"params": ...}`` for ``adm_unet(...).apply``.
    """
    tree: dict[str, Any] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        parts = key.split(".")
        top = _TOP_PARTS.get(parts[0])
        if top is None or len(parts) <= top:
            raise ValueError(f"adm_unet_params_from_torch: unexpected parameter {key!r}")
        path = ["_".join(parts[:top])] + (["_".join(parts[top:-1])] if len(parts) > top + 1 else [])
        leaf, array = _leaf(key, parts[-1], np.asarray(value, dtype=np.float32))
        node = tree
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = jnp.asarray(array)
    return {"params": tree}
