"""Diagonal Gaussian mixtures and their exact time-dependent fields.

A mixture ``sum_k w_k N(m_k, diag(v_k))`` stays a mixture under every affine Gaussian
noising: with ``x_t = a x_0 + s z`` the components become ``N(a m_k, diag(a^2 v_k + s^2))``.
So the score of a diffused mixture (SDE time, t=0 data, t=T noise) and the marginal
velocity of a flow-matching path (t=0 noise, t=1 data) are closed form, and a sampler that
uses them is measured on its own error. ``v_k = 0`` is allowed: the empirical measure of a
data set (each point a component) gives the oracle fields of data-defined targets.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._numerics import HIGHEST
from .._types import Array, Batch, Key
from ..paths import SDE, Path


class GaussianMixture(NamedTuple):
    """``weights`` ``(K,)`` summing to 1, ``means`` ``(K, d)``, ``variances`` ``(K, d)``."""

    weights: Array
    means: Array
    variances: Array


def _log_components(mix: GaussianMixture, x: Batch, a, s) -> tuple[Array, Array, Array]:
    """Per-component log-densities ``(n, K)`` of the diffused mixture, its means, variances."""
    means = a * mix.means  # (K, d)
    var = a**2 * mix.variances + s**2  # (K, d)
    diff = x[:, None, :] - means[None]
    log_n = -0.5 * jnp.sum(diff**2 / var[None] + jnp.log(2 * jnp.pi * var)[None], -1)
    return log_n + jnp.log(mix.weights)[None], means, var


def log_prob(mix: GaussianMixture, x: Batch) -> Array:
    """``log p(x)`` ``(n,)`` of the mixture (needs ``variances > 0``)."""
    log_c, _, _ = _log_components(mix, x, 1.0, 0.0)
    return jax.nn.logsumexp(log_c, axis=1)


def sample(mix: GaussianMixture, key: Key, n: int) -> Batch:
    """``n`` exact samples ``(n, d)``."""
    k_mode, k_noise = jax.random.split(key)
    mode = jax.random.choice(k_mode, mix.weights.shape[0], (n,), p=mix.weights)
    z = jax.random.normal(k_noise, (n, mix.means.shape[1]))
    return mix.means[mode] + jnp.sqrt(mix.variances[mode]) * z


def diffused_score(mix: GaussianMixture, a, s, x: Batch) -> Batch:
    """Score of the mixture pushed through ``x -> a x + s z``, at ``x`` ``(n, d)``."""
    log_c, means, var = _log_components(mix, x, a, s)
    post = jax.nn.softmax(log_c, axis=1)  # (n, K)
    comp = -(x[:, None, :] - means[None]) / var[None]  # (n, K, d)
    return jnp.einsum("nk,nkd->nd", post, comp, precision=HIGHEST)


def sde_score(mix: GaussianMixture, sde: SDE):
    """``score_t(t, x)`` of the diffused mixture under ``sde`` (SDE time)."""

    def score(t, x):
        a, s = sde.marginal(jnp.ones((), x.dtype), jnp.asarray(t, x.dtype))
        return diffused_score(mix, a, s, x)

    return score


def path_velocity(mix: GaussianMixture, path: Path):
    """The marginal velocity ``v(t, x) = E[d x_t / dt | x_t = x]`` of ``path`` from N(0, I)
    (t=0) to the mixture (t=1): per component ``E[x1|x_t]`` and ``E[x0|x_t]`` are linear in
    ``x_t``, weighted by the component posterior."""

    def velocity(t, x):
        t = jnp.asarray(t, x.dtype)
        alpha, sigma = path.schedule(t)
        d_alpha, d_sigma = path.schedule_dt(t)
        log_c, means, var = _log_components(mix, x, alpha, sigma)
        post = jax.nn.softmax(log_c, axis=1)
        r = (x[:, None, :] - means[None]) / var[None]  # (n, K, d)
        e_x1 = mix.means[None] + alpha * mix.variances[None] * r
        e_x0 = sigma * r
        return jnp.einsum("nk,nkd->nd", post, d_alpha * e_x1 + d_sigma * e_x0, precision=HIGHEST)

    return velocity


def assign_modes(mix: GaussianMixture, x: Batch) -> Array:
    """The most probable component of each row ``(n,)`` (int)."""
    log_c, _, _ = _log_components(mix, x, 1.0, 0.0)
    return jnp.argmax(log_c, axis=1)
