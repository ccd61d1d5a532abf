"""Monotone rational-quadratic splines with linear (identity) tails (Durkan et al. 2019).

"Neural Spline Flows", NeurIPS 2019, section 3.1 and appendix A. On ``[-bound, bound]`` the
map is a piecewise rational-quadratic function through ``num_bins + 1`` knots, monotone by
construction (positive bin widths, heights and knot derivatives); outside it is the identity,
so the derivatives at the two end knots are fixed to 1 and the map is C1 everywhere.

Unconstrained parameters per element: ``num_bins`` widths, ``num_bins`` heights and
``num_bins - 1`` interior derivatives. All zeros give the identity (uniform bins, unit
derivatives), so a zero-initialised conditioner starts every spline layer as the identity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array

MIN_BIN_SIZE = 1e-3
"""Smallest bin width or height, as a fraction of the interval ``2 * bound``."""
MIN_DERIVATIVE = 1e-3
"""Smallest knot derivative; keeps the inverse's slope below ``1 / MIN_DERIVATIVE``."""

# softplus(0 + _D_SHIFT) + MIN_DERIVATIVE == 1: an unconstrained 0 is the unit derivative.
_D_SHIFT = float(np.log(np.expm1(1.0 - MIN_DERIVATIVE)))


def _knots(u: Array, bound: float) -> tuple[Array, Array]:
    """Knot positions ``(..., K+1)`` from ``-bound`` to ``bound`` and bin sizes ``(..., K)``."""
    k = u.shape[-1]
    frac = MIN_BIN_SIZE + (1.0 - MIN_BIN_SIZE * k) * jax.nn.softmax(u, axis=-1)
    cum = jnp.cumsum(frac, axis=-1)
    cum = cum.at[..., -1].set(1.0)  # exact right end despite float rounding
    knots = jnp.concatenate([jnp.zeros_like(cum[..., :1]), cum], axis=-1)
    knots = 2.0 * bound * knots - bound
    return knots, jnp.diff(knots, axis=-1)


def _derivatives(u: Array) -> Array:
    """Knot derivatives ``(..., K+1)``: 1 at both ends (identity tails), positive inside."""
    d = MIN_DERIVATIVE + jax.nn.softplus(u + _D_SHIFT)
    one = jnp.ones_like(d[..., :1])
    return jnp.concatenate([one, d, one], axis=-1)


def _gather(a: Array, idx: Array) -> Array:
    return jnp.take_along_axis(a, idx[..., None], axis=-1)[..., 0]


def _bin(knots: Array, v: Array) -> Array:
    """Index of the bin holding ``v`` (clamped to ``[0, K-1]``)."""
    k = knots.shape[-1] - 1
    idx = jnp.sum(v[..., None] >= knots[..., 1:-1], axis=-1)
    return jnp.clip(idx, 0, k - 1)


def rq_spline(
    x: Array,
    widths: Array,
    heights: Array,
    derivatives: Array,
    bound: float,
    *,
    inverse: bool = False,
) -> tuple[Array, Array]:
    """Apply the spline (or its inverse) elementwise.

    Args:
      x: points, any shape ``S``.
      widths, heights: unconstrained bin parameters, shape ``(*S, K)``.
      derivatives: unconstrained interior knot derivatives, shape ``(*S, K - 1)``.
      bound: the spline acts on ``[-bound, bound]``; the identity outside.
      inverse: apply the inverse map.

    Returns:
      ``(y, log_abs_dydx)``, both of shape ``S``: the image of ``x`` and the elementwise
      log-derivative of the map applied (of the inverse when ``inverse=True``).
    """
    if widths.shape[-1] != heights.shape[-1] or derivatives.shape[-1] != widths.shape[-1] - 1:
        raise ValueError(
            f"rq_spline: widths and heights need K entries and derivatives K - 1 along the last "
            f"axis, got {widths.shape[-1]}, {heights.shape[-1]} and {derivatives.shape[-1]}"
        )
    inside = jnp.abs(x) < bound
    v = jnp.clip(x, -bound, bound)
    xk, w = _knots(widths, bound)
    yk, h = _knots(heights, bound)
    d = _derivatives(derivatives)
    idx = _bin(yk if inverse else xk, v)
    x0, wb, y0, hb = _gather(xk, idx), _gather(w, idx), _gather(yk, idx), _gather(h, idx)
    d0, d1 = _gather(d, idx), _gather(d, idx + 1)
    s = hb / wb
    c = d1 + d0 - 2.0 * s
    if inverse:
        dy = v - y0
        a = hb * (s - d0) + dy * c
        b = hb * d0 - dy * c
        cc = -s * dy
        disc = jnp.maximum(b * b - 4.0 * a * cc, 0.0)
        xi = jnp.clip(2.0 * cc / (-b - jnp.sqrt(disc)), 0.0, 1.0)
        out = x0 + xi * wb
    else:
        xi = (v - x0) / wb
        out = None
    t = xi * (1.0 - xi)
    denom = s + c * t
    if out is None:
        out = y0 + hb * (s * xi * xi + d0 * t) / denom
    log_deriv = (
        2.0 * jnp.log(s)
        + jnp.log(d1 * xi * xi + 2.0 * s * t + d0 * (1.0 - xi) ** 2)
        - 2.0 * jnp.log(denom)
    )
    if inverse:
        log_deriv = -log_deriv
    return jnp.where(inside, out, x), jnp.where(inside, log_deriv, 0.0)
