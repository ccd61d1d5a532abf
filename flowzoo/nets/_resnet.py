"""A small convolutional ResNet for NHWC images, used as the conditioner of image couplings.

``conv3x3 -> num_blocks x [act, conv3x3, act, conv1x1] (residual) -> act -> conv3x3`` with
the output convolution zero-initialised, so an affine coupling driven by it starts as the
identity (Kingma & Dhariwal 2018, section 3.3; Dinh et al. 2017 use residual conditioners).
With ``num_blocks=1`` the residual branch is Glow's ``conv3x3 -> conv1x1`` network.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import Float

from .._types import Array, Key, Params
from ._mlp import Network, activation
from ._remat import CONV_NAME

_NHWC = ("NHWC", "HWIO", "NHWC")


def _pads(padding, kh: int, kw: int) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return (0, 0), (0, 0)
        return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)
    return tuple(padding[0]), tuple(padding[1])


def _taps_conv(x: Array, w: Array, padding, out_hw: tuple[int, int]) -> Array:
    """The same stride-1 convolution as one matmul per kernel tap of shifted inputs."""
    kh, kw = w.shape[:2]
    (t, b), (lft, r) = _pads(padding, kh, kw)
    xp = jnp.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)))
    h, wd = out_hw
    return sum(
        jnp.einsum("bhwc,co->bhwo", xp[:, i : i + h, j : j + wd, :], w[i, j])
        for i in range(kh)
        for j in range(kw)
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def conv_tap_grad(x: Array, w: Array, padding) -> Array:
    """Stride-1 NHWC convolution (HWIO kernel) whose gradients XLA:CPU runs fast in loops.

    Equal to ``lax.conv_general_dilated(x, w, (1, 1), padding)``. XLA:CPU hands a
    convolution to its Eigen kernels only in the canonical form (NHWC input, HWIO kernel,
    NHWC output); its pass that rewrites other forms into that one visits the top-level
    computation only, so a gradient convolution inside a ``while`` body (``lax.scan`` over
    the steps of a Glow level, a multi-step train call) runs in a naive loop nest, several
    times slower at XLA's default optimisation. Reverse mode transposes this custom JVP into
    canonical pieces: the kernel's tangent into one matmul per tap of shifted inputs, the
    input's tangent into a convolution with an HWIO kernel (the JVP convolves ``dx`` with the
    kernel's channel axes swapped, labelled HWOI, which transposes to the HWIO form).
    ``padding``: ``"SAME"``, ``"VALID"`` or explicit pairs.
    """
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


@conv_tap_grad.defjvp
def _conv_jvp(padding, primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = conv_tap_grad(x, w, padding)
    # linear in (dx, dw). The dx term is the same convolution with the kernel stored with
    # swapped channel axes (HWOI): its transpose, the input gradient, is then an HWIO
    # convolution (JAX's transpose swaps the kernel's channel labels); the dw term's
    # transpose is per-tap matmuls instead of the kernel-gradient convolution
    w_oi = jnp.swapaxes(w, 2, 3)
    dn = ("NHWC", "HWOI", "NHWC")
    dy = jax.lax.conv_general_dilated(dx, w_oi, (1, 1), padding, dimension_numbers=dn)
    return y, dy + _taps_conv(x, dw, padding, y.shape[1:3])


def _conv(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    **kwargs,
):
    """``lax.conv_general_dilated`` with loop-friendly gradients on CPU.

    XLA:CPU runs non-canonical convolutions inside a ``while`` loop (the ``lax.scan`` over
    the steps of a Glow level) in a naive loop nest; :func:`conv_tap_grad` gives reverse
    mode canonical pieces only (per-tap matmuls for the kernel, an HWIO convolution for the
    input). Other backends and non-plain convolutions use ``lax.conv_general_dilated``
    unchanged.
    The output is named ``"conv"`` for the ``"conv_outputs"`` remat policy.
    """
    plain = (
        jax.default_backend() == "cpu"
        and lhs.ndim == 4
        and tuple(window_strides) == (1, 1)
        and feature_group_count == 1
        and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
        and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
        and not kwargs.get("preferred_element_type")
    )
    if not plain:
        out = jax.lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            **kwargs,
        )
        return checkpoint_name(out, CONV_NAME)
    pad = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    return checkpoint_name(conv_tap_grad(lhs, rhs, pad), CONV_NAME)


def _in_param_dtype(params: Params, x: Array) -> Array:
    """Cast ``x`` to the parameters' float dtype when narrower (bfloat16 mixed precision)."""
    leaves = [p for p in jax.tree.leaves(params) if jnp.issubdtype(p.dtype, jnp.floating)]
    if leaves and jnp.finfo(leaves[0].dtype).bits < jnp.finfo(x.dtype).bits:
        return x.astype(leaves[0].dtype)
    return x


class _ResNet(nn.Module):
    out_channels: int
    hidden: int
    num_blocks: int
    act: Callable[[Array], Array]
    zero_init_last: bool
    residual: bool = True

    @nn.compact
    def __call__(self, x: Array, context: Array | None) -> Array:
        h = nn.Conv(self.hidden, (3, 3), conv_general_dilated=_conv)(x)
        if context is not None:  # a per-example bias on every pixel
            c = context.reshape(context.shape[0], -1).astype(h.dtype)
            h = h + nn.Dense(self.hidden)(c)[:, None, None, :]
        for _ in range(self.num_blocks):
            if not self.residual:  # Glow's hidden layer: act -> conv1x1
                h = nn.Conv(self.hidden, (1, 1), conv_general_dilated=_conv)(self.act(h))
                continue
            r = nn.Conv(self.hidden, (3, 3), conv_general_dilated=_conv)(self.act(h))
            h = h + nn.Conv(self.hidden, (1, 1), conv_general_dilated=_conv)(self.act(r))
        last = nn.initializers.zeros if self.zero_init_last else nn.linear.default_kernel_init
        out = nn.Conv(
            self.out_channels,
            (3, 3),
            kernel_init=last,
            bias_init=nn.initializers.zeros,
            conv_general_dilated=_conv,
        )
        return out(self.act(h))


def resnet(
    out_channels: int,
    hidden: int = 64,
    num_blocks: int = 2,
    activation_fn: str | Callable[[Array], Array] = "relu",
    zero_init_last: bool = True,
    *,
    residual: bool = True,
) -> Network:
    """A convolutional ResNet ``(batch, H, W, C_in) -> (batch, H, W, out_channels)``.

    All convolutions use ``SAME`` padding and stride 1, so the spatial size is kept.

    Args:
      out_channels: channels of the output.
      hidden: channels of the hidden feature maps.
      num_blocks: residual blocks ``h + conv1x1(act(conv3x3(act(h))))``; ``0`` gives
        ``conv3x3 -> act -> conv3x3``.
      activation_fn: activation (name or callable, see :func:`flowzoo.nets.activation`).
      zero_init_last: zero-initialise the output convolution (kernel and bias), so the network
        starts as the constant 0.
      residual: ``False`` makes each block a plain ``act -> conv1x1`` layer, so
        ``num_blocks=1`` is the conditioner of Glow (Kingma & Dhariwal 2018, openai/glow
        ``f_``): ``conv3x3 -> act -> conv1x1 -> act -> conv3x3`` (without the ActNorm that
        Glow's code applies after each hidden convolution).

    Returns:
      ``Network(init(key, x, context=None), apply(params, x, context=None))``. ``context``
      (optional, ``(batch, *ctx)``) is flattened, projected to ``hidden`` channels and added
      to the first feature map at every pixel.
    """
    if num_blocks < 0:
        raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
    module = _ResNet(
        int(out_channels),
        int(hidden),
        int(num_blocks),
        activation(activation_fn),
        zero_init_last,
        bool(residual),
    )

    def _check(x: Array) -> None:
        if x.ndim != 4:
            raise ValueError(f"resnet expects NHWC inputs (batch, H, W, C), got shape {x.shape}")

    def init(key: Key, x: Float[Array, "batch h w c"], context: Array | None = None) -> Params:
        _check(x)
        return module.init(key, x, context)

    def apply(
        params: Params, x: Float[Array, "batch h w c"], context: Array | None = None
    ) -> Float[Array, "batch h w out"]:
        _check(x)
        if context is not None and context.shape[0] != x.shape[0]:
            raise ValueError(
                f"context has leading size {context.shape[0]} but the input has batch {x.shape[0]}"
            )
        return module.apply(params, _in_param_dtype(params, x), context)

    return Network(init, apply)
