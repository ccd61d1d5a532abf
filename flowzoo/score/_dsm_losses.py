"""Denoising score matching (Vincent 2011): one sigma, NCSN multi-sigma, continuous-time SDE.

The Gaussian perturbation ``x_t = mean + std * z`` has conditional score ``-z / std``; the
losses regress the network on it. ``loss(params, key, batch) -> (scalar, metrics)``; the
SDE loss uses the SDE time convention, **t=0 data, t=T noise**.

Conditional score models: ``batch`` may be a pair ``(x, context)`` (as for
:func:`flowzoo.flows.nll_loss`); the network is then called with the context as its last
argument. :func:`sde_dsm_loss` can drop the context of a fraction of the rows (replace it by
zeros) so one network also learns the unconditional score, which
:func:`guided_score` combines with the conditional one (classifier-free guidance).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key, Params
from ..paths import SDE, bcast


def _sum_event(x: Array) -> Array:
    return jnp.sum(x.reshape(x.shape[0], -1), 1)


def _split(batch):
    """``(x, context)`` of a batch that is an array or an ``(x, context)`` pair."""
    return batch if isinstance(batch, tuple) else (batch, None)


def _call(fn: Callable, *args, context=None):
    return fn(*args) if context is None else fn(*args, context)


def guided_score(
    score_apply: Callable, params: Params, t: Array, x: Batch, context: Array, scale: float
) -> Batch:
    """Classifier-free guidance for scores: ``s_uncond + scale * (s_cond - s_uncond)``.

    ``scale = 1`` is the conditional score, ``0`` the unconditional one (the all-zero context
    that :func:`sde_dsm_loss` trains with ``context_dropout``), ``> 1`` guides (Ho & Salimans
    2022). ``t``: SDE time (t=0 data, t=T noise); ``context``: ``(batch, *context)``.
    """
    s_cond = score_apply(params, t, x, context)
    s_uncond = score_apply(params, t, x, jnp.zeros_like(context))
    return s_uncond + scale * (s_cond - s_uncond)


def geometric_sigmas(sigma_max: float, sigma_min: float, num: int) -> Array:
    """``num`` noise levels from ``sigma_max`` down to ``sigma_min``, geometric (NCSN)."""
    return jnp.asarray(np.geomspace(sigma_max, sigma_min, num), jnp.float32)


def dsm_loss(score_apply: Callable[[Params, Batch], Batch], sigma: float):
    """DSM at one noise level: ``mean 1/2 sigma^2 |s(x + sigma z) + z / sigma|^2``.

    ``score_apply(params, x)``; minimised by the score of ``p_data * N(0, sigma^2 I)``.
    """

    def loss(params: Params, key: Key, batch) -> tuple[Array, dict[str, Array]]:
        batch, context = _split(batch)
        z = jax.random.normal(key, batch.shape, batch.dtype)
        s = _call(score_apply, params, batch + sigma * z, context=context)
        val = 0.5 * jnp.mean(_sum_event((sigma * s + z) ** 2))
        return val, {"loss": val}

    return loss


def ncsn_loss(score_apply: Callable[[Params, Array, Batch], Batch], sigmas: Array):
    """Multi-sigma DSM (Song & Ermon 2019): ``sigma_i`` uniform per example, ``sigma^2`` weight.

    ``score_apply(params, sigma, x)`` with ``sigma`` of shape ``(batch,)``; ``sigmas`` e.g.
    :func:`geometric_sigmas`.
    """
    sigmas = jnp.asarray(sigmas, jnp.float32)

    def loss(params: Params, key: Key, batch) -> tuple[Array, dict[str, Array]]:
        batch, context = _split(batch)
        ki, kz = jax.random.split(key)
        sigma = sigmas[jax.random.randint(ki, (batch.shape[0],), 0, sigmas.shape[0])]
        z = jax.random.normal(kz, batch.shape, batch.dtype)
        sb = bcast(sigma, batch)
        s = _call(score_apply, params, sigma, batch + sb * z, context=context)
        val = 0.5 * jnp.mean(_sum_event((sb * s + z) ** 2))
        return val, {"loss": val}

    return loss


def sde_dsm_loss(
    score_apply: Callable[[Params, Array, Batch], Batch],
    sde: SDE,
    *,
    t_min: float = 1e-5,
    likelihood_weighting: bool = False,
    context_dropout: float = 0.0,
    network_rng: bool = False,
):
    """Continuous-time DSM (Song et al. 2021, eq. 7), ``t ~ U(t_min, T)``, t=0 data, t=T noise.

    Weight ``lambda(t) = std(t)^2`` (default), or ``g(t)^2`` with ``likelihood_weighting``
    (Song, Durkan et al. 2021: the loss then bounds the negative log-likelihood).
    ``score_apply(params, t, x[, context])`` with ``t`` of shape ``(batch,)``.
    ``context_dropout``: probability that a row's context is replaced by zeros (the
    unconditional score of :func:`guided_score`); used only with ``(x, context)`` batches.
    ``network_rng``: call ``score_apply(..., rng=key)`` with a fresh key per call, for a
    network with stochastic layers in training (the dropout of :func:`flowzoo.nets.unet`);
    the loss's other draws are the same either way.
    """
    if not 0.0 <= context_dropout < 1.0:
        raise ValueError(f"context_dropout must be in [0, 1), got {context_dropout!r}")

    def loss(params: Params, key: Key, batch) -> tuple[Array, dict[str, Array]]:
        batch, context = _split(batch)
        kt, kz, kd = jax.random.split(key, 3)
        t = jax.random.uniform(kt, (batch.shape[0],), minval=t_min, maxval=sde.T)
        z = jax.random.normal(kz, batch.shape, batch.dtype)
        mean, std = sde.marginal(batch, t)
        if context is not None and context_dropout > 0:
            keep = jax.random.bernoulli(kd, 1.0 - context_dropout, (batch.shape[0],))
            context = context * bcast(keep.astype(context.dtype), context)
        apply = score_apply
        if network_rng:  # folded in, so that the loss's other draws stay those without it
            apply = functools.partial(score_apply, rng=jax.random.fold_in(key, 1))
        s = _call(apply, params, t, mean + bcast(std, batch) * z, context=context)
        err = _sum_event((bcast(std, batch) * s + z) ** 2)  # std^2 |s + z/std|^2
        if likelihood_weighting:
            err = err * sde.diffusion(t) ** 2 / std**2
        val = 0.5 * jnp.mean(err)
        return val, {"loss": val}

    return loss
