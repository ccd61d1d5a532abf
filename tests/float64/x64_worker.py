"""Run in its own process with ``JAX_ENABLE_X64=1`` (see ``test_float64.py``).

For every bijector of the battery registry, in float64: ``inverse`` then ``forward``
reproduces the input to 1e-10 (the residual block's fixed-point inverse stops at its own
tolerance and is checked at 1e-5), ``forward logdet == -inverse logdet`` to 1e-10, and the
log-det equals ``slogdet`` of the autodiff Jacobian (``0.5 * slogdet(J^T J)`` for layers that
reshape) to 1e-10. Then the CNF likelihood of a linear field against its closed form to
1e-8 with tight solver tolerances. Prints one line per failure and ``OK n`` at the end.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bijectors"))
from registry import REGISTRY  # noqa: E402

from flowzoo.distributions import standard_normal_log_prob  # noqa: E402
from flowzoo.integrate import ode_log_prob  # noqa: E402

TOL = 1e-10
LOOSE = {"residual_block": 1e-5}  # its fixed-point inverse stops at 1e-6 by design, and the
# inverse log-det is the forward one at that approximate point


def _perturb(params, key):
    leaves, tree = jax.tree.flatten(params)
    out = []
    for i, a in enumerate(leaves):
        if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating):
            a = jnp.asarray(a, jnp.float64)
            a = a + 0.1 * jax.random.normal(jax.random.fold_in(key, i), a.shape, jnp.float64)
        out.append(a)
    return jax.tree.unflatten(tree, out)


def _logdet_ref(f, x, ctx):
    """Per-example log|det| of ``f`` from ``jacfwd`` (0.5 slogdet(J^T J) when reshaping)."""

    def one(xi, ci):
        flat = lambda v: f(v.reshape(xi.shape)[None], None if ci is None else ci[None])[0]
        jac = jax.jacfwd(lambda v: flat(v).reshape(-1))(xi.reshape(-1))
        if jac.shape[0] == jac.shape[1]:
            return jnp.linalg.slogdet(jac)[1]
        return 0.5 * jnp.linalg.slogdet(jac.T @ jac)[1]

    return jax.vmap(one)(x, ctx) if ctx is not None else jax.vmap(lambda xi: one(xi, None))(x)


def _checks(bij, params, x, ctx):
    """Inverse, forward and the reference log-det in one compiled call (eager float64 op
    dispatch is slow)."""

    @jax.jit
    def run(params, x, ctx):
        z, ld_inv = bij.inverse(params, x, ctx)
        x_back, ld_fwd = bij.forward(params, z, ctx)
        ref = _logdet_ref(lambda v, c: bij.inverse(params, v, c)[0], x, ctx)
        return z, ld_inv, x_back, ld_fwd, ref

    return run(params, x, ctx)


COMPOSITES = {"glow_bijector", "realnvp_image_bijector", "conditional_realnvp_bijector"}
"""Builders made only of layers checked here one by one (their float32 battery checks stay);
left out because their float64 compiles cost most of this module's time."""


def _names(part: int, parts: int) -> list[str]:
    return [n for n in sorted(REGISTRY) if n not in COMPOSITES][part::parts]


def check_bijectors(part: int = 0, parts: int = 1) -> list[str]:
    failures = []
    key = jax.random.key(0)
    for name in _names(part, parts):
        build = REGISTRY[name]
        entry = build()  # (bijector, latent shape, context shape[, data shape])
        bij, _, ctx_shape = entry[:3]
        shape = entry[3] if len(entry) > 3 else entry[1]
        # crc32, not hash(): str hashes are salted per process (PYTHONHASHSEED), which made
        # the draws, and the residual block's fixed-point error, change from run to run
        kx, kc, kp = jax.random.split(jax.random.fold_in(key, zlib.crc32(name.encode()) % 1000), 3)
        x = jax.random.normal(kx, (3, *shape), jnp.float64)
        ctx = None if ctx_shape is None else jax.random.normal(kc, (3, *ctx_shape), jnp.float64)
        params = _perturb(jax.jit(bij.init)(kp, x, ctx), kp)  # compiled: eager init is slow
        z, ld_inv, x_back, ld_fwd, ref = _checks(bij, params, x, ctx)
        if z.dtype != jnp.float64 or ld_inv.dtype != jnp.float64:
            failures.append(f"{name}: computed in {z.dtype}/{ld_inv.dtype}, not float64")
            continue
        err = float(jnp.max(jnp.abs(x_back - x)))
        if err > LOOSE.get(name, TOL):
            failures.append(f"{name}: round trip error {err:.2e}")
        if float(jnp.max(jnp.abs(ld_fwd + ld_inv))) > TOL:
            failures.append(f"{name}: forward logdet != -inverse logdet")
        err = float(jnp.max(jnp.abs(ref - ld_inv)))
        if err > LOOSE.get(name, TOL) * max(1.0, float(jnp.max(jnp.abs(ref)))):
            failures.append(f"{name}: log-det differs from slogdet(jacfwd) by {err:.2e}")
    return failures


def check_ode_likelihood() -> list[str]:
    a = jnp.array([[-0.5, 0.8, 0.0], [0.1, 0.3, -0.2], [0.0, 0.4, -0.6]], jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
    out = ode_log_prob(
        lambda t, y: y @ a.T,
        x,
        t_data=1.0,
        t_base=0.0,
        base_log_prob=standard_normal_log_prob,
        rtol=1e-12,
        atol=1e-12,
    )
    want = standard_normal_log_prob(x @ expm(-a).T) - jnp.trace(a)
    err = float(jnp.max(jnp.abs(out.log_prob - want)))
    return [] if err < 1e-8 else [f"ode_log_prob: {err:.2e} from the closed form"]


if __name__ == "__main__":
    assert jax.config.jax_enable_x64, "run with JAX_ENABLE_X64=1"
    part, parts = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (0, 1)
    failures = check_bijectors(part, parts) + (check_ode_likelihood() if part == 0 else [])
    checked = len(_names(part, parts)) + (part == 0)
    for line in failures:
        print("FAIL", line)
    print(f"OK {checked - len(failures)} of {checked}")
    sys.exit(1 if failures else 0)
