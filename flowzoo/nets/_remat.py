"""Activation rematerialisation (``jax.checkpoint``) by policy name.

A rematerialised block keeps only some of its intermediate values for the backward pass
and recomputes the rest from its inputs when the gradient needs them: less memory for the
training step's activations, at the cost of running the block's forward a second time.
The names (:data:`REMAT_POLICIES`) are resolved in one place, :func:`remat_policy`:

* ``"none"``: no rematerialisation (every intermediate is kept, no recomputation);
* ``"full"``: keep nothing inside the block but its inputs (``nothing_saveable``);
* ``"dots"``: keep the outputs of matrix products without batch dimensions (dense layers,
  im2col convolutions), recompute the elementwise work around them
  (``dots_with_no_batch_dims_saveable``);
* ``"conv_outputs"``: keep the outputs of the convolutions that :func:`flowzoo.nets.unet`
  and :func:`flowzoo.nets.resnet` name ``"conv"`` (either convolution implementation),
  recompute the rest (``save_only_these_names("conv")``); networks without convolutions
  keep nothing, as with ``"full"``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from ._mlp import Network

REMAT_POLICIES = ("none", "full", "dots", "conv_outputs")
"""Names :func:`remat_policy` accepts (the ``remat`` option of the networks and flows)."""

CONV_NAME = "conv"
"""The ``jax.ad_checkpoint.checkpoint_name`` of convolution outputs (``"conv_outputs"``)."""

_POLICIES: dict[str, Callable[..., bool]] = {
    "none": jax.checkpoint_policies.everything_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "conv_outputs": jax.checkpoint_policies.save_only_these_names(CONV_NAME),
}


def remat_policy(name: str) -> Callable[..., bool]:
    """The ``jax.checkpoint`` policy of a remat name in :data:`REMAT_POLICIES`.

    ``"none"`` maps to ``everything_saveable`` (what a block without ``jax.checkpoint``
    keeps); the networks skip ``jax.checkpoint`` altogether for it. Unknown names raise a
    ``ValueError`` listing the choices.
    """
    try:
        return _POLICIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown remat policy {name!r}; choose one of {', '.join(REMAT_POLICIES)}"
        ) from None


def checkpointed(net: Network, remat: str = "full") -> Network:
    """``net`` whose every ``apply`` call is one ``jax.checkpoint`` block with policy ``remat``.

    The values and gradients are those of ``net`` (the same params, the same ``init``); the
    backward pass recomputes what the policy does not keep (:data:`REMAT_POLICIES`).
    ``remat="none"`` returns ``net`` itself. ``apply``'s positional and keyword arguments
    must be arrays, pytrees of arrays or ``None`` (they are traced): coupling conditioners'
    ``apply(params, x, context=None)`` are.
    """
    policy = remat_policy(remat)
    if remat == "none":
        return net

    def call(args, kwargs):
        return net.apply(*args, **kwargs)

    body = jax.checkpoint(call, policy=policy)

    def apply(*args, **kwargs):
        return body(args, kwargs)

    return Network(net.init, apply)
