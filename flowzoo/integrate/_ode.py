"""``solve_ode``: the one diffrax wrapper for ODEs, with exact function-evaluation counts.

Time convention: the caller's. ``solve_ode`` integrates from ``t0`` to ``t1`` in whatever
direction and units the caller uses (``t1 < t0`` integrates backwards). Flow matching and
CNFs run noise (t=0) to data (t=1); the probability-flow ODE of an SDE runs data (t=0) to
noise (t=T); each caller states its own convention.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._types import Array, ArrayLike, PyTree

# --------------------------------------------------------------------------- solvers

_rk4_tableau = diffrax.ButcherTableau(
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    # embedded error = RK4 - Euler; only used if someone pairs RK4 with an adaptive controller
    b_error=np.array([1 / 6 - 1.0, 1 / 3, 1 / 3, 1 / 6]),
    c=np.array([0.5, 0.5, 1.0]),
)


class RK4(diffrax.AbstractERK):
    """Classical 4th-order Runge--Kutta (4 stages, not FSAL), for fixed steps."""

    tableau: ClassVar[diffrax.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., Any]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        del terms
        return 4


class _EagerFSAL:
    """Mixin: evaluate the first FSAL stage once in ``init`` instead of inside step 1.

    diffrax evaluates ``f(t0, y0)`` inside every attempt of the first step (a rejected first
    step re-evaluates it), which makes the NFE depend on an uncounted quantity. Evaluating it
    in ``init`` gives exactly ``1 + (stages - 1) * num_steps`` stage evaluations and keeps the
    gradient (``init`` runs inside ``diffeqsolve``; only ``BacksolveAdjoint`` stops gradients
    there, and it computes gradients by its own adjoint solve).
    """

    def init(self, terms, t0, t1, y0, args):
        state = super().init(terms, t0, t1, y0, args)
        if state is None:
            return None
        return jnp.array(False), self.func(terms, t0, y0, args)


class _Tsit5(_EagerFSAL, diffrax.Tsit5):
    pass


class _Dopri5(_EagerFSAL, diffrax.Dopri5):
    pass


# name -> (solver class, stages per step, FSAL, adaptive by default, order)
_SOLVERS: dict[str, tuple[type, int, bool, bool, int]] = {
    "euler": (diffrax.Euler, 1, False, False, 1),
    "midpoint": (diffrax.Midpoint, 2, False, False, 2),
    "heun": (diffrax.Heun, 2, False, False, 2),
    "rk4": (RK4, 4, False, False, 4),
    "tsit5": (_Tsit5, 7, True, True, 5),
    "dopri5": (_Dopri5, 7, True, True, 5),
}
SOLVERS = tuple(_SOLVERS)
"""Solver names accepted by :func:`solve_ode`."""

_ADJOINTS: dict[str, Callable[[], diffrax.AbstractAdjoint]] = {
    "recursive": diffrax.RecursiveCheckpointAdjoint,
    "backsolve": diffrax.BacksolveAdjoint,
    "direct": diffrax.DirectAdjoint,
    "forward": diffrax.ForwardMode,
}
ADJOINTS = tuple(_ADJOINTS)
"""Adjoint names accepted by :func:`solve_ode`."""


# explicit fixed-step solvers run as a lax.scan: name -> (a rows, b, c) of the Butcher tableau
# (the same coefficients as diffrax's Euler, Midpoint, Heun and the RK4 above)
_SCAN_TABLEAUX: dict[
    str, tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[float, ...]]
] = {
    "euler": ((), (1.0,), (0.0,)),
    "midpoint": (((0.5,),), (0.0, 1.0), (0.0, 0.5)),
    "heun": (((1.0,),), (0.5, 0.5), (0.0, 1.0)),
    "rk4": (
        ((0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1 / 6, 1 / 3, 1 / 3, 1 / 6),
        (0.0, 0.5, 0.5, 1.0),
    ),
}
_SCAN_ADJOINTS = ("recursive", "direct", "forward")


def _scan_solve(vector_field, y0: PyTree, t0: Array, t1: Array, n: int, solver: str) -> PyTree:
    """Fixed-step explicit Runge--Kutta as one ``lax.scan`` over the grid ``t0 + (t1-t0) k/n``.

    No per-step work beyond the stage evaluations and the stage sums. Reverse mode: each
    step is rematerialised (``jax.checkpoint``), so the backward pass stores the ``n``
    states and recomputes one step at a time; within a step the stages run as an inner
    ``lax.scan`` over a ``(stages, *y)`` buffer, each stage rematerialised too, so at most
    one stage's intermediates are alive (an unrolled RK4 step would keep all four: 3x the
    memory of diffrax's loop on a CNF). Memory: ``n * size(y)`` plus ``stages * size(y)`` per
    stage plus one field evaluation's intermediates.
    """
    a, b, c = _SCAN_TABLEAUX[solver]
    stages = len(c)
    grid = t0 + (t1 - t0) * (jnp.arange(n + 1, dtype=t0.dtype) / n)
    a_full = np.zeros((stages, stages))
    for i, row in enumerate(a, start=1):
        a_full[i, : len(row)] = row
    stage_inputs = (
        jnp.arange(stages),
        jnp.asarray(a_full, t0.dtype),
        jnp.asarray(c, t0.dtype),
    )

    def weighted(y, h, weights, ks):  # y + h * sum_j weights[j] * ks[j], leaf by leaf
        return jax.tree.map(
            lambda y_, k_: y_ + h.astype(y_.dtype) * jnp.tensordot(weights.astype(y_.dtype), k_, 1),
            y,
            ks,
        )

    def step(y, span):
        t, h = span[0], span[1] - span[0]
        if stages == 1:  # Euler: nothing to buffer
            return jax.tree.map(
                lambda y_, k_: y_ + h.astype(y_.dtype) * k_, y, vector_field(t, y)
            ), None

        def stage(ks, inputs):
            i, a_row, ci = inputs
            k = vector_field(t + ci * h, weighted(y, h, a_row, ks))
            return jax.tree.map(lambda buf, k_: buf.at[i].set(k_), ks, k), None

        ks = jax.tree.map(lambda y_: jnp.zeros((stages, *jnp.shape(y_)), y_.dtype), y)
        ks, _ = jax.lax.scan(jax.checkpoint(stage, prevent_cse=False), ks, stage_inputs)
        return weighted(y, h, jnp.asarray(b, t0.dtype), ks), None

    spans = jnp.stack([grid[:-1], grid[1:]], axis=1)
    y1, _ = jax.lax.scan(jax.checkpoint(step, prevent_cse=False), y0, spans)
    return y1


def solver_stages(solver: str) -> tuple[int, bool]:
    """``(stages per step, first-same-as-last)`` of a named solver."""
    _check_solver(solver)
    _, stages, fsal, _, _ = _SOLVERS[solver]
    return stages, fsal


def solver_adaptive(solver: str) -> bool:
    """Whether a named solver steps adaptively: with ``num_steps=None`` it solves to
    ``rtol``/``atol`` and its NFE is known only after the solve (``tsit5``, ``dopri5``);
    the other solvers are fixed-step and need ``num_steps``."""
    _check_solver(solver)
    return _SOLVERS[solver][3]


def _check_solver(solver: str) -> None:
    if solver not in _SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {list(_SOLVERS)}")


class SolverConfig(NamedTuple):
    """The keyword arguments of :func:`solve_ode` as one value (``solve_ode(..., **cfg._asdict())``).

    ``solver`` (a name in :data:`SOLVERS`), ``num_steps`` (fixed steps; ``None`` for an
    adaptive solve), ``rtol``/``atol`` (adaptive tolerances), ``max_steps`` (adaptive cap),
    ``adjoint`` (a name in :data:`ADJOINTS`). Models that solve ODEs for different purposes
    (sampling, likelihood) take one of these per purpose.
    """

    solver: str = "tsit5"
    num_steps: int | None = None
    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = 4096
    adjoint: str = "recursive"

    def check(self) -> SolverConfig:
        """Validate eagerly (raises ``ValueError`` naming the field); returns ``self``."""
        _check_solver(self.solver)
        if self.adjoint not in _ADJOINTS:
            raise ValueError(f"unknown adjoint {self.adjoint!r}; choose one of {list(_ADJOINTS)}")
        if self.num_steps is None and not _SOLVERS[self.solver][3]:
            raise ValueError(f"solver {self.solver!r} is fixed-step: set num_steps")
        n = self.num_steps
        if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
            raise ValueError(f"num_steps must be a positive int or None, got {n!r}")
        if not (self.rtol > 0 and self.atol > 0 and self.max_steps >= 1):
            raise ValueError("rtol and atol must be > 0 and max_steps >= 1")
        return self

    def nfe_per_step(self) -> int:
        """Vector-field evaluations per fixed step (FSAL solvers: stages - 1)."""
        _, stages, fsal, _, _ = _SOLVERS[self.solver]
        return stages - 1 if fsal else stages


# --------------------------------------------------------------------------- solve


class ODESolution(NamedTuple):
    """Result of :func:`solve_ode`.

    * ``y1``: the state at ``t1`` (same pytree structure as ``y0``).
    * ``ys``: the states at ``save_ts`` (each leaf gains a leading ``len(save_ts)`` axis), or
      ``None`` when ``save_ts`` was not given.
    * ``nfe``: int32 scalar, the exact number of vector-field evaluations of the solve
      (one evaluation = one call of ``vector_field`` on the whole state).
    * ``num_steps``: int32 scalar, solver steps taken (accepted + rejected).
    """

    y1: PyTree[Array]
    ys: PyTree[Array] | None
    nfe: Array
    num_steps: Array


def _time_dtype(y0) -> Any:
    floats = [
        jnp.result_type(x)
        for x in jax.tree.leaves(y0)
        if jnp.issubdtype(jnp.result_type(x), jnp.floating)
    ]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _rms(tree) -> Array:
    leaves = [jnp.ravel(x) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(jnp.mean(jnp.concatenate(leaves) ** 2))


def _initial_step(vf, t0, t1, y0, order, rtol, atol) -> Array:
    """Hairer, Norsett & Wanner (1993, II.4) starting step; 2 vector-field evaluations.

    Done here rather than by diffrax so the evaluation count does not depend on diffrax's
    internals (0.7 skips its own heuristic for direction-wrapped terms and uses dt0=0.01).
    The result is signed (negative for backward solves), capped at ``|t1 - t0|``, and carries
    no gradient, like diffrax's own choice.
    """
    y0, t0, t1 = jax.lax.stop_gradient((y0, t0, t1))
    direction = jnp.where(t1 >= t0, 1.0, -1.0).astype(t0.dtype)
    scale = jax.tree.map(lambda y: atol + rtol * jnp.abs(y), y0)
    div = lambda a: jax.tree.map(lambda u, s: u / s, a, scale)
    f0 = jax.lax.stop_gradient(vf(t0, y0))
    d0, d1 = _rms(div(y0)), _rms(div(f0))
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = jnp.where(small, 1e-6, 0.01 * d0 / jnp.where(small, 1.0, d1)).astype(t0.dtype)
    # the trial step stays inside [t0, t1]: fields such as an SDE's probability flow are
    # undefined beyond it (a VP marginal at t < 0 is NaN, which made every step fail)
    h0 = jnp.minimum(h0, jnp.abs(t1 - t0))
    y1 = jax.tree.map(lambda y, f: y + direction * h0 * f, y0, f0)
    f1 = jax.lax.stop_gradient(vf(t0 + direction * h0, y1))
    d2 = _rms(div(jax.tree.map(jnp.subtract, f1, f0))) / h0
    max_d = jnp.maximum(d1, d2)
    h1 = jnp.where(
        max_d <= 1e-15,
        jnp.maximum(1e-6, h0 * 1e-3),
        (0.01 / jnp.maximum(max_d, 1e-15)) ** (1.0 / (order + 1)),
    )
    h = jnp.minimum(jnp.minimum(100 * h0, h1), jnp.abs(t1 - t0))
    return (direction * h).astype(t0.dtype)


def solve_ode(
    vector_field: Callable[[Array, PyTree[Array]], PyTree[Array]],
    y0: PyTree[ArrayLike],
    t0: ArrayLike,
    t1: ArrayLike,
    *,
    solver: str = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    adjoint: str = "recursive",
    save_ts: ArrayLike | None = None,
    throw: bool = True,
) -> ODESolution:
    """Solve ``dy/dt = vector_field(t, y)`` from ``t0`` to ``t1`` with diffrax.

    Time convention: the caller's (this function only integrates). ``t1 < t0`` integrates
    backwards in time. ``t`` is passed to ``vector_field`` as a scalar with the floating
    dtype of ``y0``.

    Args:
      vector_field: ``(t, y) -> dy/dt``; ``y`` is any pytree of arrays (e.g. ``(x, logp)``
        augmented states) and the output has the same structure, shapes and dtypes. It may
        close over traced parameters (they are closure-converted, so every adjoint
        differentiates with respect to them).
      y0: initial state at ``t0``.
      t0, t1: start and end times (scalars; may be traced).
      solver: ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"`` (fixed step: need
        ``num_steps``), ``"tsit5"`` or ``"dopri5"`` (adaptive with a PID controller on
        ``rtol``/``atol`` and at most ``max_steps`` steps; with ``num_steps`` given they run
        at fixed steps instead).
      num_steps: number of equal steps for a fixed-step solve (static int).
      rtol, atol: tolerances of the adaptive step-size controller.
      max_steps: cap on adaptive steps; exceeding it raises (``throw=True``).
      adjoint: ``"recursive"`` (discretise-then-optimise with recursive checkpointing),
        ``"backsolve"`` (continuous adjoint, O(1) memory), ``"direct"`` (reverse and
        forward mode) or ``"forward"`` (forward-mode autodiff only). A fixed-step solve with
        ``euler``, ``midpoint``, ``heun`` or ``rk4`` and no ``save_ts`` runs as one
        ``lax.scan`` over the precomputed grid for every adjoint but ``"backsolve"``: no
        per-step overhead beyond the field evaluations, forward and reverse mode both exact
        for the discretised solve; reverse mode stores the ``num_steps`` states and
        rematerialises one step, and within it one stage, at a time (memory
        ``num_steps * size(y0)`` plus one field evaluation's intermediates, where diffrax's
        recursive checkpointing keeps fewer states).
      save_ts: optional times (1-D, ordered from ``t0`` towards ``t1``) at which to also
        return the state (dense interpolation between steps).
      throw: raise at run time if the solve fails (e.g. ``max_steps`` reached).

    Returns:
      :class:`ODESolution` with ``y1``, ``ys``, ``nfe`` and ``num_steps``. The NFE is exact:
      fixed step ``stages * num_steps``; adaptive FSAL solvers (Tsit5, Dopri5: 7 stages)
      ``2 + 1 + 6 * num_steps`` (2 evaluations choose the first step, 1 evaluates the first
      stage, each attempted step adds 6); fixed-step FSAL ``1 + 6 * num_steps``.

    Jittable and vmappable (under ``vmap`` every element reports its own counts).
    """
    _check_solver(solver)
    if adjoint not in _ADJOINTS:
        raise ValueError(f"unknown adjoint {adjoint!r}; choose one of {list(_ADJOINTS)}")
    cls, stages, fsal, adaptive, order = _SOLVERS[solver]
    fixed = num_steps is not None
    if not adaptive and not fixed:
        raise ValueError(f"solver {solver!r} is fixed-step: pass num_steps=N")
    if fixed and (int(num_steps) != num_steps or num_steps < 1):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")

    y0 = jax.tree.map(jnp.asarray, y0)
    tdtype = _time_dtype(y0)
    t0 = jnp.asarray(t0, tdtype)
    t1 = jnp.asarray(t1, tdtype)
    if fixed and save_ts is None and solver in _SCAN_TABLEAUX and adjoint in _SCAN_ADJOINTS:
        n = int(num_steps)
        y1 = _scan_solve(vector_field, y0, t0, t1, n, solver)
        return ODESolution(y1, None, jnp.asarray(stages * n, jnp.int32), jnp.asarray(n, jnp.int32))
    # closure-convert so params closed over by `vector_field` are pytree leaves of the term
    # (BacksolveAdjoint differentiates only with respect to those)
    vf = eqx.filter_closure_convert(vector_field, t0, y0)
    term = diffrax.ODETerm(lambda t, y, args: args(t, y))

    if fixed:
        n = int(num_steps)
        # diffrax places step k at t0 + (t1 - t0) * k / n (no accumulated rounding), and
        # unlike StepTo this works with BacksolveAdjoint's backward solve
        controller = diffrax.ConstantStepSize()
        steps_cap = n
        dt0 = (t1 - t0) / n
    else:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        steps_cap = int(max_steps)
        dt0 = _initial_step(vf, t0, t1, y0, order, rtol, atol)
    saveat = (
        diffrax.SaveAt(t1=True)
        if save_ts is None
        else diffrax.SaveAt(ts=jnp.asarray(save_ts, tdtype), t1=True)
    )
    sol = diffrax.diffeqsolve(
        term,
        cls(),
        t0,
        t1,
        dt0,
        y0,
        args=vf,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=_ADJOINTS[adjoint](),
        max_steps=steps_cap,
        throw=throw,
    )
    steps = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    # FSAL: 1 first stage (in init) + (stages - 1) per step + 2 in _initial_step if adaptive
    nfe = 1 + (stages - 1) * steps + (0 if fixed else 2) if fsal else stages * steps
    y1 = jax.tree.map(lambda a: a[-1], sol.ys)
    ys = None if save_ts is None else jax.tree.map(lambda a: a[:-1], sol.ys)
    return ODESolution(y1, ys, jnp.asarray(nfe, jnp.int32), steps)
