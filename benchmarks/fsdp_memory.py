"""FSDP memory: per-device bytes of a wide UNet's training state, replicated against split.

A flow-matching training state (params, Adam moments, EMA) of a DDPM-size UNet (over 20M
parameters) is placed on 8 devices twice: replicated (every device holds all of it) and
with ``param_sharding="fsdp"`` on a ``(1, 8)`` mesh (:func:`flowzoo.train.param_shardings`:
leaves of at least 2^16 elements split along their largest dimension divisible by 8).
Reported per device: the state's bytes (:func:`flowzoo.train.per_device_bytes`, summed over
each array's shards on device 0) and XLA's buffer assignment of the compiled train step
(``memory_analysis()`` of the per-device program: arguments, outputs, temporaries). The
target is the issue's: FSDP holds at most 1.3/8 of the replicated params + Adam bytes.

On CPU the 8 devices are simulated (``--xla_force_host_platform_device_count=8``, set here
before JAX starts), so the figures are XLA's memory plan, not a measurement of a GPU; no
step time is reported (simulated devices share the host's cores).

Run: ``python benchmarks/fsdp_memory.py [--quick]`` (about a minute; ``--quick`` a small
UNet, for checking the script).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

from flowzoo import flow_matching, nets, paths, train  # noqa: E402

DEVICES = 8
TARGET = 1.3 / DEVICES  # fsdp params + Adam bytes / replicated, per device
WIDE = {"channels": (128, 256, 256, 256), "num_blocks": 2, "attention_heads": 4, "embed_dim": 512}
QUICK = {"channels": (32, 64), "num_blocks": 1, "attention_heads": 0, "embed_dim": 64}
SHAPE = (32, 32, 3)  # CIFAR-10
BATCH = 2 * DEVICES


def _state(net_kwargs: dict[str, Any]):
    """A fresh flow-matching train state (Adam, EMA) of the UNet and its loss."""
    net = nets.unet(**net_kwargs)
    loss = flow_matching.cfm_loss(net.apply, paths.cond_ot_path())
    x = jnp.zeros((2, *SHAPE))
    params = net.init(jax.random.key(0), jnp.zeros((2,)), x)
    optimizer = optax.adam(1e-4)
    state = train.init_train_state(params, optimizer, ema=True)
    return state, loss, optimizer


def _bytes(state) -> dict[str, int]:
    return {
        "params": train.per_device_bytes(state.params),
        "opt_state": train.per_device_bytes(state.opt_state),
        "ema": train.per_device_bytes(state.ema_params),
    }


def measure(net_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-device state bytes and the compiled step's XLA buffers, replicated and fsdp."""
    state, loss, optimizer = _state(net_kwargs)
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(state.params))
    host = jax.tree.map(np.asarray, state)
    rows = []
    for mode, shape in (("replicated", (DEVICES, 1)), ("fsdp", (1, DEVICES))):
        mesh = train.make_mesh(shape, param_sharding=mode)
        placed = train.put_state(host, mesh, mode)
        shardings = train.param_shardings(placed, mesh, mode)
        key = jax.random.key(1)

        def step(state, batch, key=key):  # fit's step: update, EMA; the state keeps its layout
            return train.apply_update(loss, optimizer, state, key, batch, 0.999)

        jitted = jax.jit(
            step,
            in_shardings=(shardings, train.batch_sharding(mesh)),
            out_shardings=(shardings, train.replicated(mesh)),
        )
        batches = jax.ShapeDtypeStruct(
            (BATCH, *SHAPE), jnp.float32, sharding=train.batch_sharding(mesh)
        )
        compiled = jitted.lower(placed, batches).compile()
        per_device = _bytes(placed)
        rows.append(
            {
                "param_sharding": mode,
                "mesh_shape": list(shape),
                "params": n_params,
                "state_bytes": per_device,
                "params_adam_bytes": per_device["params"] + per_device["opt_state"],
                "step": common.memory(compiled),
            }
        )
        print(
            f"{mode:>10} mesh {shape}: params+Adam {common.fmt_bytes(rows[-1]['params_adam_bytes'])}"
            f" per device, step buffers {common.fmt_bytes(rows[-1]['step']['xla_step_bytes'])}",
            flush=True,
        )
    ratio = rows[1]["params_adam_bytes"] / rows[0]["params_adam_bytes"]
    for r in rows:
        r["fsdp_over_replicated"] = ratio
        r["target_met"] = ratio <= TARGET
    return rows


def check(d: dict) -> list[dict[str, Any]]:
    """FSDP's per-device params + Adam bytes over the replicated ones, against 1.3/8."""
    r = d["results"][-1]
    return [
        {
            "what": f"fsdp / replicated params+Adam bytes per device, {r['params']:,} params",
            "value": r["fsdp_over_replicated"],
            "target": f"<= {TARGET:.4f}",
            "met": r["target_met"],
        }
    ]


def render(d: dict) -> str:
    """The docs block: per-device bytes of the wide UNet's state and step, both layouts."""
    rows = [
        [
            f"`{r['param_sharding']}`",
            "x".join(map(str, r["mesh_shape"])),
            common.fmt_bytes(r["state_bytes"]["params"]),
            common.fmt_bytes(r["state_bytes"]["opt_state"]),
            common.fmt_bytes(r["state_bytes"]["ema"]),
            common.fmt_bytes(common.dig(r, "step", "xla_step_bytes")),
        ]
        for r in d["results"]
    ]
    r = d["results"][-1]
    return (
        f"A UNet of {r['params']:,} parameters (channels {list(d['config']['net']['channels'])}, "
        f"{d['config']['net']['num_blocks']} residual blocks per level, attention) trained by "
        f"flow matching with Adam and an EMA on 8 simulated CPU devices, batch {BATCH} of "
        "32x32x3. Bytes per device of the training state and XLA's buffers of one compiled "
        f"step. FSDP holds {r['fsdp_over_replicated']:.4f} of the replicated params + Adam bytes "
        f"(target <= 1.3/8 = {TARGET:.4f}: {common.fmt_met(r['target_met'])}).\n\n"
        + common.md_table(["layout", "mesh", "params", "Adam state", "EMA", "step buffers"], rows)
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/fsdp_memory.json")
    ap.add_argument("--quick", action="store_true", help="a small UNet (checks the script)")
    cfg = ap.parse_args(argv)
    if jax.device_count() < DEVICES:
        raise SystemExit(f"needs {DEVICES} devices, found {jax.device_count()}")
    net = QUICK if cfg.quick else WIDE
    env = common.env_info()
    results = measure(net)
    payload = {
        "benchmark": "fsdp_memory",
        "env": env,
        "load_average_after": common.load_average(),
        "config": {"net": net, "shape": SHAPE, "batch": BATCH, "devices": DEVICES},
        "results": results,
        "checks": check({"results": results}),
    }
    common.write_json(cfg.out, payload)
    return payload


if __name__ == "__main__":
    main()
