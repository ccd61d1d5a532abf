"""Elementwise monotone maps whose parameters a conditioner predicts ("transformers").

A coupling layer or an autoregressive layer splits into a *conditioner* (a network that
sees the conditioning entries) and a *transformer* (an invertible elementwise map of the
other entries, parameterised by the conditioner's output; the naming of Papamakarios et
al. 2021, "Normalizing Flows for Probabilistic Modeling and Inference", section 3.1).

``Transformer(num_params, forward, inverse)``: ``forward(params, x) -> (y, log_dydx)`` and
``inverse(params, y) -> (x, log_dxdy)``, where ``params`` is a tuple of ``num_params``
arrays of ``x``'s shape (unconstrained; all zeros is the identity map) and the log-derivatives
are elementwise, also of ``x``'s shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, count_arg
from ._spline import rq_spline


class Transformer(NamedTuple):
    """An elementwise invertible map with ``num_params`` unconstrained parameters per entry."""

    num_params: int
    forward: Callable[[tuple[Array, ...], Array], tuple[Array, Array]]
    inverse: Callable[[tuple[Array, ...], Array], tuple[Array, Array]]


DEFAULT_SCALE_BOUND = 1.0
"""The one default bound of a coupling's tanh log-scale, ``|log s| <= 1`` (every builder and
config uses it). In ``benchmarks/scale_study.py`` (8 couplings, 2x64 ReLU conditioners,
Adam 1e-3, batch 256, 3,000 steps, 5 seeds), with the density orientation and uniform
conditioner init, bound 1 has the best two-moons NLL and the smallest training-loss spikes
on all three 2-D sets, and is within 0.015 nats of the best bound on eight Gaussians and
checkerboard; the study's table is in ``docs/benchmarks.md``."""

_SOFTPLUS_ONE = 0.5413248546129181  # log(e - 1): softplus(0 + c) = 1


def log_scale(h: Array, kind: str, bound: float) -> Array:
    """The log-scale of an affine transformer from the conditioner output ``h``."""
    if kind == "tanh":  # soft clamp to (-bound, bound); identity at h = 0
        return bound * jnp.tanh(h / bound)
    if kind == "sigmoid":  # Glow's sigmoid(h + 2), normalised to scale 1 at h = 0
        return jax.nn.log_sigmoid(h + 2.0) - jax.nn.log_sigmoid(2.0)
    if kind == "softplus":  # s = softplus(h + c) / 1 with s(0) = 1: flowjax's Affine scale
        return jnp.log(jax.nn.softplus(h + _SOFTPLUS_ONE))
    if kind == "exp":  # unbounded; for tests and experts
        return h
    raise ValueError(f"unknown scale kind {kind!r}; use 'tanh', 'sigmoid', 'softplus' or 'exp'")


ORIENTATIONS = ("density", "sampling")
"""Values of ``affine_transformer(orientation=...)``."""


def affine_transformer(
    scale: str = "tanh",
    scale_bound: float = DEFAULT_SCALE_BOUND,
    *,
    additive: bool = False,
    orientation: str = "density",
) -> Transformer:
    """An elementwise affine map; params ``(shift, raw log-scale)`` (only shift if additive).

    ``orientation`` says which direction evaluates ``u * s + shift`` with ``s =
    exp(log_scale)`` (``scale`` bounds the log-scale, see :func:`log_scale`):

    * ``"density"`` (default): the density direction (``inverse``, data ``y`` to latent
      ``x``) computes ``x = y * s + shift`` and sampling (``forward``) computes ``y = (x -
      shift) / s``. This is the orientation of RealNVP (Dinh et al. 2017, eq. 4-5, where
      ``f`` maps data to latent), Glow (``z2 = (x2 + t) * sigmoid(h + 2)`` in its encoder)
      and flowjax's ``coupling_flow`` (``invert=True``). A scale driven to 0 or infinity is
      then penalised by the log-determinant or by the base density, so the likelihood has
      no reward for degenerate scales.
    * ``"sampling"``: sampling computes ``y = x * s + shift`` and the density direction
      ``x = (y - shift) / s`` (MAF's ``u = (x - mu) exp(-alpha)``). ``log s -> -inf``
      rewards the likelihood without bound here, so only bounded scales train reliably.

    In ``benchmarks/scale_study.py`` (8 couplings, 2x64 ReLU conditioners, Adam 1e-3, batch
    256, 3,000 steps, 5 seeds) the density orientation gives the tanh-2 scale a lower mean
    test NLL than the sampling orientation on two moons, eight Gaussians and checkerboard;
    the study's table is in ``docs/benchmarks.md``.
    """
    log_scale(jnp.zeros(()), scale, scale_bound)  # validate ``scale`` early
    if orientation not in ORIENTATIONS:
        raise ValueError(
            f"affine_transformer: orientation must be one of {ORIENTATIONS}, got {orientation!r}"
        )
    if additive:  # the two orientations differ only in the sign of the shift
        sign = -1.0 if orientation == "density" else 1.0
        return Transformer(
            1,
            lambda p, x: (x + sign * p[0], jnp.zeros_like(x)),
            lambda p, y: (y - sign * p[0], jnp.zeros_like(y)),
        )

    def multiply(p, u):
        ls = log_scale(p[1], scale, scale_bound)
        return u * jnp.exp(ls) + p[0], ls

    def divide(p, v):
        ls = log_scale(p[1], scale, scale_bound)
        return (v - p[0]) * jnp.exp(-ls), -ls

    if orientation == "density":
        return Transformer(2, divide, multiply)
    return Transformer(2, multiply, divide)


def spline_transformer(num_bins: int = 8, bound: float = 4.0) -> Transformer:
    """A monotone rational-quadratic spline on ``[-bound, bound]``, identity outside.

    ``3 * num_bins - 1`` params per entry (bin widths, bin heights, interior knot
    derivatives; :func:`flowzoo.bijectors.rq_spline`). Choose ``bound`` to cover the bulk of
    the data (standardised data: 4 to 5); mass outside it passes through unchanged.

    Direction: as in nflows and flowjax, the density direction (``inverse``, data to latent)
    evaluates the rational-quadratic map itself and sampling (``forward``) solves its
    quadratic; on two moons (``benchmarks/spline_moons.py``) this trained slightly better
    than the opposite assignment (mean test NLL over 3 seeds 1.172 vs 1.180 nats, within
    the seed-to-seed spread of about 0.02).
    """
    k = count_arg(num_bins, "num_bins", "spline_transformer", minimum=2)
    if not bound > 0:
        raise ValueError(f"spline_transformer: bound must be > 0, got {bound}")
    bound = float(bound)

    def split(p):
        stacked = jnp.stack(p, axis=-1)
        return stacked[..., :k], stacked[..., k : 2 * k], stacked[..., 2 * k :]

    def forward(p, z):
        return rq_spline(z, *split(p), bound, inverse=True)

    def inverse(p, x):
        return rq_spline(x, *split(p), bound)

    return Transformer(3 * k - 1, forward, inverse)


def _additive_transformer(orientation: str = "density") -> Transformer:
    return affine_transformer(additive=True, orientation=orientation)


# name -> (builder, the options it takes)
_TRANSFORMERS: dict[str, tuple[Callable[..., Transformer], tuple[str, ...]]] = {
    "affine": (affine_transformer, ("scale", "scale_bound", "orientation")),
    "additive": (_additive_transformer, ("orientation",)),
    "spline": (spline_transformer, ("num_bins", "bound")),
}
TRANSFORMERS = tuple(_TRANSFORMERS)
"""Names :func:`transformer` resolves."""


def transformer(name: str | Transformer, **options: Any) -> Transformer:
    """The transformer called ``name``, built with ``options``; a :class:`Transformer` as is.

    * ``"affine"``: :func:`affine_transformer` (options ``scale``, ``scale_bound``,
      ``orientation``);
    * ``"additive"``: the affine map with a shift only (option ``orientation``);
    * ``"spline"``: :func:`spline_transformer` (options ``num_bins``, ``bound``).

    An option left out takes that function's default. Raises ``ValueError`` for an unknown
    name and ``TypeError`` for an option the named transformer does not take.
    """
    if isinstance(name, Transformer):
        if options:
            raise TypeError(
                f"transformer: options {sorted(options)} apply to a name, not a Transformer"
            )
        return name
    if name not in _TRANSFORMERS:
        raise ValueError(
            f"unknown transformer {name!r}; choose one of {list(TRANSFORMERS)} or pass a "
            "flowzoo.bijectors.Transformer"
        )
    build, allowed = _TRANSFORMERS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"transformer {name!r} takes the options {list(allowed)}, not {unknown}")
    return build(**options)
