"""Affine and additive coupling layers (Dinh et al. 2015, 2017) driven by a mask.

Two internal layouts, chosen from the mask:

* *split*: the mask is constant over every axis but the last (1-D vector masks, channel
  masks). The kept entries are gathered (a slice when contiguous) and fed to the
  conditioner, which predicts parameters only for the transformed entries. This halves
  the conditioner's input and output compared with the masked layout.
* *masked*: any other mask (checkerboard on images). The conditioner sees ``m * x`` and
  predicts parameters for every entry; entries with ``m = 1`` are left unchanged exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Context, Key, Params, widths_arg
from ..nets import Network, mlp
from ._base import Bijector, sum_except_batch

ConditionerFactory = Callable[[tuple[int, ...]], Network]
"""``make(out_shape) -> Network``: builds a conditioner whose output has ``out_shape`` per
example (any output with that many entries per example is reshaped to it). The last axis
holds the shifts followed by the log-scales of the transformed entries."""


def mlp_conditioner(
    hidden: tuple[int, ...] = (64, 64), activation: str = "relu"
) -> ConditionerFactory:
    """Conditioner factory: an MLP (flattened input and output), zero-initialised output layer."""
    hidden = widths_arg(hidden, "hidden", "mlp_conditioner")
    return lambda out_shape: mlp(int(np.prod(out_shape)), hidden, activation, zero_init_last=True)


class _Layout(NamedTuple):
    split: Callable[[Array], tuple[Array, Array]]  # x -> (conditioner input, transformed part)
    merge: Callable[[Array, Array], Array]  # (conditioner input, new transformed part) -> y
    weight: Array | None  # masked layout: 1 where transformed, else None
    tr_last: int  # size of the last axis of the transformed part


def _contiguous(idx: np.ndarray) -> bool:
    return bool(idx.size) and bool(np.all(np.diff(idx) == 1))


def _index(x: Array, idx: np.ndarray) -> Array:
    if _contiguous(idx):
        return x[..., int(idx[0]) : int(idx[-1]) + 1]
    return jnp.take(x, idx, axis=-1)


def _layout(mask: np.ndarray) -> _Layout:
    keep_line = mask.reshape(-1, mask.shape[-1])[0]
    if np.all(mask == keep_line):  # constant across all but the last axis: split layout
        id_idx = np.flatnonzero(keep_line)
        tr_idx = np.flatnonzero(~keep_line)
        order = np.argsort(np.concatenate([id_idx, tr_idx]))

        def split(x):
            return _index(x, id_idx), _index(x, tr_idx)

        if _contiguous(id_idx) and _contiguous(tr_idx):  # half/channel masks: no gather
            id_first = bool(id_idx[0] < tr_idx[0])

            def merge(x_id, y_tr):
                return jnp.concatenate([x_id, y_tr] if id_first else [y_tr, x_id], axis=-1)

        else:

            def merge(x_id, y_tr):
                return _index(jnp.concatenate([x_id, y_tr], axis=-1), order)

        return _Layout(split, merge, None, int(tr_idx.size))

    weight = jnp.asarray(~mask, jnp.float32)[None]
    keep = jnp.asarray(mask, jnp.float32)[None]
    return _Layout(lambda x: (x * keep, x), lambda x, y: y, weight, int(mask.shape[-1]))


def _log_scale(h: Array, kind: str, bound: float) -> Array:
    if kind == "tanh":  # soft clamp to (-bound, bound); identity at h = 0
        return bound * jnp.tanh(h / bound)
    if kind == "sigmoid":  # Glow's sigmoid(h + 2), normalised to scale 1 at h = 0
        return jax.nn.log_sigmoid(h + 2.0) - jax.nn.log_sigmoid(2.0)
    if kind == "exp":  # unbounded; for tests and experts
        return h
    raise ValueError(f"unknown scale kind {kind!r}; use 'tanh', 'sigmoid' or 'exp'")


def _check_mask(mask, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"{what}: mask must be boolean (or 0/1), got values {np.unique(mask)}")
        mask = mask.astype(bool)
    if mask.all() or not mask.any():
        raise ValueError(f"{what}: mask must keep some entries and transform others")
    return mask


DEFAULT_SCALE_BOUND = 2.0
"""The one default bound of a coupling's tanh log-scale, ``|log s| <= 2`` (every builder and
config uses it). 3.0 gave a loss spike on one of four seeds of the default moons run; the
scale-function study of the performance issue may move it."""


def affine_coupling(
    mask,
    conditioner: ConditionerFactory | None = None,
    *,
    scale: str = "tanh",
    scale_bound: float = DEFAULT_SCALE_BOUND,
    additive: bool = False,
) -> Bijector:
    """Affine coupling ``y = m*x + (1-m)*(x * exp(s(m*x)) + t(m*x))``.

    Args:
      mask: boolean array of the event shape; ``True`` entries are kept and condition the
        transformation of the others (see :mod:`flowzoo.bijectors` masks).
      conditioner: factory ``make(out_shape) -> Network``; the network maps the kept part
        (and ``context``, if given) to ``out_shape`` per example: the shifts followed by the
        log-scales of the transformed entries along the last axis. Default: a 2x64 ReLU MLP
        with zero-initialised output, so the layer starts as the identity.
      scale: bound on the log-scale: ``"tanh"`` soft-clamps ``log s`` to
        ``(-scale_bound, scale_bound)`` (``scale_bound`` default 3); ``"sigmoid"`` uses Glow's ``sigmoid(h + 2)``
        normalised to 1 at ``h = 0``; ``"exp"`` leaves it unbounded.
      additive: shift only (NICE); log-det is zero.

    Returns:
      A :class:`Bijector` on ``(batch, *mask.shape)`` arrays. ``init(key, x, context)``
      initialises the conditioner.
    """
    mask = _check_mask(mask, "affine_coupling")
    conditioner = conditioner or mlp_conditioner()
    lay = _layout(mask)
    k = 1 if additive else 2
    tr_shape = jax.eval_shape(lambda x: lay.split(x)[1], jnp.zeros((1, *mask.shape))).shape[1:]
    out_shape = (*tr_shape[:-1], k * lay.tr_last)
    net = conditioner(out_shape)
    _log_scale(jnp.zeros(()), scale, scale_bound)  # validate ``scale`` early

    def _check(x):
        if x.shape[1:] != mask.shape:
            raise ValueError(
                f"coupling expects events of shape {mask.shape}, got input of shape {x.shape}"
            )

    def params_of(params, x_cond, context, x_tr):
        h = net.apply(params, x_cond, context)
        h = h.reshape(x_tr.shape[:-1] + (k * lay.tr_last,)).astype(x_tr.dtype)
        shift = h[..., : lay.tr_last]
        log_s = None if additive else _log_scale(h[..., lay.tr_last :], scale, scale_bound)
        if lay.weight is not None:
            shift = shift * lay.weight
            log_s = None if log_s is None else log_s * lay.weight
        return shift, log_s

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        _check(x)
        x_cond, x_tr = lay.split(x)
        params = net.init(key, x_cond, context)
        out = jax.eval_shape(net.apply, params, x_cond, context)
        if int(np.prod(out.shape[1:])) != int(np.prod(out_shape)):
            raise ValueError(
                f"conditioner output has shape {out.shape[1:]} per example; the coupling needs "
                f"{out_shape} (shifts{'' if additive else ' and log-scales'} of the "
                f"transformed entries)"
            )
        return params

    def forward(params: Params, z: Batch, context: Context = None):
        _check(z)
        z_cond, z_tr = lay.split(z)
        shift, log_s = params_of(params, z_cond, context, z_tr)
        if additive:
            return lay.merge(z_cond, z_tr + shift), jnp.zeros(z.shape[0], z.dtype)
        return lay.merge(z_cond, z_tr * jnp.exp(log_s) + shift), sum_except_batch(log_s)

    def inverse(params: Params, x: Batch, context: Context = None):
        _check(x)
        x_cond, x_tr = lay.split(x)
        shift, log_s = params_of(params, x_cond, context, x_tr)
        if additive:
            return lay.merge(x_cond, x_tr - shift), jnp.zeros(x.shape[0], x.dtype)
        return lay.merge(x_cond, (x_tr - shift) * jnp.exp(-log_s)), -sum_except_batch(log_s)

    return Bijector(init, forward, inverse)


def additive_coupling(mask, conditioner: ConditionerFactory | None = None) -> Bijector:
    """Additive (volume-preserving) coupling ``y = m*x + (1-m)*(x + t(m*x))`` (NICE)."""
    return affine_coupling(mask, conditioner, additive=True)
