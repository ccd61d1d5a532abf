"""``solve_ode`` on dy/dt = a*y (closed form): orders, direction, pytrees, exact NFE, adjoints.

NFE is checked against an independent runtime count (a ``jax.debug.callback`` in the
vector field). Convergence orders: the error ratio when halving the step is ``2**order``
(tested as ``|log2(ratio) - order| < 0.3``) on float32, with step sizes chosen so that
round-off stays far below the truncation error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowzoo.integrate import solve_ode, solver_stages

A = -1.5
T = 2.0
Y0 = jnp.array([1.0, -0.5])


class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1


def counted_field(counter, a=A):
    def vf(t, y):
        jax.debug.callback(counter)
        return a * y

    return vf


def run_counted(solver, t0, t1, **kw):
    counter = Counter()
    sol = solve_ode(counted_field(counter), Y0, t0, t1, solver=solver, **kw)
    jax.block_until_ready(sol)
    jax.effects_barrier()
    return sol, counter.n


@pytest.mark.parametrize(
    "solver, order, n1",
    [("euler", 1, 32), ("midpoint", 2, 16), ("heun", 2, 16), ("rk4", 4, 8)],
)
def test_fixed_step_order_and_exact_nfe(solver, order, n1):
    exact = Y0 * np.exp(A * T)
    errors = []
    for n in (n1, 2 * n1):
        sol, count = run_counted(solver, 0.0, T, num_steps=n)
        stages, _ = solver_stages(solver)
        assert int(sol.num_steps) == n
        assert int(sol.nfe) == count == stages * n
        errors.append(float(jnp.max(jnp.abs(sol.y1 - exact))))
    assert abs(np.log2(errors[0] / errors[1]) - order) < 0.3, errors


@pytest.mark.parametrize("solver, backward", [("tsit5", False), ("dopri5", True)])
def test_adaptive_accuracy_direction_and_exact_nfe(solver, backward):
    t0, t1 = (T, 0.0) if backward else (0.0, T)
    sol, count = run_counted(solver, t0, t1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sol.y1, Y0 * np.exp(A * (t1 - t0)), rtol=2e-5, atol=1e-6)
    assert int(sol.nfe) == count == 3 + 6 * int(sol.num_steps)  # 2 (first dt) + 1 (FSAL) + 6/step


def test_fixed_step_backward_and_fixed_step_fsal():
    sol = solve_ode(lambda t, y: A * y, Y0, T, 0.0, solver="rk4", num_steps=20)
    np.testing.assert_allclose(sol.y1, Y0 * np.exp(-A * T), rtol=1e-4)
    sol, count = run_counted("tsit5", 0.0, T, num_steps=7)
    assert int(sol.num_steps) == 7 and int(sol.nfe) == count == 1 + 6 * 7


def test_time_dependent_pytree_state_and_save_ts():
    # y = {"x": (3,), "s": ()}: x' = t * x  ->  x(t) = x0 exp(t^2/2);  s' = sum(x)
    def vf(t, y):
        return {"x": t * y["x"], "s": jnp.sum(y["x"])}

    y0 = {"x": jnp.array([1.0, 2.0, -1.0]), "s": jnp.zeros(())}
    ts = jnp.array([0.5, 1.0])
    sol = solve_ode(vf, y0, 0.0, 1.5, save_ts=ts, rtol=1e-7, atol=1e-7)
    x_at = lambda t: np.asarray(y0["x"]) * np.exp(t**2 / 2)
    np.testing.assert_allclose(sol.y1["x"], x_at(1.5), rtol=1e-5)
    np.testing.assert_allclose(sol.ys["x"], np.stack([x_at(0.5), x_at(1.0)]), rtol=1e-4)
    # s(1.5) = sum(x0) * int_0^1.5 exp(t^2/2) dt
    grid = np.linspace(0.0, 1.5, 20001)
    integral = np.trapezoid(np.exp(grid**2 / 2), grid)
    np.testing.assert_allclose(sol.y1["s"], 2.0 * integral, rtol=1e-4)
    assert sol.ys["s"].shape == (2,)


def test_jit_vmap_over_initial_states():
    f = jax.jit(jax.vmap(lambda y0, a: solve_ode(lambda t, y: a * y, y0, 0.0, 1.0)))
    a = jnp.array([-1.0, 0.5, -3.0])
    sol = f(jnp.ones((3, 2)), a)
    np.testing.assert_allclose(sol.y1, np.exp(np.asarray(a))[:, None] * np.ones((3, 2)), rtol=1e-4)
    assert sol.nfe.shape == (3,) and sol.num_steps.shape == (3,)
    np.testing.assert_array_equal(sol.nfe, 3 + 6 * sol.num_steps)


@pytest.mark.slow
@pytest.mark.parametrize(
    "adjoint, num_steps", [("recursive", 16), ("backsolve", None), ("forward", 16)]
)
def test_gradient_through_adjoints(adjoint, num_steps):
    # L(a) = sum y(1) = sum(y0) e^a ; the field closes over `a` (closure-converted)
    solver = "rk4" if num_steps else "tsit5"

    def loss(a):
        sol = solve_ode(
            lambda t, y: a * y,
            Y0,
            0.0,
            1.0,
            solver=solver,
            num_steps=num_steps,
            adjoint=adjoint,
            rtol=1e-7,
            atol=1e-7,
        )
        return jnp.sum(sol.y1)

    a = jnp.array(-0.7)
    grad = jax.jacfwd(loss)(a) if adjoint == "forward" else jax.grad(loss)(a)
    np.testing.assert_allclose(grad, float(jnp.sum(Y0)) * np.exp(-0.7), rtol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="fixed-step"):
        solve_ode(lambda t, y: y, Y0, 0.0, 1.0, solver="rk4")
    with pytest.raises(ValueError, match="unknown solver"):
        solve_ode(lambda t, y: y, Y0, 0.0, 1.0, solver="rk45")
    with pytest.raises(ValueError, match="unknown adjoint"):
        solve_ode(lambda t, y: y, Y0, 0.0, 1.0, adjoint="magic")


def test_adaptive_first_step_stays_inside_the_interval():
    """A field that is NaN outside [t1, t0] (like a VP SDE's probability flow below t=0)
    must still solve: the trial step of the initial step-size heuristic stays inside."""

    def field(t, y):
        return -0.002 * y + jnp.sqrt(t - 0.5) * 0.0  # NaN for t < 0.5

    y0 = jnp.ones((10, 2))
    sol = solve_ode(field, y0, 1.0, 0.5, rtol=1e-2, atol=1e-2, max_steps=50)
    assert bool(jnp.all(jnp.isfinite(sol.y1))) and int(sol.num_steps) < 10


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["euler", "midpoint", "heun", "rk4"])
def test_scanned_fixed_step_solve_equals_diffrax_step_for_step(solver):
    # a fixed-step solve without save_ts runs as a lax.scan; diffrax's loop (taken for
    # save_ts and for the backsolve adjoint) integrates the same tableau on the same grid,
    # so the two agree to float32 round-off on a nonlinear, time-dependent pytree field
    def vf(t, y):
        return {"x": jnp.sin(3.0 * t) * y["x"] - y["x"] ** 3, "s": jnp.sum(y["x"] ** 2)}

    y0 = {"x": jnp.array([0.9, -0.4, 1.3]), "s": jnp.zeros(())}
    counter = Counter()

    def counted(t, y):
        jax.debug.callback(counter)
        return vf(t, y)

    scanned = solve_ode(counted, y0, 0.2, 1.7, solver=solver, num_steps=13)
    jax.effects_barrier()
    looped = solve_ode(vf, y0, 0.2, 1.7, solver=solver, num_steps=13, adjoint="backsolve")
    stages, _ = solver_stages(solver)
    assert int(scanned.nfe) == counter.n == stages * 13 and int(scanned.num_steps) == 13
    for k in ("x", "s"):
        np.testing.assert_allclose(scanned.y1[k], looped.y1[k], rtol=2e-6, atol=2e-6)
    # backwards in time as well
    back = solve_ode(vf, y0, 1.7, 0.2, solver=solver, num_steps=13)
    back_loop = solve_ode(vf, y0, 1.7, 0.2, solver=solver, num_steps=13, adjoint="backsolve")
    np.testing.assert_allclose(back.y1["x"], back_loop.y1["x"], rtol=2e-6, atol=2e-6)


def test_scanned_solve_gradient_equals_finite_differences_of_the_discrete_solve():
    # discretise-then-optimise: the reverse-mode gradient of the scanned solve is the exact
    # gradient of the discrete map, so it matches central differences of that map in float64
    # arithmetic done by hand (Euler, 5 steps, y' = a * y * t -> y_{k+1} = y_k (1 + h a t_k))
    def loss(a):
        sol = solve_ode(lambda t, y: a * y * t, Y0, 0.0, 1.0, solver="euler", num_steps=5)
        return jnp.sum(sol.y1)

    def discrete(a):
        ts = np.arange(5) / 5
        return float(np.sum(np.asarray(Y0, np.float64))) * np.prod(1 + 0.2 * a * ts)

    a, eps = -0.7, 1e-5
    fd = (discrete(a + eps) - discrete(a - eps)) / (2 * eps)
    np.testing.assert_allclose(loss(jnp.asarray(a)), discrete(a), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(a)), fd, rtol=1e-5)
