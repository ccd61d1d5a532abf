"""Subprocess worker for tests/train/test_fsdp.py (not a test module itself).

``python tests/train/fsdp_worker.py ROOT`` with 8 simulated devices (the parent sets
XLA_FLAGS) runs every 8-device case of the ``fit`` API in one process and prints one JSON
line:

* ``big``: a 1.6M-parameter RealNVP (dim 256, 4 couplings, hidden 1024: eight kernels of
  131,072 and 262,144 elements, which FSDP splits, and 0.2% of the parameters in biases,
  which it leaves whole) trained 20 steps on one device and with FSDP on a 1x8 mesh:
  per-step losses, per-device bytes, parameter layouts;
* ``chain``: the :func:`moons` problem trained with FSDP on a 2x4 mesh to step 4
  (checkpointed in ``ROOT/chain``, copied to ``ROOT/chain_at_4`` for the parent to resume
  on one device), then resumed replicated on an 8x1 mesh to step 8 (final params in
  ``ROOT/resumed.npz``); and one ``make_train_step`` step from an FSDP-placed state on the
  2x4 mesh (params in ``ROOT/stepped.npz``);
* ``old``: a checkpoint in the per-layer tuple layout saved with its arrays split over 8
  devices, in ``ROOT/old``, for the parent (one device) to restore into a stacked target.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

import flowzoo
from flowzoo import checkpoint as ckpt
from flowzoo import data as fzdata
from flowzoo import train, zoo
from flowzoo.flows import nll_loss

BIG = dict(dim=256, num_layers=4, hidden=1024, batch=8, steps=20)

CONFIG = [
    *("train.steps=8", "train.batch_size=64", "train.steps_per_call=2"),
    *("train.eval_every=0", "train.checkpoint_every=2", "train.keep_checkpoints=2"),
    *("data.n_train=512", "data.n_test=256", "model.num_layers=2"),
    *("model.hidden=[512,512]", "plot.n_samples=256", "plot.grid=20"),
]
"""``moons_realnvp`` overrides of the CLI kill test: couplings of hidden width 512, whose
512x512 kernels (2 layers stacked: 524,288 elements) are split by FSDP."""


def config(*extra: str) -> dict:
    """The zoo config of :data:`CONFIG` with ``extra`` overrides."""
    return zoo.apply_overrides(zoo.load_experiment("moons_realnvp"), [*CONFIG, *extra])


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def specs(tree) -> list[str]:
    return [str(getattr(x.sharding, "spec", None)) for x in jax.tree.leaves(tree)]


def moons():
    """``(loss_fn, optimizer, params, batch_fn)``: a RealNVP with two 512x512 kernels."""
    x = fzdata.two_moons(jax.random.key(0), 512, noise=0.05)
    model = flowzoo.realnvp(2, 2, (512, 512))
    params = model.init(jax.random.key(1), x[:64])
    return nll_loss(model), optax.adam(1e-3), params, fzdata.array_batches(x, 64)


MOONS = dict(key=jax.random.key(3), steps_per_call=1, progress=False)
"""``fit`` arguments of the :func:`moons` runs (one record per step)."""


def big() -> dict:
    c = BIG
    x = jax.random.normal(jax.random.key(0), (8 * c["batch"], c["dim"]))
    model = flowzoo.realnvp(c["dim"], c["num_layers"], (c["hidden"],))
    params = model.init(jax.random.key(1), x[: c["batch"]])
    args = (nll_loss(model), optax.adam(1e-4), params, fzdata.array_batches(x, c["batch"]))
    kw = dict(key=jax.random.key(3), num_steps=c["steps"], steps_per_call=1, progress=False)
    out: dict = {"shapes": [list(p.shape) for p in jax.tree.leaves(params)]}
    fsdp = train.DataParallel(train.make_mesh(param_sharding="fsdp"), param_sharding="fsdp")
    for name, parallel in (("one", train.DataParallel()), ("fsdp_1x8", fsdp)):
        t0 = time.perf_counter()
        result = train.fit(*args, parallel=parallel, **kw)
        out[name] = {
            "losses": [r["loss"] for r in result.history],
            "mesh_shape": result.mesh_shape,
            "device_bytes": result.device_bytes,
            "specs": specs(result.state.params),
            "seconds": time.perf_counter() - t0,
        }
        del result
    return out


def chain(root: Path) -> dict:
    t0 = time.perf_counter()
    args = moons()
    ckpts = train.Checkpointing(root / "chain", keep=None)
    first = train.DataParallel(train.make_mesh((2, 4)), param_sharding="fsdp")
    at_4 = train.fit(*args, num_steps=4, parallel=first, checkpointing=ckpts, **MOONS)
    shutil.copytree(root / "chain", root / "chain_at_4")
    last = train.DataParallel(train.make_mesh((8, 1)))
    resumed = train.fit(*args, num_steps=8, parallel=last, checkpointing=ckpts, **MOONS)
    np.savez(root / "resumed.npz", *leaves(resumed.state.params))
    loss_fn, opt, params, batch_fn = args  # one make_train_step step on an FSDP state
    state = train.put_state(train.init_train_state(params, opt), first.mesh, "fsdp")
    key = MOONS["key"]
    stepped, metrics = train.make_train_step(loss_fn, opt, mesh=first.mesh)(
        state, key, batch_fn(key, 0)
    )
    np.savez(root / "stepped.npz", *leaves(stepped.params))
    return {
        "step_loss": float(metrics["loss"]),
        "step_specs": [specs(state.params), specs(stepped.params)],
        "at_4_losses": [r["loss"] for r in at_4.history],
        "at_4_mesh": at_4.mesh_shape,
        "at_4_specs": specs(at_4.state.params),
        "resumed_step": int(resumed.state.step),
        "resumed_mesh": resumed.mesh_shape,
        "resumed_specs": specs(resumed.state.params),
        "seconds": time.perf_counter() - t0,
    }


def old_layout(root: Path) -> str:
    """Two per-layer (512, 256) kernels saved as a tuple, each split over the 8 devices."""
    mesh = train.make_mesh(param_sharding="fsdp")
    base = np.arange(512 * 256, dtype=np.float32).reshape(512, 256)
    placed = train.put_state({"kernel": (base, 2 * base)}, mesh, "fsdp")
    ckpt.save(root / "old", 0, placed)
    return str(placed["kernel"][0].sharding.spec)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    out = {"device_count": jax.device_count(), "big": big(), "chain": chain(root)}
    out["old_spec"] = old_layout(root)
    print(json.dumps(out), flush=True)
