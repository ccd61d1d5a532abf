"""Euler–Maruyama SDE solves through diffrax (diagonal noise, batched pytree states).

``dy = drift(t, y) dt + diffusion(t, y) * dW`` where ``diffusion`` returns something that
broadcasts against ``y`` (a scalar, or per-coordinate values: diagonal noise). Time runs
forward, ``t0 < t1``; for a reverse-time SDE (score models: t=0 data, t=T noise) substitute
``s = T - t`` so the solve still runs forward (see :mod:`flowzoo.samplers`).

Speed (DESIGN.md §3): the default ``brownian="unsafe"`` draws the whole batch of chains
from one :class:`diffrax.UnsafeBrownianPath` with ``adjoint=ForwardMode()``, which runs at the
speed of a hand-written ``lax.scan``; ``brownian="virtual_tree"`` vmaps a per-chain
:class:`diffrax.VirtualBrownianTree` (reproducible path queries, much slower on CPU).
``ForwardMode`` supports forward-mode autodiff only (``jax.jvp``); use ``adjoint="direct"``
to differentiate in reverse mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp

from .._types import Array, Key, PyTree

Drift = Callable[[Array, PyTree], PyTree]
"""``drift(t, y) -> dy/dt`` with the structure of ``y`` (``y`` batched: ``(chains, *event)``)."""

Diffusion = Callable[[Array, PyTree], PyTree]
"""``diffusion(t, y) -> g``, leaves broadcastable to ``y``'s leaves (diagonal noise)."""


class SDESolution(NamedTuple):
    """Result of :func:`solve_sde`.

    Attributes:
      y1: state at ``t1`` (same structure as ``y0``).
      ys: states at ``save_ts`` (leading axis ``len(save_ts)``), or ``None``.
      num_steps: number of Euler–Maruyama steps taken.
    """

    y1: PyTree
    ys: PyTree | None
    num_steps: int


class _DiagonalNoiseTerm(diffrax.AbstractTerm):
    """``g(t, y) * dW`` with elementwise (diagonal) product; ``g`` broadcasts against ``y``."""

    diffusion: Callable
    control: diffrax.AbstractPath

    def vf(self, t, y, args):
        return self.diffusion(t, y)

    def contr(self, t0, t1, **kwargs):
        return self.control.evaluate(t0, t1, **kwargs)

    def prod(self, vf, control):
        return jax.tree.map(lambda g, dw: jnp.asarray(g, dw.dtype) * dw, vf, control)


def _shape_struct(y: PyTree) -> PyTree:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), y)


def _terms(drift: Drift, diffusion: Diffusion, path: diffrax.AbstractPath) -> diffrax.MultiTerm:
    return diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: drift(t, y)), _DiagonalNoiseTerm(diffusion, path)
    )


def em_step(
    drift: Drift, diffusion: Diffusion, key: Key, t: Array | float, y: PyTree, dt: Array | float
) -> PyTree:
    """One Euler–Maruyama step ``y + drift(t, y) dt + diffusion(t, y) * sqrt(dt) * N(0, I)``.

    Runs :class:`diffrax.Euler` ``.step`` on the same terms :func:`solve_sde` uses, with a
    fresh :class:`diffrax.UnsafeBrownianPath` from ``key`` (the building block of
    ``Sampler.step`` for ULA, MALA proposals and correctors). ``dt > 0``.
    """
    t = jnp.asarray(t, jnp.float32)
    path = diffrax.UnsafeBrownianPath(_shape_struct(y), key)
    y1, *_ = diffrax.Euler().step(_terms(drift, diffusion, path), t, t + dt, y, None, None, False)
    return y1


def _adjoint(name: str) -> diffrax.AbstractAdjoint:
    if name == "forward":
        return diffrax.ForwardMode()
    if name == "direct":
        return diffrax.DirectAdjoint()
    raise ValueError(f"adjoint must be 'forward' or 'direct', got {name!r}")


def solve_sde(
    drift: Drift,
    diffusion: Diffusion,
    key: Key,
    y0: PyTree,
    t0: float,
    t1: float,
    num_steps: int,
    *,
    save_ts: Array | None = None,
    brownian: str = "unsafe",
    adjoint: str = "forward",
) -> SDESolution:
    """Euler–Maruyama from ``t0`` to ``t1 > t0`` in ``num_steps`` equal steps (diffrax).

    Args:
      drift: ``drift(t, y)`` on the batched state ``y`` (leaves ``(chains, *event)``).
      diffusion: ``diffusion(t, y)``, broadcastable to ``y`` (diagonal noise).
      key: PRNG key for the Brownian motion.
      y0: initial state (a pytree of arrays with a common leading chain axis).
      t0, t1: integration interval (forward in time).
      num_steps: number of fixed steps, ``dt = (t1 - t0) / num_steps``.
      save_ts: optional times in ``[t0, t1]`` at which to save the state (interpolated
        linearly between steps).
      brownian: ``"unsafe"`` (one batched :class:`~diffrax.UnsafeBrownianPath`, fast) or
        ``"virtual_tree"`` (one :class:`~diffrax.VirtualBrownianTree` per chain, vmapped).
      adjoint: ``"forward"`` (:class:`~diffrax.ForwardMode`, fast, forward-mode AD only) or
        ``"direct"`` (:class:`~diffrax.DirectAdjoint`, reverse-mode AD).

    Returns:
      :class:`SDESolution` with ``y1`` at ``t1`` and ``ys`` at ``save_ts``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not t1 > t0:
        raise ValueError(f"solve_sde integrates forward in time; got t0={t0}, t1={t1}")
    dt = (t1 - t0) / num_steps
    saveat = diffrax.SaveAt(t1=True, ts=save_ts)  # ys: the save_ts states, then t1's

    def solve(path: diffrax.AbstractPath, y, drift_fn, diffusion_fn) -> Any:
        return diffrax.diffeqsolve(
            _terms(drift_fn, diffusion_fn, path),
            diffrax.Euler(),
            t0,
            t1,
            dt,
            y,
            saveat=saveat,
            adjoint=_adjoint(adjoint),
            max_steps=num_steps + 1,
        )

    if brownian == "unsafe":
        sol = solve(diffrax.UnsafeBrownianPath(_shape_struct(y0), key), y0, drift, diffusion)
        ys = sol.ys
    elif brownian == "virtual_tree":
        n = jax.tree.leaves(y0)[0].shape[0]
        add = lambda y: jax.tree.map(lambda a: a[None], y)
        drop = lambda y: jax.tree.map(lambda a: a[0], y)

        def one(k, y):
            shape = _shape_struct(y)
            path = diffrax.VirtualBrownianTree(t0, t1, tol=dt / 2, shape=shape, key=k)
            d = lambda t, yy: drop(drift(t, add(yy)))
            g = lambda t, yy: drop(
                jax.tree.map(
                    lambda gg, a: jnp.broadcast_to(gg, a.shape), diffusion(t, add(yy)), add(yy)
                )
            )
            return solve(path, y, d, g).ys

        ys = jax.vmap(one)(jax.random.split(key, n), y0)
        ys = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), ys)  # (chains, T, ...) -> (T, chains)
    else:
        raise ValueError(f"brownian must be 'unsafe' or 'virtual_tree', got {brownian!r}")
    y1 = jax.tree.map(lambda a: a[-1], ys)
    saved = jax.tree.map(lambda a: a[:-1], ys) if save_ts is not None else None
    return SDESolution(y1, saved, num_steps)
