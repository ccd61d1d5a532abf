"""Invertible residual blocks (i-ResNet, Behrmann et al. 2019; Residual Flows, Chen et al. 2019).

``forward: x = z + g(z)`` with ``g`` a spectrally normalised MLP, ``Lip(g) <= c**L < 1``
(see :mod:`._spectral`), so the map is invertible:

* inverse by the fixed-point iteration ``z_{k+1} = x - g(z_k)``, ``z_0 = x``, stopped when
  ``max |z_{k+1} - z_k| <= inverse_tol`` (default 1e-6) or after ``inverse_iterations``
  (default 500) steps; the error after stopping is at most ``Lip/(1 - Lip) * inverse_tol``.
  The loop is a ``lax.while_loop``: forward-mode differentiable (``jvp``/``jacfwd``) but not
  reverse-mode. To train a residual flow by maximum likelihood put the residual map on the
  normalizing side with ``flowzoo.bijectors.invert(block.bijector)``.
* exact log-det (the Bijector's, deterministic): ``slogdet(I + J_g(z))`` per example from
  the autodiff Jacobian, for low-dimensional events.
* stochastic log-det (``logdet_estimate``): the power series
  ``log det(I + J) = sum_k (-1)^{k+1} tr(J^k) / k`` with Hutchinson probes ``v``
  (``tr(J^k) ~ v^T J^k v``, ``k`` jvps), either truncated at ``num_terms`` (bias at most
  ``D * Lip^{N+1} / ((N + 1)(1 - Lip))``) or with a Russian-roulette number of terms
  ``N = num_exact_terms + M``, ``P(M >= m) = (1 - p)^m``, reweighting term ``k`` by
  ``1 / P(N >= k)`` so the estimate is unbiased for the infinite series (up to the cap
  ``max_terms`` on ``N``, whose probability ``(1 - p)^(max_terms - num_exact_terms)`` is
  about 1e-9 with the defaults). One ``N`` is drawn per call and shared by the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Context, Key, LogDet, Params
from ._base import Bijector
from ._spectral import ACTIVATIONS, apply_mlp, init_mlp, normalized_weights

ESTIMATORS = ("series", "roulette")


def _probe(key: Key, shape: tuple[int, ...], dtype, probe: str) -> Array:
    """A power-series probe with ``E[v v^T] = I`` (Rademacher or Gaussian)."""
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, dtype)
    if probe == "gaussian":
        return jax.random.normal(key, shape, dtype)
    raise ValueError(f"unknown probe {probe!r}; choose 'rademacher' or 'gaussian'")


class ResidualBlock(NamedTuple):
    """An i-ResNet block: the exact :class:`Bijector` plus stochastic and diagnostic extras.

    * ``bijector``: ``forward(params, z) = (z + g(z), slogdet(I + J_g))``, ``inverse`` by
      fixed-point iteration; params ``{"g": [layer, ...]}``.
    * ``residual(params, z) -> g(z)``: the Lipschitz branch, ``(batch, D) -> (batch, D)``.
    * ``logdet_estimate(params, key, z) -> (batch,)``: the power-series / Russian-roulette
      Hutchinson estimate of the forward log-det at ``z`` (the residual map's input).
    * ``spectral_norms(params) -> (L,)``: exact spectral norms of the weights as used
      (each ``<= lipschitz``).
    """

    bijector: Bijector
    residual: Callable[[Params, Batch], Batch]
    logdet_estimate: Callable[[Params, Key, Batch], LogDet]
    spectral_norms: Callable[[Params], Array]


def power_series_terms(jvp: Callable[[Batch], Batch], probe: Batch, num_terms: int) -> Array:
    """``[(-1)^{k+1} / k * v^T J^k v for k = 1..num_terms]``, shape ``(num_terms, batch)``.

    ``jvp(w) = J w`` row-wise; ``probe`` ``v`` is ``(batch, D)``. With ``v`` ranging over the
    basis vectors and summed this gives exact traces (used by the tests).
    """

    def body(w, k):
        w = jvp(w)
        sign = jnp.where(k % 2 == 1, 1.0, -1.0).astype(probe.dtype)
        return w, sign / k.astype(probe.dtype) * jnp.sum(probe * w, axis=-1)

    _, terms = jax.lax.scan(body, probe, jnp.arange(1, num_terms + 1))
    return terms


def residual_block(
    dim: int,
    hidden: Sequence[int] = (64, 64),
    *,
    lipschitz: float = 0.9,
    activation: str = "elu",
    spectral: str = "svd",
    power_iterations: int = 20,
    inverse_iterations: int = 500,
    inverse_tol: float = 1e-6,
    estimator: str = "roulette",
    num_terms: int = 10,
    num_exact_terms: int = 2,
    geometric_p: float = 0.5,
    max_terms: int = 32,
    probe: str = "rademacher",
    num_probes: int = 1,
) -> ResidualBlock:
    """An invertible residual block on ``(batch, dim)`` vectors (see the module docstring).

    Args:
      dim: event dimension ``D``.
      hidden: hidden widths of ``g``.
      lipschitz: coefficient ``c < 1``; every layer's spectral norm is capped at ``c``.
      activation: 1-Lipschitz activation: ``"elu"``, ``"tanh"`` or ``"lipswish"``.
      spectral: ``"svd"`` (exact) or ``"power"`` (``power_iterations`` from stored vectors).
      inverse_iterations, inverse_tol: fixed-point iteration cap and stopping tolerance.
      estimator: ``"series"`` (truncated at ``num_terms``) or ``"roulette"`` (unbiased).
      num_exact_terms, geometric_p, max_terms: Russian-roulette settings.
      probe, num_probes: Hutchinson probe kind and number of probes averaged.
    """
    if not 0.0 < lipschitz < 1.0:
        raise ValueError(f"lipschitz must be in (0, 1), got {lipschitz}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be 1-Lipschitz: one of {sorted(ACTIVATIONS)}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    if estimator == "roulette" and not (0.0 < geometric_p < 1.0 and max_terms > num_exact_terms):
        raise ValueError("roulette needs 0 < geometric_p < 1 and max_terms > num_exact_terms")
    act = ACTIVATIONS[activation]
    sizes = (int(dim), *(int(h) for h in hidden), int(dim))

    def g(params: Params, z: Batch) -> Batch:
        return apply_mlp(params["g"], z, lipschitz, act, spectral, power_iterations)

    def init(key: Key, x: Batch, context: Context = None) -> Params:
        del context
        if x.shape[1:] != (dim,):
            raise ValueError(f"residual_block({dim}) expects (batch, {dim}) arrays, got {x.shape}")
        return {"g": init_mlp(key, sizes, x.dtype)}

    def exact_logdet(params: Params, z: Batch) -> LogDet:
        jac = jax.vmap(jax.jacfwd(lambda v: g(params, v[None])[0]))(z)
        return jnp.linalg.slogdet(jnp.eye(dim, dtype=z.dtype)[None] + jac)[1]

    def forward(params: Params, z: Batch, context: Context = None):
        del context
        return z + g(params, z), exact_logdet(params, z)

    def invert_map(params: Params, x: Batch) -> Batch:
        def cond(state):
            i, _, delta = state
            return (i < inverse_iterations) & (delta > inverse_tol)

        def body(state):
            i, z, _ = state
            z_new = x - g(params, z)
            return i + 1, z_new, jnp.max(jnp.abs(z_new - z))

        init_state = (jnp.zeros((), jnp.int32), x, jnp.full((), jnp.inf, x.dtype))
        return jax.lax.while_loop(cond, body, init_state)[1]

    def inverse(params: Params, x: Batch, context: Context = None):
        del context
        z = invert_map(params, x)
        return z, -exact_logdet(params, z)

    def logdet_estimate(params: Params, key: Key, z: Batch) -> LogDet:
        kp, kn = jax.random.split(key)
        jvp = lambda w: jax.jvp(lambda u: g(params, u), (z,), (w,))[1]
        num = num_terms if estimator == "series" else max_terms
        if estimator == "series":
            weights = jnp.ones((num,), z.dtype)
        else:
            q = 1.0 - geometric_p
            m = jnp.floor(jnp.log(jax.random.uniform(kn, (), z.dtype, 1e-30, 1.0)) / jnp.log(q))
            k = jnp.arange(1, num + 1, dtype=z.dtype)
            extra = k - num_exact_terms  # the term's index beyond the always-kept ones
            weights = jnp.where(extra <= 0, 1.0, jnp.where(extra <= m, q**-extra, 0.0))
        probes = jax.vmap(lambda k: _probe(k, z.shape, z.dtype, probe))(
            jax.random.split(kp, num_probes)
        )

        def one_probe(v):
            terms = power_series_terms_masked(jvp, v, weights)
            return jnp.sum(terms, axis=0)

        return jnp.mean(jax.vmap(one_probe)(probes), axis=0)

    def spectral_norms(params: Params) -> Array:
        ws = normalized_weights(params["g"], lipschitz, spectral, power_iterations)
        return jnp.stack([jnp.linalg.norm(w, 2) for w in ws])

    return ResidualBlock(
        Bijector(init, forward, inverse),
        g,
        logdet_estimate,
        spectral_norms,
    )


def power_series_terms_masked(jvp: Callable[[Batch], Batch], probe: Batch, weights: Array) -> Array:
    """Weighted power-series terms ``weights[k-1] * (-1)^{k+1}/k * v^T J^k v``, ``(K, batch)``.

    A term whose weight is 0 (and every later one: weights are zero from the first zero on)
    skips its jvp with ``lax.cond``, so a Russian-roulette draw of ``N`` terms costs ``N``
    jvps (outside ``vmap``; under ``vmap`` over draws both branches run).
    """

    def body(w, inputs):
        k, weight = inputs
        w = jax.lax.cond(weight != 0, jvp, lambda w: w, w)
        sign = jnp.where(k % 2 == 1, 1.0, -1.0).astype(probe.dtype)
        term = weight * sign / k.astype(probe.dtype) * jnp.sum(probe * w, axis=-1)
        return w, term

    _, terms = jax.lax.scan(body, probe, (jnp.arange(1, weights.shape[0] + 1), weights))
    return terms
