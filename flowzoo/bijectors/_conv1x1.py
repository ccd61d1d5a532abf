"""Invertible 1x1 convolution (Kingma & Dhariwal 2018, section 3.2), plain and LU-decomposed.

A learned ``C x C`` matrix ``W`` mixes the channels of every pixel of a ``(batch, ..., C)``
array. As in Glow, ``W`` acts in the normalizing direction (the one used for the likelihood,
so training needs no matrix inverse):

* inverse (normalizing): ``z[..., i] = sum_j W[i, j] x[..., j]``,
  ``logdet = P * log|det W|`` with ``P`` the number of pixels;
* forward (generative): ``x = W^{-1} z`` per pixel, ``logdet = -P * log|det W|``.

``lu=False`` stores ``W`` and computes ``log|det W|`` with ``slogdet`` (in float64 when
``jax_enable_x64`` is on). ``lu=True`` stores ``W = P L U`` with ``L`` unit lower triangular,
``U`` upper triangular with diagonal ``exp(log_diag)``, and ``log|det W| = sum(log_diag)``
(O(C) instead of O(C^3)). The permutation ``P`` is fixed to the identity: the pivoting
permutation and the signs of ``diag(U)`` of the random initial rotation are folded into that
rotation (see :func:`conv1x1`), so no non-trainable constants live in the params.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Float

from .._numerics import HIGHEST, exact_matmul
from .._types import Array, Batch, Context, Key, LogDet, Params
from ._base import Bijector


def _mix(x: Array, w: Array) -> Array:
    """``y[..., i] = sum_j w[i, j] x[..., j]`` in full precision (exact round trips on GPU)."""
    return jnp.einsum("...j,ij->...i", x, w.astype(x.dtype), precision=HIGHEST)


def random_rotation(key: Key, channels: int) -> Float[Array, "c c"]:
    """A random orthogonal ``C x C`` matrix: Q of the QR decomposition of a Gaussian matrix."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (channels, channels), jnp.float32))
    return q * jnp.sign(jnp.diag(r))[None, :]  # sign fix: Haar-distributed


def lu_params(key: Key, channels: int) -> Params:
    """LU params of a random rotation ``W0`` with unit-lower ``L`` and positive ``diag(U)``.

    With the pivoted decomposition ``Q = P L U`` of a random rotation ``Q`` and
    ``D = diag(sign(diag U))``, ``W0 = D P^T Q = (D L D)(D U)`` is again orthogonal (so
    ``log|det W0| = 0``), ``D L D`` is unit lower triangular with entries bounded by 1 (the
    benefit of pivoting is kept) and ``D U`` has a positive diagonal.
    """
    _, lower, upper = jsl.lu(random_rotation(key, channels))
    d = jnp.sign(jnp.diag(upper))
    lower = d[:, None] * lower * d[None, :]
    upper = d[:, None] * upper
    return {
        "lower": jnp.tril(lower, -1),
        "upper": jnp.triu(upper, 1),
        "log_diag": jnp.log(jnp.abs(jnp.diag(upper))),
    }


def _f32(a: Array) -> Array:
    """At least float32 (the matrix algebra stays exact under bfloat16 mixed precision)."""
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def _lu_factors(params: Params) -> tuple[Array, Array]:
    low, up, log_diag = _f32(params["lower"]), _f32(params["upper"]), _f32(params["log_diag"])
    lower = jnp.tril(low, -1) + jnp.eye(log_diag.shape[0], dtype=low.dtype)
    upper = jnp.triu(up, 1) + jnp.diag(jnp.exp(log_diag))
    return lower, upper


def lu_weight(params: Params) -> Float[Array, "c c"]:
    """The matrix ``W = L U`` of LU-parametrised :func:`conv1x1` params."""
    lower, upper = _lu_factors(params)
    return exact_matmul(lower, upper)


def conv1x1(lu: bool = True) -> Bijector:
    """Invertible 1x1 convolution over the last (channel) axis; see the module docstring.

    Args:
      lu: LU parametrisation (log-det from the diagonal of ``U``) instead of a plain matrix
        (log-det by ``slogdet``).

    ``init(key, x)`` draws a random rotation (QR of a Gaussian matrix), so the layer starts
    volume preserving; ``x`` only supplies the number of channels.

    Params: ``{"weight": (C, C)}`` (plain) or ``{"lower": (C, C), "upper": (C, C),
    "log_diag": (C,)}`` (LU; only the strictly lower / strictly upper parts of ``lower`` /
    ``upper`` are used). Works on any ``(batch, *spatial, C)`` array, ``C >= 1``.
    """

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        del context
        if x.ndim < 2:
            raise ValueError(f"conv1x1 expects (batch, ..., C) arrays, got shape {x.shape}")
        c = x.shape[-1]
        if lu:
            return lu_params(key, c)
        return {"weight": random_rotation(key, c)}

    def _log_abs_det(params: Params) -> Array:
        if lu:
            return jnp.sum(_f32(params["log_diag"]))
        w = _f32(params["weight"])
        if jax.config.jax_enable_x64:
            w = w.astype(jnp.float64)
        return jnp.linalg.slogdet(w)[1]

    def _inverse_weight(params: Params) -> Array:
        if not lu:
            return jnp.linalg.inv(_f32(params["weight"]))
        lower, upper = _lu_factors(params)
        eye = jnp.eye(lower.shape[0], dtype=lower.dtype)
        l_inv = jsl.solve_triangular(lower, eye, lower=True, unit_diagonal=True)
        return jsl.solve_triangular(upper, l_inv, lower=False)  # W^{-1} = U^{-1} L^{-1}

    def _weight(params: Params) -> Array:
        return lu_weight(params) if lu else _f32(params["weight"])

    def _logdet(params: Params, x: Array) -> LogDet:
        pixels = int(np.prod(x.shape[1:-1]))
        return jnp.full((x.shape[0],), pixels * _log_abs_det(params)).astype(x.dtype)

    def forward(params: Params, z: Batch, context: Context = None) -> tuple[Batch, LogDet]:
        return _mix(z, _inverse_weight(params)), -_logdet(params, z)

    def inverse(params: Params, x: Batch, context: Context = None) -> tuple[Batch, LogDet]:
        return _mix(x, _weight(params)), _logdet(params, x)

    return Bijector(init, forward, inverse)
