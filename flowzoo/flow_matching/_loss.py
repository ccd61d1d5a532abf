"""The conditional flow-matching loss and classifier-free guidance.

Time convention: t=0 noise ``x0 ~ N(0, I)``, t=1 data ``x1``. The network is a velocity field
``apply_fn(params, t, x, context=None) -> (batch, *event)`` with ``t`` of shape ``(batch,)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Float, Key, Params, Scalar
from ..paths import Path, expand_time
from ._coupling import Coupling, independent_coupling

ApplyFn = Callable[..., Batch]
LossFn = Callable[[Params, Key, Any], tuple[Scalar, dict[str, Array]]]


def sample_times(
    key: Key,
    n: int,
    time_sampling: str = "uniform",
    time_range: tuple[float, float] = (0.0, 1.0),
    loc: float = 0.0,
    scale: float = 1.0,
    uniform_fraction: float = 0.0,
) -> Float[Array, " n"]:
    """Training times in ``time_range``: ``"uniform"`` or ``"logit_normal"``.

    Logit-normal (Esser et al. 2024): ``t = sigmoid(loc + scale * N(0, 1))``, which puts more
    weight on intermediate times; it is mapped affinely into ``time_range``. With
    ``uniform_fraction = f > 0`` each time is instead drawn from the mixture ``f U(0, 1) +
    (1 - f) logit-normal``: the logit-normal's density vanishes at both ends, so alone it
    leaves the times near the data end (t near 1, which sets the likelihood and the fine
    detail of samples) almost untrained.
    """
    lo, hi = time_range
    if not 0.0 <= uniform_fraction <= 1.0:
        raise ValueError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
    if time_sampling == "uniform":
        u = jax.random.uniform(key, (n,))
    elif time_sampling == "logit_normal":
        # without a uniform component the key is used unsplit: the same draws as the pure
        # logit-normal sampler, so a run with those times resumes exactly
        k_ln, k_u, k_pick = jax.random.split(key, 3) if uniform_fraction > 0.0 else (key,) * 3
        u = jax.nn.sigmoid(loc + scale * jax.random.normal(k_ln, (n,)))
        if uniform_fraction > 0.0:
            pick = jax.random.uniform(k_pick, (n,)) < uniform_fraction
            u = jnp.where(pick, jax.random.uniform(k_u, (n,)), u)
    else:
        raise ValueError(
            f"time_sampling must be 'uniform' or 'logit_normal', got {time_sampling!r}"
        )
    return lo + (hi - lo) * u


def label_context(labels: Array, num_classes: int, keep: Array | None = None) -> Array:
    """One-hot context ``(batch, num_classes)``; rows with ``keep == False`` are all zero (the
    "null" label of classifier-free guidance)."""
    ctx = jax.nn.one_hot(labels, num_classes)
    return ctx if keep is None else ctx * keep[:, None].astype(ctx.dtype)


def cfm_loss(
    apply_fn: ApplyFn,
    path: Path,
    *,
    coupling: Coupling | None = None,
    time_sampling: str = "uniform",
    time_range: tuple[float, float] = (0.0, 1.0),
    logit_normal_loc: float = 0.0,
    logit_normal_scale: float = 1.0,
    time_uniform_fraction: float = 0.0,
    num_classes: int | None = None,
    label_dropout: float = 0.1,
    source: Callable[[Key, int], Batch] | str | None = None,
    target: str = "velocity",
    network_rng: bool = False,
) -> LossFn:
    """Conditional flow matching: ``E |v_theta(t, x_t) - u_t(x0, x1)|^2`` (Lipman et al. 2023).

    Per call: draw noise ``x0 ~ N(0, I)`` like the data, pair it with the data by ``coupling``
    (default independent), draw ``t`` by ``time_sampling`` in ``time_range``, regress the
    network onto the path's conditional velocity at ``x_t = sigma_t x0 + alpha_t x1``. The loss
    is the mean over batch and event elements.

    Args:
      apply_fn: ``apply_fn(params, t, x, context=None)``; ``t``: ``(batch,)``, t=0 noise,
        t=1 data.
      path: an affine :class:`Path`.
      coupling: ``coupling(key, x0, x1, labels=None) -> (i0, i1)``; see ``_coupling``.
      time_sampling: ``"uniform"`` or ``"logit_normal"`` (see :func:`sample_times`).
      time_range: sample ``t`` in this interval (e.g. ``(0, 1 - 1e-3)`` for the VP path).
      logit_normal_loc, logit_normal_scale: the logit-normal's location and scale.
      time_uniform_fraction: with ``"logit_normal"``, the weight of a uniform component
        mixed into the time law (:func:`sample_times`).
      num_classes: if set, batches are ``(x1, labels)`` with integer labels; the network gets
        the one-hot label as ``context``, zeroed with probability ``label_dropout`` (the
        unconditional model of classifier-free guidance), and OT couplings pair within classes.
      label_dropout: probability of dropping the label.
      source: the t=0 end. ``None``: ``x0 ~ N(0, I)``; a sampler ``source(key, n) -> (n,
        *event)`` of another law (two-sided interpolants, data-to-data transport); or
        ``"paired"``: each batch holds fixed pairs, ``(batch, 2, *event)`` with ``x0`` at
        index 0 and ``x1`` at index 1 of axis 1 (rectified flow's reflow,
        :func:`reflow_pairs`), and the coupling must be the default.
      target: ``"velocity"`` (the conditional velocity, plus ``gamma_t' z`` on a stochastic
        interpolant path: its minimiser is the interpolant's drift ``b``) or ``"noise"``
        (regress onto ``z``: the interpolant's denoiser ``eta_z(t, x) = E[z | x_t = x]``,
        whose score is ``-eta_z / gamma_t``; needs ``path.noise``).
      network_rng: call ``apply_fn(params, t, x, context, rng=key)`` with a fresh key per
        call, for a network with stochastic layers in training (the dropout of
        :func:`flowzoo.nets.unet`). ``False`` leaves every other draw of the loss unchanged.

    Returns:
      ``loss(params, key, batch) -> (scalar, {"target_sq": mean |u|^2})``; ``batch`` is ``x1``
      ``(batch, *event)`` or ``(x1, labels)`` (or pairs, see ``source``).
    """
    if target not in ("velocity", "noise"):
        raise ValueError(f"target must be 'velocity' or 'noise', got {target!r}")
    if target == "noise" and path.noise is None:
        raise ValueError("target='noise' needs a stochastic interpolant path (path.noise)")
    paired = isinstance(source, str)
    if paired and source != "paired":
        raise ValueError(f"source must be None, a sampler or 'paired', got {source!r}")
    if paired and (coupling is not None or num_classes is not None):
        raise ValueError("source='paired' fixes the pairs: no coupling, no labels")
    coupling = independent_coupling() if coupling is None else coupling

    def loss(params: Params, key: Key, batch: Any) -> tuple[Scalar, dict[str, Array]]:
        if num_classes is None:
            x1, labels = batch, None
        else:
            x1, labels = batch
        k_noise, k_pair, k_time, k_drop = jax.random.split(key, 4)
        k_noise, k_z = jax.random.split(k_noise)
        if paired:
            if x1.ndim < 2 or x1.shape[1] != 2:
                raise ValueError(
                    f"source='paired' needs batches of shape (batch, 2, *event), got {x1.shape}"
                )
            x0, x1 = x1[:, 0], x1[:, 1]
            i1 = jnp.arange(x1.shape[0])
        else:
            if source is None:
                x0 = jax.random.normal(k_noise, x1.shape, x1.dtype)
            else:
                x0 = jnp.asarray(source(k_noise, x1.shape[0]), x1.dtype)
                if x0.shape != x1.shape:
                    raise ValueError(f"source gave shape {x0.shape}; the data has {x1.shape}")
            i0, i1 = coupling(k_pair, x0, x1, labels)
            x0, x1 = x0[i0], x1[i1]
        t = sample_times(
            k_time,
            x1.shape[0],
            time_sampling,
            time_range,
            logit_normal_loc,
            logit_normal_scale,
            time_uniform_fraction,
        ).astype(x1.dtype)
        xt = path.sample_xt(x0, x1, t)
        goal = path.velocity(x0, x1, t)
        if path.noise is not None:
            z = jax.random.normal(k_z, x1.shape, x1.dtype)
            gamma, d_gamma = path.noise(expand_time(t, x1))
            xt = xt + gamma * z
            goal = z if target == "noise" else goal + d_gamma * z
        context = None
        if labels is not None:
            keep = jax.random.bernoulli(k_drop, 1.0 - label_dropout, (x1.shape[0],))
            context = label_context(labels[i1], num_classes, keep)
        if network_rng:  # folded in, so that the loss's other draws stay those without it
            pred = apply_fn(params, t, xt, context, rng=jax.random.fold_in(key, 1))
        else:
            pred = apply_fn(params, t, xt, context)
        value = jnp.mean((pred - goal) ** 2)
        return value, {"target_sq": jnp.mean(goal**2)}

    return loss


def guided_velocity(
    apply_fn: ApplyFn,
    params: Params,
    t: Array,
    x: Batch,
    label: Array,
    scale: float,
    num_classes: int | None = None,
) -> Batch:
    """Classifier-free guidance: ``v_uncond + scale * (v_cond - v_uncond)``.

    ``scale = 1`` is the conditional field, ``0`` the unconditional one, ``> 1`` guides
    (Ho & Salimans 2022, in flow-matching form). ``label`` is an integer array ``(batch,)``
    (then ``num_classes`` is required) or a one-hot context ``(batch, num_classes)``; the
    unconditional field uses the all-zero context that :func:`cfm_loss` trains with dropout.
    ``t``: scalar or ``(batch,)``, t=0 noise, t=1 data.
    """
    if jnp.issubdtype(jnp.asarray(label).dtype, jnp.integer):
        if num_classes is None:
            raise ValueError("integer labels need num_classes")
        label = label_context(jnp.broadcast_to(label, x.shape[:1]), num_classes)
    v_cond = apply_fn(params, t, x, label)
    v_uncond = apply_fn(params, t, x, jnp.zeros_like(label))
    return v_uncond + scale * (v_cond - v_uncond)
