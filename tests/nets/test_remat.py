"""Activation rematerialisation: ``nets.remat_policy`` names, the UNet's per-block remat and
the coupling conditioners' per-call remat.

References: the same network built with ``remat="none"`` (same params) gives the values and
gradients; tolerance 1e-6 (absolute and relative, float32; measured: equal, or 6e-8 on the
UNet). Memory: ``memory_analysis().temp_size_in_bytes`` of the compiled train step
(value_and_grad + an Adam update), with and without remat.

XLA:CPU removes ``jax.checkpoint``'s optimization barriers early (its ``cse_barrier_expander``
pass) and common-subexpression elimination then merges the recomputation back into the
forward pass, so a block outside a loop keeps its activations anyway; inside a
``lax.scan`` (a stacked coupling flow) remat pays as it is. The UNet case therefore runs in
one subprocess with ``--xla_disable_hlo_passes=cse_barrier_expander``, as
``benchmarks/remat.py`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowzoo import bijectors as bj
from flowzoo import flows, nets, zoo

TOL = {"rtol": 1e-6, "atol": 1e-6}
# keep the barriers; LLVM's optimisation level 0 halves the compile time and leaves the
# buffer assignment (and so temp_size_in_bytes) as it is
WORKER_FLAGS = "--xla_disable_hlo_passes=cse_barrier_expander --xla_backend_optimization_level=0"


def _step(loss):
    """The compiled train step ``params -> (loss, grads, new params)`` (Adam 1e-3)."""
    opt = optax.adam(1e-3)

    def step(params):
        value, grads = jax.value_and_grad(loss)(params)
        updates, _ = opt.update(grads, opt.init(params), params)
        return value, grads, optax.apply_updates(params, updates)

    return jax.jit(step)


def _params(init, *args):
    """Params of ``init``'s structure (by abstract evaluation: nothing is compiled) filled with
    a fixed pattern: nonzero output layers, so every block shapes the loss and its gradient."""
    shapes = jax.eval_shape(init, jax.random.key(0), *args)
    fill = lambda s: 0.1 * jnp.cos(jnp.arange(s.size, dtype=s.dtype)).reshape(s.shape)  # noqa: E731
    return jax.tree.map(fill, shapes)


def _temp_and_run(loss, params):
    compiled = _step(loss).lower(params).compile()
    return compiled.memory_analysis().temp_size_in_bytes, compiled(params)


def test_policy_names_and_the_bad_name_error():
    assert nets.REMAT_POLICIES == ("none", "full", "dots", "conv_outputs")
    assert nets.remat_policy("full") is jax.checkpoint_policies.nothing_saveable
    assert nets.remat_policy("dots") is jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    msg = r"unknown remat policy 'everything'; choose one of none, full, dots, conv_outputs$"
    for bad in (
        lambda: nets.remat_policy("everything"),
        lambda: nets.unet((8,), remat="everything"),
        lambda: nets.checkpointed(nets.mlp(2), "everything"),
        lambda: bj.checkpointed_conditioner(bj.mlp_conditioner(), "everything"),
        lambda: flows.realnvp(4, 2, (8,), remat="everything"),
    ):
        with pytest.raises(ValueError, match=msg):
            bad()
    net = nets.mlp(2)
    assert nets.checkpointed(net, "none") is net


def test_model_remat_key():
    """``model.remat``: a schema choice (a bad name is refused before any work) for models
    with a UNet or coupling conditioners, unknown for others (NCSN); with a flow-matching MLP
    field it is refused by name."""
    config = zoo.apply_overrides(zoo.load_experiment("moons_realnvp"), ["model.remat=dots"])
    zoo.validate_config(config)
    with pytest.raises(zoo.ConfigError, match="model.remat='most'.*one of 'none', 'full'"):
        zoo.validate_config(zoo.apply_overrides(config, ["model.remat=most"]))
    with pytest.raises(zoo.ConfigError, match="remat"):
        zoo.apply_overrides(zoo.load_experiment("ncsn_moons"), ["model.remat=full"])
    config = zoo.apply_overrides(zoo.load_experiment("fm_moons"), ["model.remat=full"])
    with pytest.raises(zoo.ConfigError, match="model.remat applies to the UNet only"):
        zoo.build_model(config, (2,))


@pytest.mark.slow
def test_coupling_conditioner_remat_same_values_and_gradients_less_memory():
    """RealNVP with 10 couplings (5 scanned pairs): remat of every conditioner call gives the
    same loss and gradients and a smaller step (the scan keeps only the conditioners'
    inputs instead of their hidden activations)."""
    x = jax.random.normal(jax.random.key(1), (256, 4))
    results = {}
    for remat in ("none", "full"):
        dist = flows.realnvp(4, 10, (64, 64), remat=remat)
        params = _params(dist.init, x)
        results[remat] = _temp_and_run(lambda p, d=dist: -jnp.mean(d.log_prob(p, x)), params)
    (temp0, ref), temp_full = results["none"], results["full"][0]
    # loss and gradients (Adam's update turns rounding in tiny gradients into +-lr)
    got = results["full"][1][:2]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref[:2]), strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    assert temp_full < 0.5 * temp0, (temp_full, temp0)  # measured 0.27


@pytest.mark.slow
def test_unet_remat_same_values_and_gradients_less_memory():
    """UNet (one level, attention, dropout): remat of every residual and attention block
    keeps the params' names, gives the same loss and gradients and lowers the step's temp
    bytes (8x8x3 images, batch 8: measured 0.37x)."""
    env = {**os.environ, "XLA_FLAGS": WORKER_FLAGS, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ref, full = out["none"], out["full"]
    assert full["tree"] == ref["tree"]
    for a, b in zip(full["leaves"], ref["leaves"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)
    assert full["temp"] < 0.75 * ref["temp"], (full["temp"], ref["temp"])


def _unet_worker() -> dict:
    """The UNet steps with and without remat (run by the test above in its own process)."""
    x = jax.random.normal(jax.random.key(1), (8, 8, 8, 3))
    t = jnp.linspace(0.1, 0.9, 8)
    out = {}
    for remat in ("none", "full"):
        net = nets.unet((8,), 16, attention_heads=2, dropout=0.1, remat=remat)
        params = _params(net.init, t, x)

        def loss(p, net=net):
            y = net.apply(p, t, x, rng=jax.random.key(2))  # dropout on: the same masks
            return jnp.mean((y - x) ** 2)

        temp, res = _temp_and_run(loss, params)
        leaves = [np.asarray(a).tolist() for a in jax.tree.leaves(res[:2])]
        out[remat] = {"temp": temp, "leaves": leaves, "tree": str(jax.tree.structure(params))}
    return out


if __name__ == "__main__":
    print(json.dumps(_unet_worker()))
