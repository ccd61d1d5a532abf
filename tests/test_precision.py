"""Device-independent numerics: the computations whose answers are references (metrics, the
exact marginal field, benchmark ground truths, the 1x1-convolution mixing) ask for full float32
matmuls, so that GPUs and TPUs, whose default precision rounds float32 operands (TF32 on NVIDIA
Ampere and later, bfloat16 passes on TPU), give the CPU's answer.

XLA:CPU ignores the precision setting, so a CPU test cannot see the rounding itself. Instead
these tests read the traced program: every ``dot_general`` in it must carry
``Precision.HIGHEST`` on both operands. On an H200 (2026-12-01) the default precision put the
marginal field of a cosine path off by 10% at t = 0.9 (``test_oracle.py``), which this guards.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from flowzoo import bench, bijectors, flow_matching, metrics, paths

HIGHEST = jax.lax.Precision.HIGHEST


def _programs(value) -> list:
    """The jaxprs held by an equation parameter (a jaxpr, a closed jaxpr, or a tuple of them)."""
    if isinstance(value, tuple | list):
        return [j for v in value for j in _programs(v)]
    inner = getattr(value, "jaxpr", value)
    return [inner] if hasattr(inner, "eqns") else []


def _traced(fn, *args) -> list:
    """The matmul precisions ``fn(*args)`` traces to, under the default precision setting
    (the suite raises it to "highest" on GPUs: what is checked is the library's own ask)."""
    with jax.default_matmul_precision("default"):
        return _dot_precisions(jax.make_jaxpr(fn)(*args).jaxpr)


def _dot_precisions(jaxpr) -> list:
    """The ``precision`` of every ``dot_general`` in ``jaxpr``, nested programs included
    (``jit``, ``scan``, ``cond``, ``custom_jvp`` bodies)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn.params["precision"])
        for value in eqn.params.values():
            for inner in _programs(value):
                found += _dot_precisions(inner)
    return found


def _x(n=12, d=3, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, d))


MIX = bench.GaussianMixture(jnp.full(3, 1 / 3), _x(3, 2, 5), jnp.full((3, 2), 0.2))
VP = paths.cosine_path()
CASES = {
    "mmd": lambda: metrics.mmd(_x(), _x(seed=1)),
    "energy_distance": lambda: metrics.energy_distance(_x(), _x(seed=1)),
    "sliced_wasserstein": lambda: metrics.sliced_wasserstein(jax.random.key(2), _x(), _x(seed=1)),
    "kernel_stein_discrepancy": lambda: metrics.kernel_stein_discrepancy(_x(), -_x()),
    "marginal_velocity": lambda: flow_matching.marginal_velocity(VP, _x(30))(0.9, _x(7)),
    "posterior_mean": lambda: flow_matching.posterior_mean(VP, _x(30), 0.5, _x(7)),
    "mixture_diffused_score": lambda: bench.diffused_score(MIX, 0.8, 0.3, _x(5, 2)),
    "mixture_path_velocity": lambda: bench.path_velocity(MIX, VP)(0.4, _x(5, 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_computations_use_full_precision_matmuls(name):
    found = _traced(CASES[name])
    assert found, f"{name}: no matmul traced (the test would check nothing)"
    bad = [p for p in found if p is None or tuple(p) != (HIGHEST, HIGHEST)]
    assert not bad, f"{name}: {len(bad)} of {len(found)} matmuls at default precision: {bad}"


@pytest.mark.parametrize("lu", [True, False], ids=["lu", "plain"])
def test_invertible_1x1_conv_mixes_at_full_precision(key, lu):
    """Glow's channel mixing: a round trip is exact to float32 on every device."""
    bij = bijectors.conv1x1(lu=lu)
    x = jax.random.normal(key, (2, 3, 3, 4))
    params = bij.init(key, x)
    for fn in (bij.forward, bij.inverse):
        found = _traced(fn, params, x)
        assert found, "no matmul traced"
        assert all(p is not None and tuple(p) == (HIGHEST, HIGHEST) for p in found), found


def test_the_check_sees_default_precision():
    """The reader itself: a plain matmul is reported as not full precision."""
    found = _traced(lambda a: jax.jit(lambda b: b @ b.T)(a), _x())
    assert found and all(p is None or tuple(p) != (HIGHEST, HIGHEST) for p in found)
