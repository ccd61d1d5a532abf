"""Continuous-time models (flow matching, score SDEs) on quantised images.

A flow-matching or score model is trained by regression, not by likelihood, but its ODE
(the CNF of the learned velocity, or the probability-flow ODE) is a density ``p_z`` on the
model space. :func:`quantized_model` turns such a model-space :class:`Model` into one on
discrete images ``x in {0, ..., L-1}^D`` (``(batch, H, W, C)`` grey levels, as
:func:`flowzoo.zoo.train_and_evaluate` passes image data):

* ``loss``: uniformly dequantize ``v = x + u``, map ``v -> y = v / L -> z`` by the
  preprocessing, and apply the model-space loss to ``z`` (fresh ``u`` every step).
* ``distribution``: :func:`flowzoo.flows.dequantized` of the model-space density (the same
  bookkeeping as the coupling flows: ``log p_v(v) = log p_z(z) + log|dz/dy| - D ln L``; its
  ``log_prob`` uses one fixed draw of ``u``, the key the coupling flows use), so
  ``test_bpd = -log_prob / (D ln 2)`` is the discrete-data bits/dim of
  :func:`flowzoo.metrics.bits_per_dim` and comparable across families.
* ``sample``: model-space samples mapped back to ``[0, L)`` and floored to grey levels.

Preprocessing (``forward``: model space -> ``[0, 1)``): ``"scale"`` (``z = 2 y - 1`` in
``[-1, 1)``, the usual diffusion / flow-matching range; ``log|dz/dy| = D ln 2``), or
``"shift"`` / ``"logit"`` as for the coupling flows.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .. import bijectors as bj
from .. import nets
from .._types import Batch, Key, Params
from ..data import scale_transform
from ..distributions import Distribution
from ..flows import dequantized
from ._registry import Model

PREPROCESS = ("scale", "shift", "logit")


def image_unet(cfg: dict[str, Any], kind: str, event_shape: tuple[int, ...]) -> nets.Network:
    """The UNet of a continuous-time model config (its keys ``channels``, ``num_blocks``, one
    entry meaning the same at every level, ``embed_dim``, ``attention_heads``, ``conv``,
    ``dropout`` and ``remat`` (``"none"`` where the section has none), all in the completed
    section) for ``kind == "unet"``.

    ``kind`` is the resolved ``model.net``; ``dropout > 0`` or a ``remat`` policy with another
    network, or a UNet on events that are not ``(H, W, C)``, is refused with a ``ValueError``
    naming the key.
    """
    dropout, remat = float(cfg["dropout"]), cfg.get("remat", "none")
    if kind != "unet":
        if dropout > 0.0:
            raise ValueError(f"model.dropout applies to the UNet only; model.net is {kind!r}")
        if remat != "none":
            raise ValueError(f"model.remat applies to the UNet only; model.net is {kind!r}")
        raise ValueError(f"model.net: unknown network {kind!r}; choose 'mlp', 'unet' or 'auto'")
    if len(event_shape) != 3:
        raise ValueError(f"model.net='unet' needs (H, W, C) events, got {event_shape}")
    blocks = cfg["num_blocks"]
    return nets.unet(
        tuple(cfg["channels"]),
        int(cfg["embed_dim"]),
        int(cfg["attention_heads"]),
        conv=cfg["conv"],
        dropout=dropout,
        num_blocks=int(blocks[0]) if len(blocks) == 1 else tuple(blocks),
        remat=remat,
    )


def inner_params(cfg: dict[str, Any], params: Any) -> Any:
    """The model-space params inside the params of :func:`with_image_data`'s Model."""
    return params["density"]["base"] if cfg["data_levels"] else params


def with_inner_params(cfg: dict[str, Any], params: Any, inner: Any) -> Any:
    """``params`` of :func:`with_image_data`'s Model with its model-space params replaced."""
    if not cfg["data_levels"]:
        return inner
    return {**params, "density": {**params["density"], "base": inner}}


def preprocessing(name: str = "scale", alpha: float = 0.05) -> bj.Bijector:
    """The preprocessing bijector (``forward``: model space -> ``[0, 1)``) named by ``name``.

    ``"scale"``: ``y = (z + 1) / 2`` (model space ``[-1, 1)``); ``"shift"``: ``y = z + 0.5``;
    ``"logit"``: ``y = (sigmoid(z) - alpha) / (1 - 2 alpha)`` (:func:`flowzoo.data.logit_transform`).
    """
    from ..data import logit_transform, shift_transform

    if name == "scale":
        return bj.fixed_affine(jnp.asarray(0.5), jnp.asarray(0.5))
    if name == "shift":
        return shift_transform(0.5)
    if name == "logit":
        return logit_transform(alpha)
    raise ValueError(f"unknown preprocess {name!r}; choose one of {list(PREPROCESS)}")


def quantized_model(
    inner: Model,
    event_shape: tuple[int, ...],
    levels: int,
    *,
    preprocess: str = "scale",
    alpha: float = 0.05,
) -> Model:
    """A :class:`Model` on ``levels``-level images from one on the preprocessed space.

    Args:
      inner: the model-space model (its ``distribution`` may be ``None``).
      event_shape: ``(H, W, C)``.
      levels: grey levels ``L`` of the data.
      preprocess, alpha: see :func:`preprocessing`.

    Returns:
      A Model whose params are ``{"density": {"base": inner params, "bijector": ...},
      "dequantizer": ()}`` (the layout of :func:`flowzoo.flows.dequantized`); its
      ``distribution`` is the dequantized density (``None`` if ``inner``'s is).
    """
    shape = tuple(event_shape)
    levels = int(levels)
    pre = preprocessing(preprocess, alpha)
    to_model = bj.chain(pre, scale_transform(levels))  # what dequantized() builds: v -> z
    base = inner.distribution
    if base is None:

        def no_log_prob(params, z, context=None):
            raise TypeError("this model has no tractable likelihood")

        base = Distribution(
            init=lambda key, z, context=None: inner.init(key, z),
            log_prob=no_log_prob,
            sample=inner.sample,
            sample_and_log_prob=None,
            event_shape=shape,
        )
    model = dequantized(base, levels, preprocess=pre)

    def loss(params: Params, key: Key, x: Batch) -> tuple[Any, dict[str, Any]]:
        k_u, k_loss = jax.random.split(key)
        x = jnp.asarray(x).astype(jnp.float32)
        v = x + jax.random.uniform(k_u, x.shape, jnp.float32)
        z, _ = to_model.inverse(params["density"]["bijector"], v)
        return inner.loss(params["density"]["base"], k_loss, z)

    return Model(
        lambda key, x: model.init(key, x),
        loss,
        model.sample,
        None if inner.distribution is None else model,
    )


def with_image_data(cfg: dict[str, Any], event_shape: tuple[int, ...], inner: Model) -> Model:
    """``inner`` as is, or wrapped by :func:`quantized_model` when ``data_levels`` is set.

    :func:`flowzoo.zoo.train_and_evaluate` fills ``model.data_levels`` for image data
    (``data.name`` digits / mnist); the model section may set ``preprocess`` (``"scale"``,
    ``"shift"`` or ``"logit"``) and ``alpha``.
    """
    levels = int(cfg["data_levels"])
    if not levels:
        return inner
    return quantized_model(
        inner, tuple(event_shape), levels, preprocess=cfg["preprocess"], alpha=float(cfg["alpha"])
    )
