"""Variational dequantization (Ho et al., "Flow++", ICML 2019, section 3.1).

``q(u | x)`` is a conditional flow on the unit cube: ``eps ~ N(0, I)``, a stack of affine
couplings conditioned on the image ``x``, then a sigmoid, so ``u in (0, 1)^D`` and
``log q(u | x) = log N(eps) - log|det du/d eps|`` is exact. Training maximises the
dequantization lower bound ``E_q[log p(x + u) - log q(u | x)] <= log P(x)``
(:func:`flowzoo.flows.dequantized`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import bijectors as bj
from .._types import count_arg
from ..data import logit_transform
from ..distributions import Distribution, standard_normal
from ._transformed import transformed


def variational_dequantizer(
    event_shape: Sequence[int],
    num_layers: int = 4,
    hidden: Sequence[int] = (128,),
    *,
    activation: str = "relu",
    scale_bound: float = bj.DEFAULT_SCALE_BOUND,
) -> Distribution:
    """A conditional density ``q(u | x)`` on ``(0, 1)^event_shape`` for dequantization.

    Args:
      event_shape: the image shape ``(H, W, C)`` (any event shape works).
      num_layers: affine couplings; their masks alternate a checkerboard (``(H, W, C)``
        events) or an alternating mask (vectors) and its complement.
      hidden: hidden widths of each coupling's MLP conditioner, which sees the kept entries
        of ``u`` (flattened) and the context (flattened). Zero-initialised output layers,
        so ``q`` starts as the logistic-normal ``sigmoid(N(0, I))``.
      activation: conditioner activation.
      scale_bound: ``tanh`` bound on the couplings' log-scales.

    Returns:
      A :class:`~flowzoo.distributions.Distribution` over ``u`` that must be called with a
      ``context`` of one row per example (the image scaled to about ``[-0.5, 0.5)``, see
      :func:`flowzoo.flows.dequantized`); use ``sample_and_log_prob(params, key, n,
      context)`` to draw ``u`` with its exact ``log q(u | x)``.
    """
    shape = tuple(int(s) for s in event_shape)
    num_layers = count_arg(num_layers, "num_layers", "variational_dequantizer")
    mask = bj.checkerboard_mask if len(shape) >= 2 else bj.alternating_mask
    cond = bj.mlp_conditioner(hidden, activation)
    layers = [
        bj.affine_coupling(mask(shape, i % 2), cond, scale_bound=scale_bound)
        for i in range(num_layers)
    ]
    return transformed(standard_normal(shape), bj.chain(*layers, logit_transform(0.0)))
