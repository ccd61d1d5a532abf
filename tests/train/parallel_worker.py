"""Subprocess workers for tests/train/test_parallel.py (not a test module itself).

Each mode prints one JSON line on stdout. The parent sets XLA_FLAGS (device count) and
runs ``python tests/train/parallel_worker.py MODE ...``.

Modes:
  devices     one train step on 1 device vs 8 (sharded jit and pmap); fit with a mesh
  fit OUT WORKDIR SLEEP   the kill/resume run: fit, saving every 2 steps; SLEEP seconds per
              step (an eval_fn that sleeps, so a parent can kill it mid-run); writes
              OUT (final params, .npz)
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowzoo
from flowzoo import data as fzdata
from flowzoo import train
from flowzoo.flows import nll_loss

BATCH = 64
STEPS = 12


def problem():
    """``(loss_fn, optimizer, params, batch_fn)``: a 4-layer RealNVP on 512 two-moons points."""
    x = fzdata.two_moons(jax.random.key(0), 512, noise=0.05)
    x = fzdata.standardize(fzdata.fit_standardizer(x), x)
    model = flowzoo.realnvp(2, 4, (16,))
    params = model.init(jax.random.key(1), x[:BATCH])
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    return nll_loss(model), opt, params, fzdata.array_batches(x, BATCH)


def max_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def devices() -> dict:
    loss_fn, opt, params, batch_fn = problem()
    key = jax.random.key(3)
    n = jax.device_count()
    state0 = train.init_train_state(params, opt, ema=True)
    batch = batch_fn(key, 0)
    one = train.make_train_step(loss_fn, opt, ema_decay=0.9)
    ref, ref_m = one(state0, key, batch)

    mesh = train.data_mesh()
    sharded = train.make_train_step(loss_fn, opt, ema_decay=0.9, mesh=mesh)
    sh, sh_m = sharded(state0, key, batch)
    params_sharding = jax.tree.leaves(sh.params)[0].sharding

    pstep = train.make_pmap_train_step(loss_fn, opt, ema_decay=0.9)
    pm, pm_m = pstep(train.replicate(state0), key, train.shard_batch(batch))
    pm_copies_equal = max_diff(jax.tree.map(lambda x: x[0], pm), jax.tree.map(lambda x: x[-1], pm))
    pm = train.unreplicate(pm)

    try:
        sharded(state0, key, batch[:60])
        bad_batch = None
    except ValueError as err:
        bad_batch = str(err)

    kw = dict(key=key, num_steps=6, steps_per_call=3, progress=False, ema_decay=0.9)
    fit1 = train.fit(loss_fn, opt, params, batch_fn, **kw)
    auto = train.DataParallel("auto")
    fit8 = train.fit(loss_fn, opt, params, batch_fn, parallel=auto, **kw)
    try:
        train.fit(loss_fn, opt, params, fzdata.array_batches(batch, 60), parallel=auto, **kw)
        bad_fit = None
    except ValueError as err:
        bad_fit = str(err)
    return {
        "device_count": n,
        "params_sharding": str(params_sharding.spec),
        "params_replicated": bool(params_sharding.is_fully_replicated),
        "sharded_vs_one": max_diff(sh, ref),
        "pmap_vs_one": max_diff(pm, ref),
        "pmap_copies": pm_copies_equal,
        "loss": [float(ref_m["loss"]), float(sh_m["loss"]), float(pm_m["loss"][0])],
        "fit_mesh_vs_one": max_diff(fit8.state, fit1.state),
        "fit_steps": [int(fit1.state.step), int(fit8.state.step)],
        "param_scale": max(float(jnp.max(jnp.abs(p))) for p in jax.tree.leaves(ref.params)),
        "bad_batch": bad_batch,
        "bad_fit": bad_fit,
    }


def fit(out: str, workdir: str, sleep: float) -> dict:
    loss_fn, opt, params, batch_fn = problem()

    def eval_fn(state):
        time.sleep(sleep)
        return {}

    result = train.fit(
        loss_fn,
        opt,
        params,
        batch_fn,
        key=jax.random.key(3),
        num_steps=STEPS,
        steps_per_call=4,
        evaluation=train.Evaluation(eval_fn, every=1) if sleep > 0 else None,
        checkpointing=train.Checkpointing(workdir, every=2, keep=2),
        progress=False,
    )
    np.savez(out, *[np.asarray(x) for x in jax.tree.leaves(result.state)])
    return {"step": int(result.state.step)}


def dist(coordinator: str, num: int, pid: int, workdir: str, out: str) -> dict:
    """One process of a multi-process run: fit 6 steps data-parallel, checkpoint every 3,
    then resume to 8 steps (exercises orbax's multi-process save and restore)."""
    train.initialize_distributed(coordinator, num, pid, timeout_s=60)
    loss_fn, opt, params, batch_fn = problem()
    kw = dict(key=jax.random.key(3), steps_per_call=3, progress=False, ema_decay=0.9)
    kw.update(
        checkpointing=train.Checkpointing(workdir, every=3), parallel=train.DataParallel("auto")
    )
    train.fit(loss_fn, opt, params, batch_fn, num_steps=6, **kw)
    result = train.fit(loss_fn, opt, params, batch_fn, num_steps=8, **kw)
    if pid == 0:
        np.savez(out, *[np.asarray(x) for x in jax.tree.leaves(result.state)])
    return {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "step": int(result.state.step),
        "history": len(result.history),
    }


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "dist":
        out = dist(args[0], int(args[1]), int(args[2]), args[3], args[4])
    elif mode == "devices":
        out = devices()
    elif mode == "fit":
        out = fit(args[0], args[1], float(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out), flush=True)
