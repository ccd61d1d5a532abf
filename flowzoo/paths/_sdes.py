"""Forward SDEs of score-based models (Song et al., ICLR 2021): VE, VP and sub-VP.

Time convention: **t=0 is data, t=T is noise** (the diffusion convention; flow matching runs
the other way). ``dx = f(t, x) dt + g(t) dW``; the marginal ``p_t(x_t | x_0)`` is Gaussian
with ``mean(x_0, t)`` and isotropic ``std(t)``. Times are scalars or ``(batch,)``; states are
``(batch, *event)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Key, LogProb
from ..distributions import isotropic_normal_log_prob


class SDE(NamedTuple):
    """A forward (noising) SDE, t=0 data to t=T noise.

    Attributes:
      drift: ``(t, x) -> f`` of shape ``x.shape``.
      diffusion: ``t -> g`` (scalar diffusion coefficient, shape of ``t``).
      marginal: ``(x0, t) -> (mean, std)``; ``mean`` like ``x0``, ``std`` of shape ``(batch,)``
        (or scalar for scalar ``t``): ``x_t | x_0 ~ N(mean, std^2 I)``.
      prior_sample: ``(key, shape) -> x_T`` with ``shape = (n, *event)``.
      prior_log_prob: ``x_T -> (batch,)`` log-density of the prior in nats.
      T: final time.
    """

    drift: Callable[[Array, Batch], Batch]
    diffusion: Callable[[Array], Array]
    marginal: Callable[[Batch, Array], tuple[Batch, Array]]
    prior_sample: Callable[[Key, tuple[int, ...]], Batch]
    prior_log_prob: Callable[[Batch], LogProb]
    T: float


def bcast(t: Array, x: Array) -> Array:
    """Reshape a scalar or ``(batch,)`` ``t`` to broadcast against ``x`` ``(batch, *event)``."""
    t = jnp.asarray(t, x.dtype)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim)) if t.ndim else t


def _gaussian_prior(std: float):
    def sample(key: Key, shape: tuple[int, ...]) -> Batch:
        return std * jax.random.normal(key, shape)

    def log_prob(x: Batch) -> LogProb:
        return isotropic_normal_log_prob(x, std)

    return sample, log_prob


def ve_sde(sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0) -> SDE:
    """Variance-exploding SDE: ``f = 0``, ``sigma(t) = sigma_min (sigma_max/sigma_min)^(t/T)``.

    ``g(t) = sigma(t) sqrt(2 log(sigma_max/sigma_min) / T)``; marginal mean ``x0``, std
    ``sigma(t)`` (t=0 data, t=T noise, as in Song et al. 2021); prior ``N(0, sigma_max^2 I)``.
    """
    if not (0 < sigma_min < sigma_max and T > 0):
        raise ValueError(
            f"ve_sde: need 0 < sigma_min < sigma_max and T > 0, got {sigma_min}, {sigma_max}, {T}"
        )
    log_ratio = float(np.log(sigma_max / sigma_min))

    def sigma(t):
        return sigma_min * jnp.exp(log_ratio * jnp.asarray(t, jnp.float32) / T)

    sample, log_prob = _gaussian_prior(sigma_max)
    return SDE(
        drift=lambda t, x: jnp.zeros_like(x),
        diffusion=lambda t: sigma(t) * np.sqrt(2.0 * log_ratio / T),
        marginal=lambda x0, t: (x0, sigma(t)),
        prior_sample=sample,
        prior_log_prob=log_prob,
        T=T,
    )


def _vp_parts(beta_min: float, beta_max: float, T: float):
    if not (0.0 <= beta_min <= beta_max and beta_max > 0.0 and T > 0.0):
        raise ValueError(
            f"VP/sub-VP SDE: need 0 <= beta_min <= beta_max, beta_max > 0 and T > 0; got "
            f"beta_min={beta_min}, beta_max={beta_max}, T={T}"
        )

    def beta(t):
        return beta_min + (beta_max - beta_min) * jnp.asarray(t, jnp.float32) / T

    def log_mean_coeff(t):  # -1/2 int_0^t beta(s) ds
        t = jnp.asarray(t, jnp.float32)
        return -0.25 * t**2 * (beta_max - beta_min) / T - 0.5 * t * beta_min

    return beta, log_mean_coeff


def vp_sde(beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0) -> SDE:
    """Variance-preserving SDE (DDPM limit): ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dW``.

    ``beta`` is linear from ``beta_min`` (t=0, data) to ``beta_max`` (t=T, noise); marginal
    mean ``exp(c(t)) x0``, std ``sqrt(1 - exp(2 c(t)))`` with ``c(t) = -1/2 int_0^t beta``;
    prior ``N(0, I)``.
    """
    beta, lmc = _vp_parts(beta_min, beta_max, T)
    sample, log_prob = _gaussian_prior(1.0)
    return SDE(
        drift=lambda t, x: -0.5 * bcast(beta(t), x) * x,
        diffusion=lambda t: jnp.sqrt(beta(t)),
        marginal=lambda x0, t: (
            bcast(jnp.exp(lmc(t)), x0) * x0,
            jnp.sqrt(-jnp.expm1(2.0 * lmc(t))),
        ),
        prior_sample=sample,
        prior_log_prob=log_prob,
        T=T,
    )


def subvp_sde(beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0) -> SDE:
    """Sub-VP SDE: VP drift, ``g(t)^2 = beta(t) (1 - exp(-2 int_0^t beta))``.

    Marginal mean ``exp(c(t)) x0``, std ``1 - exp(2 c(t))`` (below the VP std at every t);
    t=0 data, t=T noise; prior ``N(0, I)``.
    """
    beta, lmc = _vp_parts(beta_min, beta_max, T)
    sample, log_prob = _gaussian_prior(1.0)
    return SDE(
        drift=lambda t, x: -0.5 * bcast(beta(t), x) * x,
        diffusion=lambda t: jnp.sqrt(beta(t) * -jnp.expm1(4.0 * lmc(t))),
        marginal=lambda x0, t: (bcast(jnp.exp(lmc(t)), x0) * x0, -jnp.expm1(2.0 * lmc(t))),
        prior_sample=sample,
        prior_log_prob=log_prob,
        T=T,
    )


SDES: dict[str, Callable[..., SDE]] = {"ve": ve_sde, "vp": vp_sde, "subvp": subvp_sde}
"""SDE factories by name (used by configs: ``model.sde``)."""


def get_sde(name: str, **kwargs) -> SDE:
    """The SDE ``SDES[name](**kwargs)``; raises ``ValueError`` naming the choices."""
    if name not in SDES:
        raise ValueError(f"unknown SDE {name!r}; choose one of {sorted(SDES)}")
    return SDES[name](**kwargs)
