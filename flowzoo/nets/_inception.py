"""The Inception-v3 pool-3 network of the FID reference implementation, in plain JAX.

The architecture is pytorch-fid's ``fid_inception_v3()`` (github.com/mseitzer/pytorch-fid,
``src/pytorch_fid/inception.py``): torchvision's ``Inception3`` (github.com/pytorch/vision,
``torchvision/models/inception.py``) with ``Mixed_5b/5c/5d`` as ``FIDInceptionA``,
``Mixed_6b..6e`` as ``FIDInceptionC``, ``Mixed_7b`` as ``FIDInceptionE_1`` and ``Mixed_7c``
as ``FIDInceptionE_2``: their 3x3 average pools leave the zero padding out of the mean
(``count_include_pad=False``, as TensorFlow's graph does) and ``Mixed_7c``'s pool branch is
a 3x3 max pool. Every convolution is torchvision's ``BasicConv2d``: a convolution without
bias, batch norm in inference mode (``eps=0.001``, running statistics) and a ReLU.

The forward pass is pytorch-fid's ``InceptionV3([3], resize_input=True,
normalize_input=True)``: a bilinear resize to 299x299 (``F.interpolate(...,
mode="bilinear", align_corners=False)``, no antialiasing, reproduced exactly by two
interpolation matrices), the scaling ``2 x - 1`` from ``[0, 1]`` to ``[-1, 1]``, the
network up to ``Mixed_7c`` and a global average pool: 2048 features per image.

Parameters are a flat dict keyed as torch's ``state_dict`` (``"Mixed_5b.branch1x1.conv.
weight"``, ``"...bn.running_var"``) with torch's layouts (convolution kernels ``(out, in,
kh, kw)``), so the published weights load without renaming or transposing. The final
classifier (``fc``) is not part of it.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._types import Array, Float, Key, Params, Shaped
from ._mlp import Network

FID_INCEPTION_SIZE = 299
"""Side of the square images the network sees (inputs are resized to it)."""

FID_FEATURES = 2048
"""Number of pool-3 features per image."""

_BN_EPS = 1e-3
_DIMS = ("NHWC", "OIHW", "NHWC")


class _Conv(NamedTuple):
    cin: int
    cout: int
    kernel: tuple[int, int]
    stride: int = 1
    pad: tuple[int, int] = (0, 0)


def _k(cin: int, cout: int, kh: int, kw: int | None = None, stride: int = 1) -> _Conv:
    """A ``kh x kw`` BasicConv2d with torchvision's 'same' padding ``(kh // 2, kw // 2)``
    (none for strided convolutions, which are unpadded in Inception-v3)."""
    kw = kh if kw is None else kw
    pad = (0, 0) if stride > 1 else (kh // 2, kw // 2)
    return _Conv(cin, cout, (kh, kw), stride, pad)


def _block_a(cin: int, pool: int) -> dict[str, _Conv]:
    return {
        "branch1x1": _k(cin, 64, 1), "branch5x5_1": _k(cin, 48, 1), "branch5x5_2": _k(48, 64, 5),
        "branch3x3dbl_1": _k(cin, 64, 1), "branch3x3dbl_2": _k(64, 96, 3),
        "branch3x3dbl_3": _k(96, 96, 3), "branch_pool": _k(cin, pool, 1),
    }  # fmt: skip


def _block_b(cin: int) -> dict[str, _Conv]:
    return {
        "branch3x3": _k(cin, 384, 3, stride=2), "branch3x3dbl_1": _k(cin, 64, 1),
        "branch3x3dbl_2": _k(64, 96, 3), "branch3x3dbl_3": _k(96, 96, 3, stride=2),
    }  # fmt: skip


def _block_c(cin: int, c7: int) -> dict[str, _Conv]:
    return {
        "branch1x1": _k(cin, 192, 1),
        "branch7x7_1": _k(cin, c7, 1), "branch7x7_2": _k(c7, c7, 1, 7),
        "branch7x7_3": _k(c7, 192, 7, 1),
        "branch7x7dbl_1": _k(cin, c7, 1), "branch7x7dbl_2": _k(c7, c7, 7, 1),
        "branch7x7dbl_3": _k(c7, c7, 1, 7), "branch7x7dbl_4": _k(c7, c7, 7, 1),
        "branch7x7dbl_5": _k(c7, 192, 1, 7),
        "branch_pool": _k(cin, 192, 1),
    }  # fmt: skip


def _block_d(cin: int) -> dict[str, _Conv]:
    return {
        "branch3x3_1": _k(cin, 192, 1), "branch3x3_2": _k(192, 320, 3, stride=2),
        "branch7x7x3_1": _k(cin, 192, 1), "branch7x7x3_2": _k(192, 192, 1, 7),
        "branch7x7x3_3": _k(192, 192, 7, 1), "branch7x7x3_4": _k(192, 192, 3, stride=2),
    }  # fmt: skip


def _block_e(cin: int) -> dict[str, _Conv]:
    return {
        "branch1x1": _k(cin, 320, 1),
        "branch3x3_1": _k(cin, 384, 1), "branch3x3_2a": _k(384, 384, 1, 3),
        "branch3x3_2b": _k(384, 384, 3, 1),
        "branch3x3dbl_1": _k(cin, 448, 1), "branch3x3dbl_2": _k(448, 384, 3),
        "branch3x3dbl_3a": _k(384, 384, 1, 3), "branch3x3dbl_3b": _k(384, 384, 3, 1),
        "branch_pool": _k(cin, 192, 1),
    }  # fmt: skip


_STEM = {
    "Conv2d_1a_3x3": _k(3, 32, 3, stride=2), "Conv2d_2a_3x3": _Conv(32, 32, (3, 3)),
    "Conv2d_2b_3x3": _k(32, 64, 3), "Conv2d_3b_1x1": _k(64, 80, 1),
    "Conv2d_4a_3x3": _Conv(80, 192, (3, 3)),
}  # fmt: skip
"""The stem (``Conv2d_2a_3x3`` and ``Conv2d_4a_3x3`` are unpadded)."""

_MIXED: tuple[tuple[str, str, dict[str, _Conv]], ...] = (
    ("Mixed_5b", "a", _block_a(192, 32)), ("Mixed_5c", "a", _block_a(256, 64)),
    ("Mixed_5d", "a", _block_a(288, 64)), ("Mixed_6a", "b", _block_b(288)),
    ("Mixed_6b", "c", _block_c(768, 128)), ("Mixed_6c", "c", _block_c(768, 160)),
    ("Mixed_6d", "c", _block_c(768, 160)), ("Mixed_6e", "c", _block_c(768, 192)),
    ("Mixed_7a", "d", _block_d(768)), ("Mixed_7b", "e_1", _block_e(1280)),
    ("Mixed_7c", "e_2", _block_e(2048)),
)  # fmt: skip
"""The mixed blocks in order: (name, kind, convolutions)."""

_LAYERS: dict[str, _Conv] = {
    **_STEM,
    **{f"{name}.{conv}": spec for name, _, convs in _MIXED for conv, spec in convs.items()},
}


def fid_inception_shapes() -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter of :func:`fid_inception` (470 arrays, 21.8M values).

    For each of the 94 ``BasicConv2d`` layers ``L`` (torch ``state_dict`` names):
    ``L.conv.weight`` ``(out, in, kh, kw)`` and ``L.bn.weight``, ``L.bn.bias``,
    ``L.bn.running_mean``, ``L.bn.running_var``, each ``(out,)``.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for name, c in _LAYERS.items():
        shapes[f"{name}.conv.weight"] = (c.cout, c.cin, *c.kernel)
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{field}"] = (c.cout,)
    return shapes


def _basic_conv(params: Params, name: str, x: Array, precision) -> Array:
    """torchvision's BasicConv2d in inference mode: conv (no bias), batch norm, ReLU."""
    spec = _LAYERS[name]
    y = lax.conv_general_dilated(
        x, params[f"{name}.conv.weight"], (spec.stride, spec.stride),
        [(spec.pad[0], spec.pad[0]), (spec.pad[1], spec.pad[1])],
        dimension_numbers=_DIMS, precision=precision,
    )  # fmt: skip
    scale = params[f"{name}.bn.weight"] * lax.rsqrt(params[f"{name}.bn.running_var"] + _BN_EPS)
    shift = params[f"{name}.bn.bias"] - params[f"{name}.bn.running_mean"] * scale
    return jax.nn.relu(y * scale[None, None, None] + shift[None, None, None])


def _max_pool(x: Array, stride: int, pad: int = 0) -> Array:
    """3x3 max pool; padding counts as ``-inf`` (torch's ``max_pool2d``)."""
    pads = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pads)


def _avg_pool_valid(x: Array) -> Array:
    """3x3 stride-1 average pool over the in-bounds pixels only (``count_include_pad=False``)."""
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pads)
    ch, cw = (np.convolve(np.ones(n), np.ones(3))[1 : n + 1] for n in x.shape[1:3])
    return total / np.outer(ch, cw)[None, :, :, None].astype(np.float32)


def _mixed(params: Params, prefix: str, kind: str, x: Array, precision) -> Array:
    """One mixed block; branches are concatenated along channels in torch's order."""

    def conv(name: str, h: Array) -> Array:
        return _basic_conv(params, f"{prefix}.{name}", h, precision)

    def chain(names: tuple[str, ...], h: Array) -> Array:
        for name in names:
            h = conv(name, h)
        return h

    cat = partial(jnp.concatenate, axis=-1)
    if kind == "a":
        return cat([conv("branch1x1", x), chain(("branch5x5_1", "branch5x5_2"), x),
                    chain(("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), x),
                    conv("branch_pool", _avg_pool_valid(x))])  # fmt: skip
    if kind == "b":
        return cat([conv("branch3x3", x),
                    chain(("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), x),
                    _max_pool(x, 2)])  # fmt: skip
    if kind == "c":
        return cat([conv("branch1x1", x), chain(tuple(f"branch7x7_{i}" for i in (1, 2, 3)), x),
                    chain(tuple(f"branch7x7dbl_{i}" for i in range(1, 6)), x),
                    conv("branch_pool", _avg_pool_valid(x))])  # fmt: skip
    if kind == "d":
        return cat([chain(("branch3x3_1", "branch3x3_2"), x),
                    chain(tuple(f"branch7x7x3_{i}" for i in range(1, 5)), x),
                    _max_pool(x, 2)])  # fmt: skip
    b3 = conv("branch3x3_1", x)
    b3dbl = chain(("branch3x3dbl_1", "branch3x3dbl_2"), x)
    pooled = _avg_pool_valid(x) if kind == "e_1" else _max_pool(x, 1, pad=1)
    return cat([conv("branch1x1", x), conv("branch3x3_2a", b3), conv("branch3x3_2b", b3),
                conv("branch3x3dbl_3a", b3dbl), conv("branch3x3dbl_3b", b3dbl),
                conv("branch_pool", pooled)])  # fmt: skip


def _bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` weights of torch's bilinear interpolation along one axis
    (``align_corners=False``): source ``(i + 0.5) * in / out - 0.5``, clamped at 0, between
    pixels ``floor`` and ``floor + 1`` (the last pixel repeats at the far edge)."""
    src = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    frac = src - lo
    hi = np.minimum(lo + 1, size_in - 1)
    mat = np.zeros((size_out, size_in), np.float64)
    np.add.at(mat, (np.arange(size_out), lo), 1.0 - frac)
    np.add.at(mat, (np.arange(size_out), hi), frac)
    return mat.astype(np.float32)


def _resize(x: Array) -> Array:
    """Bilinear resize of NHWC images to 299x299 (the identity at that size)."""
    size = FID_INCEPTION_SIZE
    h, w = x.shape[1:3]
    if (h, w) == (size, size):
        return x
    hi = lax.Precision.HIGHEST
    x = jnp.einsum("oh,bhwc->bowc", _bilinear_matrix(h, size), x, precision=hi)
    return jnp.einsum("pw,bowc->bopc", _bilinear_matrix(w, size), x, precision=hi)


def _check_images(x) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"fid_inception: expected NHWC RGB images (batch, H, W, 3), got {x.shape}")


def fid_inception(precision: str | lax.Precision = "highest") -> Network:
    """The FID Inception-v3 (pool-3 features) as ``Network(init, apply)``.

    ``apply(params, images) -> (batch, 2048)`` float32 features. ``images``: NHWC RGB
    ``(batch, H, W, 3)``, floats in ``[0, 1]`` or ``uint8`` (divided by 255); any ``H, W``
    (bilinearly resized to 299x299 as pytorch-fid does; sizes below 299 are upsampled).
    ``params``: :func:`flowzoo.metrics.load_fid_weights` of the converted published weights
    (names and shapes :func:`fid_inception_shapes`).

    ``init(key, images=None) -> params`` draws random weights (He-normal kernels, unit
    batch-norm statistics): an untrained network with the right structure, for tests.

    Args:
      precision: of the convolutions (``jax.lax.Precision`` or its name); ``"highest"``
        keeps float32 on accelerators (TF32/bf16 passes change the features by ~1e-3).

    Source: pytorch-fid ``src/pytorch_fid/inception.py`` (``InceptionV3``,
    ``fid_inception_v3``) over torchvision ``torchvision/models/inception.py``; see the
    module docstring for the exact correspondence.
    """
    prec = lax.Precision(precision) if isinstance(precision, str) else precision
    shapes = fid_inception_shapes()

    def init(key: Key, images: Array | None = None) -> Params:
        if images is not None:
            _check_images(images)
        sizes = [int(np.prod(shapes[f"{name}.conv.weight"])) for name in _LAYERS]
        noise = jax.random.normal(key, (sum(sizes),))  # one draw, cut into the kernels
        params: dict[str, Array] = {}
        for start, size, (name, c) in zip(
            np.cumsum([0, *sizes]), sizes, _LAYERS.items(), strict=False
        ):
            fan_in = c.cin * c.kernel[0] * c.kernel[1]
            w = noise[start : start + size].reshape(shapes[f"{name}.conv.weight"])
            params[f"{name}.conv.weight"] = w * np.sqrt(2.0 / fan_in)
            params[f"{name}.bn.weight"] = params[f"{name}.bn.running_var"] = jnp.ones(c.cout)
            params[f"{name}.bn.bias"] = params[f"{name}.bn.running_mean"] = jnp.zeros(c.cout)
        return params

    def apply(params: Params, images: Shaped[Array, "batch H W 3"]) -> Float[Array, "batch 2048"]:
        x = jnp.asarray(images)
        _check_images(x)
        x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
        x = 2.0 * _resize(x) - 1.0
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = _basic_conv(params, name, x, prec)
        x = _max_pool(x, 2)
        for name in ("Conv2d_3b_1x1", "Conv2d_4a_3x3"):
            x = _basic_conv(params, name, x, prec)
        x = _max_pool(x, 2)
        for name, kind, _ in _MIXED:
            x = _mixed(params, name, kind, x, prec)
        return jnp.mean(x, axis=(1, 2))

    return Network(init, apply)
