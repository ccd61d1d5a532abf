"""Flow samplers for unnormalised densities: a flow trained by reverse KL, then importance
weights (Rezende & Mohamed 2015; Noé et al. 2019, Boltzmann generators).

The flow is ``q(x)``: a standard-normal base, a flowzoo flow (:data:`FLOW_SIZES`: RealNVP,
rational-quadratic spline coupling, IAF) on the standardised ``y``, then the fixed scaling
``x = s * y`` with ``s = problem.reference_scale``, so ``log q(x) = log q_y(y) - sum log s``.
Every flow here starts as the identity (zero-initialised conditioner outputs), so the
untrained ``q`` is ``N(0, diag(s^2))``, the reference that :func:`flowzoo.samplers.smc_sample`
anneals from.

Training minimises the reparameterised reverse KL ``E_q[log q(x) - log p(x)]`` (which is
``KL(q || p) - log Z``) over ``num_steps`` steps of Adam after clipping the gradient's global
norm, each on a fresh batch of ``n`` draws. The target enters through one value-and-gradient
of ``log_prob`` per step on the batch, at the draws with the gradient stopped; the loss uses
``log p(x) ~ log p(x0) + grad log p(x0) . (x - x0)``, whose value and gradient in the flow's
parameters are the exact ones, so ``log_prob`` is never differentiated through the flow.
Draws where ``log p`` or its gradient is not finite (outside a support, overflow) are left
out of that step's mean; a step whose loss or parameter gradient is still not finite (every
draw left out, or the flow overflowed) leaves the parameters and the optimiser state as they
were (an explicit ``where``), and is counted in ``ReverseKLResult.skipped``.

Sampling: ``n`` fresh draws, self-normalised importance weights ``log w = log p(x) - log
q(x)`` (a non-finite ``log w`` counts as ``-inf``: weight zero), ``log Z = logsumexp(log w)
- log n`` (unbiased for ``Z``), ``ESS = (sum w)^2 / sum w^2``, and systematic resampling
(:func:`flowzoo.samplers.systematic_resample`, SMC's) to ``n`` equally weighted samples.

Budget (the NFE of the registry entries ``flow_realnvp``, ``flow_spline``, ``flow_iaf``):
one gradient of ``log_prob`` on the batch per training step and one evaluation of the final
weights, ``num_steps + 1``; a budget ``B`` buys ``B - 1`` steps. Reverse KL is mode-seeking
(Midgley et al. 2023, FAB): on a multimodal target the flow may cover some modes only, which
the weights cannot repair; the ESS says so. ``import flowzoo.zoo`` registers the three
entries in :data:`flowzoo.samplers.SAMPLERS` (a family never registers itself).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._types import Array, Batch, Key, Params
from ..distributions import Distribution
from ..samplers import Problem, SamplerInfo, SamplerSpec, systematic_resample
from ._autoregressive import iaf
from ._realnvp import realnvp

FLOW_SIZES: dict[str, dict[str, Any]] = {
    "realnvp": {"num_layers": 6, "hidden": (64, 64)},
    "spline": {
        "num_layers": 4,
        "hidden": (64, 64),
        "transformer": "spline",
        "transformer_options": {"num_bins": 8, "bound": 5.0},
    },
    "iaf": {"num_layers": 4, "hidden": (64, 64)},
}
"""The default flow of each name, built on the standardised ``y = x / s``: RealNVP with 6
affine couplings (tanh-bounded log-scales), RealNVP with 4 rational-quadratic spline
couplings of 8 bins on ``[-5, 5]`` (the standardised space: ``s`` is at least the largest
marginal std, so the bulk of ``y`` lies within ``[-3, 3]``), IAF with 4 affine layers; every
conditioner an MLP of hidden widths ``(64, 64)``, ReLU."""

LEARNING_RATE = 1e-3
"""Adam's learning rate (optax defaults otherwise: b1 0.9, b2 0.999, eps 1e-8)."""

MAX_GRAD_NORM = 10.0
"""The global norm the parameter gradient is clipped to before Adam."""


def reverse_kl_flow(flow: str, event_shape: tuple[int, ...], **overrides: Any) -> Distribution:
    """The flow ``flow`` (a key of :data:`FLOW_SIZES`) on the standardised ``(dim,)`` space,
    standard-normal base; ``overrides`` replace or add to its builder's arguments
    (``num_layers``, ``hidden``, ``transformer_options``, ...)."""
    if flow not in FLOW_SIZES:
        raise ValueError(f"unknown flow {flow!r}; choose one of {sorted(FLOW_SIZES)}")
    shape = tuple(event_shape)
    if len(shape) != 1:
        raise ValueError(
            f"flow samplers model vectors: problem.event_shape must be (dim,), got {shape}"
        )
    build = iaf if flow == "iaf" else realnvp
    return build(shape, **{**FLOW_SIZES[flow], **overrides})


class ReverseKLResult(NamedTuple):
    """``position`` ``(n, dim)``: the draws resampled by their weights (equally weighted);
    ``log_z``: ``logsumexp(log w) - log n``; ``ess``: ``(sum w)^2 / sum w^2`` (0 when every
    weight is zero); ``log_weights`` ``(n,)``: ``log p - log q`` of the draws before
    resampling (``-inf`` where not finite); ``params``: the trained flow's params (of
    :func:`reverse_kl_flow`, standardised space); ``losses`` ``(num_steps,)``: each step's
    ``mean(log q - log p)`` over its finite draws (an estimate of ``KL(q || p) - log Z``,
    before that step's update); ``skipped``: int32, the steps whose update was skipped."""

    position: Batch
    log_z: Array
    ess: Array
    log_weights: Array
    params: Params
    losses: Array
    skipped: Array


def _value_and_grad(log_prob: Callable[[Batch], Array], x: Batch) -> tuple[Array, Batch]:
    """``log_prob(x)`` ``(n,)`` and its gradient ``(n, dim)``: one forward and one backward."""
    lp, vjp = jax.vjp(log_prob, x)
    return lp, vjp(jnp.ones_like(lp))[0]


def _loss_fn(dist: Distribution, log_prob, s: Array, n: int):
    """``loss(params, key) -> (mean(log q - log p) over finite draws, number of them)``."""
    log_det_s = jnp.sum(jnp.log(s))

    def loss(params: Params, key: Key):
        y, log_q_y = dist.sample_and_log_prob(params, key, n)
        x = s * y
        x0 = jax.lax.stop_gradient(x)
        lp, g = _value_and_grad(log_prob, x0)
        ok = jnp.isfinite(lp) & jnp.all(jnp.isfinite(g), axis=1)
        g = jnp.where(ok[:, None], g, 0.0)
        # value log p(x0), gradient in the params grad log p(x0) . dx/dparams
        log_p = jnp.where(ok, lp, 0.0) + jnp.sum(g * (x - x0), axis=1)
        terms = jnp.where(ok, log_q_y - log_det_s - log_p, 0.0)
        count = jnp.sum(ok)
        return jnp.sum(terms) / count, count

    return loss


def _all_finite(tree) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _train(loss, params: Params, key: Key, num_steps: int, learning_rate, max_grad_norm):
    """``num_steps`` Adam steps (keys ``fold_in(key, step)``) in one ``lax.scan``; a step with
    a non-finite loss or gradient keeps the params and optimiser state."""
    opt = optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))

    def step(carry, k):
        params, opt_state = carry
        (value, _), grads = jax.value_and_grad(loss, has_aux=True)(
            params, jax.random.fold_in(key, k)
        )
        updates, new_state = opt.update(grads, opt_state, params)
        ok = jnp.isfinite(value) & _all_finite(grads)
        keep = lambda new, old: jnp.where(ok, new, old)
        new = (optax.apply_updates(params, updates), new_state)
        return jax.tree.map(keep, new, (params, opt_state)), (value, ~ok)

    carry = (params, opt.init(params))
    (params, _), (losses, skipped) = jax.lax.scan(step, carry, jnp.arange(num_steps))
    return params, losses, jnp.sum(skipped).astype(jnp.int32)


def _weighted(dist, params, log_prob, s, key: Key, n: int):
    """``n`` draws, their log-weights, ``log Z``, ESS and the resampled draws."""
    k_draw, k_resample = jax.random.split(key)
    y, log_q_y = dist.sample_and_log_prob(params, k_draw, n)
    x = s * y
    log_w = log_prob(x) - (log_q_y - jnp.sum(jnp.log(s)))
    log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
    top = jax.nn.logsumexp(log_w)
    any_ok = jnp.isfinite(top)
    log_z = top - math.log(n)
    ess = jnp.where(any_ok, jnp.exp(2.0 * top - jax.nn.logsumexp(2.0 * log_w)), 0.0)
    idx = jnp.where(any_ok, systematic_resample(k_resample, log_w), jnp.arange(n))
    return x[idx], log_z, ess, log_w


def reverse_kl_fit(
    key: Key,
    problem: Problem,
    n: int,
    num_steps: int,
    *,
    flow: str = "realnvp",
    learning_rate: float = LEARNING_RATE,
    max_grad_norm: float = MAX_GRAD_NORM,
    **flow_options: Any,
) -> ReverseKLResult:
    """Train ``flow`` by reverse KL on ``problem.log_prob`` and importance-sample it (see the
    module docstring); pure and jittable with ``n``, ``num_steps`` and the options static.

    Args:
      key: PRNG key; ``k_init, k_train, k_final = split(key, 3)``, step ``k`` uses
        ``fold_in(k_train, k)``, the final draws and their resampling split ``k_final``.
      problem: needs ``event_shape`` ``(dim,)``, ``log_prob(x) -> (batch,)`` (unnormalised)
        and ``reference_scale`` ``s`` (a float or ``(dim,)``).
      n: batch of every training step and the number of samples.
      num_steps: training steps (0 or more; with ``learning_rate=0`` the flow stays the
        reference and this is importance sampling from ``N(0, diag(s^2))``).
      flow: ``"realnvp"``, ``"spline"`` or ``"iaf"`` (:data:`FLOW_SIZES`).
      learning_rate, max_grad_norm: Adam's step and the gradient clipping norm.
      **flow_options: override the flow's builder arguments (``num_layers``, ``hidden``, ...).
    """
    shape = tuple(problem.event_shape)
    if problem.log_prob is None or problem.reference_scale is None:
        raise ValueError("reverse_kl_fit needs problem.log_prob and problem.reference_scale")
    dist = reverse_kl_flow(flow, shape, **flow_options)
    s = jnp.broadcast_to(jnp.asarray(problem.reference_scale, jnp.float32), shape)[None]
    k_init, k_train, k_final = jax.random.split(key, 3)
    params = dist.init(k_init, jnp.zeros((2, *shape), jnp.float32))
    loss = _loss_fn(dist, problem.log_prob, s, n)
    params, losses, skipped = _train(loss, params, k_train, num_steps, learning_rate, max_grad_norm)
    x, log_z, ess, log_w = _weighted(dist, params, problem.log_prob, s, k_final, n)
    return ReverseKLResult(x, log_z, ess, log_w, params, losses, skipped)


def reverse_kl_sample(
    key: Key, problem: Problem, n: int, num_steps: int, **options: Any
) -> tuple[Batch, SamplerInfo]:
    """The registry form of :func:`reverse_kl_fit`, with its arguments and keyword options
    (``flow``, ``learning_rate``, ``max_grad_norm``, the flow's builder arguments):
    ``(n, dim)`` equally weighted samples and ``SamplerInfo(nfe=num_steps + 1,
    acceptance_rate=NaN, log_z, ess)``."""
    out = reverse_kl_fit(key, problem, n, num_steps, **options)
    nfe = jnp.asarray(reverse_kl_nfe(num_steps), jnp.int32)
    info = SamplerInfo(nfe, jnp.asarray(jnp.nan, jnp.float32), None, out.log_z, out.ess)
    return out.position, info


def reverse_kl_nfe(num_steps: int, **options: Any) -> int:
    """One gradient of ``log_prob`` per training step and one final weighting: ``num_steps
    + 1`` evaluations of the batch."""
    del options
    return num_steps + 1


def reverse_kl_steps(budget: int, **options: Any) -> int:
    """The training steps a budget of ``budget`` evaluations buys: ``max(1, budget - 1)``."""
    del options
    return max(1, budget - 1)


FLOW_SAMPLERS: dict[str, SamplerSpec] = {
    f"flow_{name}": SamplerSpec(
        functools.partial(reverse_kl_sample, flow=name),
        (("log_prob",), ("reference_scale",)),
        "flow",
        nfe=reverse_kl_nfe,
        steps_for=reverse_kl_steps,
    )
    for name in FLOW_SIZES
}
"""``flow_realnvp``, ``flow_spline``, ``flow_iaf``: :func:`reverse_kl_sample` with that flow,
kind ``"flow"``; registered in :data:`flowzoo.samplers.SAMPLERS` by ``import flowzoo.zoo``."""
