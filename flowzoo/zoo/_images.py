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
    section) for ``kind == "unet"``; torchcfm's CIFAR-10 UNet (:func:`flowzoo.nets.adm_unet`,
    keys ``num_channels``, ``channel_mult``, ``num_res_blocks``, ``num_heads``,
    ``num_head_channels``, ``attention_resolutions``) for ``kind == "adm_unet"``.

    ``kind`` is the resolved ``model.net``; ``dropout > 0`` or a ``remat`` policy with another
    network, or a UNet on events that are not ``(H, W, C)``, is refused with a ``ValueError``
    naming the key.
    """
    dropout, remat = float(cfg["dropout"]), cfg.get("remat", "none")
    if kind == "adm_unet":
        return _adm_unet(cfg, event_shape, dropout, remat)
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


def _adm_unet(cfg: dict[str, Any], event_shape, dropout: float, remat: str) -> nets.Network:
    if len(event_shape) != 3:
        raise ValueError(f"model.net='adm_unet' needs (H, W, C) events, got {event_shape}")
    try:
        return nets.adm_unet(
            tuple(event_shape),
            int(cfg["num_channels"]),
            int(cfg["num_res_blocks"]),
            tuple(cfg["channel_mult"]),
            int(cfg["num_heads"]),
            int(cfg["num_head_channels"]),
            tuple(cfg["attention_resolutions"]),
            dropout,
            conv=cfg["conv"],
            remat=remat,
        )
    except ValueError as err:  # the network's own check, named as the config's keys
        raise ValueError(f"model.net='adm_unet': {err}") from err


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
      ``distribution`` is the dequantized density (``None`` if ``inner``'s is), and its
      ``sample`` maps ``inner.sample``'s draws to images.
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
    else:  # samples come from the model's own sampler (score_sde: its predictor-corrector
        # sampler of sample_steps, not the probability-flow ODE of its density; cfm: the
        # same ODE as its density's); sample_and_log_prob stays the density's
        base = base._replace(sample=inner.sample)
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


def cifar10_data(n_test: int = 10_000, path: str = "cifar-10-python.tar.gz") -> dict[str, Any]:
    """The ``data`` section of the CIFAR-10 recipes: the official python-version tarball at
    ``path`` (default: in the working directory), streamed from a memory map with random
    horizontal flips, the first ``n_test`` test images evaluated."""
    return {"name": "cifar10", "path": path, "stream": True, "flip": True, "n_test": n_test}


def adm_unet_keys(**overrides: Any) -> dict[str, Any]:
    """The ``model`` keys of torchcfm's CIFAR-10 UNet (``net: adm_unet``,
    :func:`flowzoo.nets.adm_unet`): ``UNetModelWrapper(num_channels=128, num_res_blocks=2,
    channel_mult=[1, 2, 2, 2], num_heads=4, num_head_channels=64, attention_resolutions="16",
    dropout=0.1)``, with ``lax.conv`` convolutions (one step per compiled call)."""
    keys = {
        "net": "adm_unet",
        "num_channels": 128,
        "channel_mult": [1, 2, 2, 2],
        "num_res_blocks": 2,
        "num_heads": 4,
        "num_head_channels": 64,
        "attention_resolutions": [16],
        "dropout": 0.1,
        "conv": "xla",
    }
    return {**keys, **overrides}


def ddpm_train(steps: int) -> dict[str, Any]:
    """The ``train`` settings torchcfm's ``train_cifar10.py`` and DDPM (Ho et al. 2020,
    appendix B) share: Adam 2e-4, 5,000 linear warm-up steps then constant, batch 128,
    gradient clip 1, EMA 0.9999; ``steps`` steps, one compiled step per call, evaluated at
    the end, checkpointed every 20,000 steps."""
    return {
        "steps": int(steps),
        "batch_size": 128,
        "lr": 2e-4,
        "warmup_steps": 5_000,
        "final_lr_fraction": 1.0,
        "grad_clip": 1.0,
        "ema_decay": 0.9999,
        "steps_per_call": 1,
        "eval_every": 0,
        "checkpoint_every": 20_000,
        "keep_checkpoints": 2,
    }
