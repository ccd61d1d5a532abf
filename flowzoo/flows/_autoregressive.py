"""Masked autoregressive flow (MAF) and inverse autoregressive flow (IAF) densities."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import bijectors as bj
from .._types import Array, count_arg
from ..distributions import Distribution, standard_normal
from ._transformed import transformed

AFFINE_ORIENTATION = bj.AFFINE_ORIENTATION
"""MAF's and IAF's affine orientation: :data:`flowzoo.bijectors.AFFINE_ORIENTATION`."""


def autoregressive_bijector(
    dim: int,
    num_layers: int = 5,
    hidden: Sequence[int] = (64, 64),
    *,
    activation: str | Callable[[Array], Array] = "relu",
    transformer: str | bj.Transformer = "affine",
    transformer_options: Mapping[str, Any] | None = None,
    inverse: bool = False,
) -> bj.Bijector:
    """``num_layers`` MAF (or, with ``inverse=True``, IAF) layers on ``(batch, dim)`` vectors,
    the order of the entries reversed after each layer; applied with one ``lax.scan``.

    ``transformer``: a name that :func:`flowzoo.bijectors.transformer` resolves with
    ``transformer_options`` (``"affine"``: tanh-bounded log-scale in MAF's own orientation,
    ``u = (x - mu) exp(-alpha)`` in the density direction, :data:`AFFINE_ORIENTATION`;
    ``"spline"``: by default an 8-bin rational-quadratic spline on ``[-4, 4]``) or any
    :class:`~flowzoo.bijectors.Transformer`.
    """
    num_layers = count_arg(num_layers, "num_layers", "autoregressive flow")
    options = dict(transformer_options or {})
    if transformer in ("affine", "additive"):
        options = {"orientation": AFFINE_ORIENTATION, **options}
    tr = bj.transformer(transformer, **options)
    make = bj.inverse_autoregressive if inverse else bj.masked_autoregressive
    layer = bj.chain(make(dim, tr, hidden, activation), bj.reverse(dim))
    return bj.stack(layer, num_layers)


def maf(
    event_shape: int | Sequence[int],
    num_layers: int = 5,
    hidden: Sequence[int] = (64, 64),
    *,
    base: Distribution | None = None,
    **kwargs,
) -> Distribution:
    """A masked autoregressive flow density (Papamakarios et al. 2017) over ``(batch, dim)``.

    ``log_prob`` is one MADE pass per layer; ``sample`` takes ``dim`` passes per layer.
    ``**kwargs``: ``activation``, ``transformer``, ``transformer_options`` of
    :func:`autoregressive_bijector`.
    """
    return _autoregressive(event_shape, num_layers, hidden, base, False, kwargs)


def iaf(
    event_shape: int | Sequence[int],
    num_layers: int = 5,
    hidden: Sequence[int] = (64, 64),
    *,
    base: Distribution | None = None,
    **kwargs,
) -> Distribution:
    """An inverse autoregressive flow (Kingma et al. 2016) over ``(batch, dim)``.

    ``sample`` and ``sample_and_log_prob`` are one MADE pass per layer; ``log_prob`` of
    given data takes ``dim`` passes per layer (fit it by variational inference, or use
    :func:`maf` for maximum likelihood on data).
    """
    return _autoregressive(event_shape, num_layers, hidden, base, True, kwargs)


def _autoregressive(event_shape, num_layers, hidden, base, inverse, kwargs) -> Distribution:
    shape = (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(event_shape)
    if len(shape) != 1:
        raise ValueError(f"autoregressive flows model vectors (dim,); got event_shape {shape}")
    bij = autoregressive_bijector(shape[0], num_layers, hidden, inverse=inverse, **kwargs)
    return transformed(base or standard_normal(shape), bij)
