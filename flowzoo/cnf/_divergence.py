"""Divergence of a batched vector field: exact Jacobian trace or Hutchinson's estimator.

The field ``f`` maps ``(batch, *event) -> (batch, *event)`` and must treat batch rows
independently (no batch statistics), so that one Jacobian-vector product with a tangent
that is the same basis vector in every row gives every row's Jacobian column at once.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, Batch, Float, Key

PROBES = ("rademacher", "gaussian")


def divergence_exact(f: Callable[[Batch], Batch], x: Batch) -> tuple[Batch, Float[Array, " batch"]]:
    """``(f(x), tr(df/dx))`` per row, exactly, with one ``jvp`` per event dimension.

    ``x``: ``(batch, *event)``; cost ``D = prod(event)`` forward passes (vmapped), so meant
    for low-dimensional events. Returns ``f(x)`` (from the primal pass) and the trace
    ``(batch,)``.
    """
    n, event = x.shape[0], x.shape[1:]
    d = int(np.prod(event)) if event else 1
    basis = jnp.eye(d, dtype=x.dtype).reshape(d, 1, *event)

    def column(e):
        out, tangent = jax.jvp(f, (x,), (jnp.broadcast_to(e, x.shape),))
        return out, tangent.reshape(n, d)

    outs, cols = jax.vmap(column)(basis)  # cols: (d, batch, d); cols[i, :, i] = J_ii
    trace = jnp.einsum("ibi->b", cols)
    return outs[0], trace


def sample_probe(key: Key, shape: tuple[int, ...], dtype, probe: str = "rademacher") -> Array:
    """A Hutchinson probe of ``shape`` with ``E[v v^T] = I``: Rademacher (+-1) or Gaussian."""
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, dtype)
    if probe == "gaussian":
        return jax.random.normal(key, shape, dtype)
    raise ValueError(f"unknown probe {probe!r}; choose one of {list(PROBES)}")


def divergence_hutchinson(
    f: Callable[[Batch], Batch], x: Batch, probe: Batch
) -> tuple[Batch, Float[Array, " batch"]]:
    """``(f(x), v^T (df/dx) v)`` per row: Hutchinson's unbiased trace estimate.

    ``probe`` ``v`` has the shape of ``x`` and ``E[v v^T] = I`` (see :func:`sample_probe`);
    one ``jvp``. Per row the variance is ``sum_{i != j} (J_ij^2 + J_ij J_ji)`` for
    Rademacher probes and ``sum_{i, j} (J_ij^2 + J_ij J_ji)`` for Gaussian ones (Hutchinson
    1990), so Rademacher (no diagonal term) is the default.
    """
    out, jv = jax.jvp(f, (x,), (probe,))
    n = x.shape[0]
    return out, jnp.sum((probe * jv).reshape(n, -1), axis=-1)
