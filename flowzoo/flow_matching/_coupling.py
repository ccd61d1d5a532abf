"""Couplings of noise and data minibatches for conditional flow matching.

A coupling is a function ``coupling(key, x0, x1, labels=None) -> (i0, i1)`` returning index
arrays of shape ``(batch,)``: the training pairs are ``(x0[i0], x1[i1])`` (and ``labels[i1]``).
``x0`` is noise (t=0), ``x1`` data (t=1), both ``(batch, *event)``.

With ``labels`` (class-conditional training, classifier-free guidance) the OT couplings pair
within classes: the noise points are given the data labels in a random order and pairs with
different labels are forbidden, so each class's data is transported from its own share of
the noise (Tong et al. 2024, conditional OT-CFM). The independent coupling ignores labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Float, Key, Shaped
from ._assignment import exact_assignment, solver_order
from ._sinkhorn import sinkhorn_log_plan

Indices = Shaped[Array, " batch"]
Coupling = Callable[..., tuple[Indices, Indices]]


def squared_distances(x0: Batch, x1: Batch) -> Float[Array, "n m"]:
    """``C[i, j] = |x0_i - x1_j|^2`` over flattened events (exact differences, no expansion)."""
    a = x0.reshape(x0.shape[0], -1)
    b = x1.reshape(x1.shape[0], -1)
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def _cost(key: Key, x0: Batch, x1: Batch, labels: Array | None, forbidden: str) -> Array:
    """Squared distances; with labels, pairs of different classes cost ``inf`` or a penalty
    larger than any permutation of allowed pairs (``n * max + 1``, exact for the assignment)."""
    cost = squared_distances(x0, x1)
    if labels is None:
        return cost
    noise_labels = jax.random.permutation(key, labels)
    allowed = noise_labels[:, None] == labels[None, :]
    if forbidden == "inf":
        return jnp.where(allowed, cost, jnp.inf)
    return jnp.where(allowed, cost, cost.shape[0] * jnp.max(cost) + 1.0)


def independent_coupling() -> Coupling:
    """The product coupling: pairs ``(x0_i, x1_i)`` as drawn (I-CFM)."""

    def coupling(key: Key, x0: Batch, x1: Batch, labels: Array | None = None):
        del key, labels
        idx = jnp.arange(x1.shape[0])
        return idx, idx

    return coupling


def exact_ot_coupling(solver: str = "auto") -> Coupling:
    """Minibatch OT with the exact assignment (squared Euclidean cost; Pooladian et al. 2023).

    Every data point keeps its place (``i1 = arange``) and gets the noise point of the
    optimal permutation, so the batch is used without replacement. The assignment is solved
    on the host inside the step (:func:`exact_assignment`; ``solver`` as there, ``"auto"``
    choosing by the event size); :func:`ot_paired_batches` moves it off the step's critical
    path.
    """
    solver_order(solver)

    def coupling(key: Key, x0: Batch, x1: Batch, labels: Array | None = None):
        if x0.shape[0] != x1.shape[0]:
            raise ValueError(f"batch sizes differ: {x0.shape[0]} noise vs {x1.shape[0]} data")
        cost = _cost(key, x0, x1, labels, "penalty")
        event_size = math.prod(x1.shape[1:])
        perm = exact_assignment(cost.T, solver, event_size)  # data j <- noise perm[j]
        return perm, jnp.arange(x1.shape[0])

    return coupling


def sinkhorn_coupling(
    epsilon: float = 0.05, num_iters: int = 200, *, relative: bool = True
) -> Coupling:
    """Minibatch entropic OT (Tong et al. 2024, OT-CFM with Sinkhorn), computed on device.

    The plan of :func:`sinkhorn_log_plan` is sampled ``batch`` times with replacement, as in
    torchcfm's ``OTPlanSampler``. ``epsilon`` is relative to the mean cost by default;
    ``relative=False`` takes it in squared data units, as Schroedinger-bridge CFM needs
    (``epsilon = 2 sigma^2`` for the Brownian bridge of diffusion ``sigma``,
    :func:`flowzoo.paths.brownian_bridge_path`). ``epsilon -> 0`` approaches the exact
    assignment; large ``epsilon`` the independent coupling.
    """

    def coupling(key: Key, x0: Batch, x1: Batch, labels: Array | None = None):
        k_lab, k_pairs = jax.random.split(key)
        cost = _cost(k_lab, x0, x1, labels, "inf")
        log_plan = sinkhorn_log_plan(cost, epsilon, num_iters, relative=relative)
        m = x1.shape[0]
        # inverse-CDF draws: O(n m) for the cumulative sum instead of the n * m Gumbel
        # variates per draw of jax.random.categorical (16.8M per step at batch 256)
        cdf = jnp.cumsum(jnp.exp(log_plan - jnp.max(log_plan)).reshape(-1))
        u = jax.random.uniform(k_pairs, (m,), cdf.dtype) * cdf[-1]
        flat = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)
        return flat // m, flat % m

    return coupling


COUPLINGS: dict[str, Callable[..., Coupling]] = {
    "independent": independent_coupling,
    "exact_ot": exact_ot_coupling,
    "sinkhorn": sinkhorn_coupling,
}
"""Coupling factories by name (used by configs: ``model.coupling``)."""


def get_coupling(name: str, **kwargs) -> Coupling:
    """The coupling ``COUPLINGS[name](**kwargs)``; raises ``ValueError`` naming the choices."""
    if name not in COUPLINGS:
        raise ValueError(f"unknown coupling {name!r}; choose one of {sorted(COUPLINGS)}")
    return COUPLINGS[name](**kwargs)
