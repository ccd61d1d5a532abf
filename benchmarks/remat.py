"""Activation rematerialisation: XLA buffers and step time of a train step with and without remat.

Two models, each trained by one jitted step = ``value_and_grad`` of the loss + an
``optax.adam(1e-3)`` update (no buffer donation), on one fixed random batch and params of a fixed pattern (the figures do
not depend on the values):

* ``unet``: :func:`flowzoo.nets.unet` at a CIFAR-like shape, 32x32x3, channels
  (64, 128, 128) (twice the default width, three levels), 4-head attention at 8x8, batch 64;
  loss: the flow-matching regression ``mean((v(t, x_t) - u)^2)`` at fixed times.
  ``model.remat`` checkpoints every residual and attention block.
* ``glow``: :func:`flowzoo.flows.glow` on 32x32x3, 2 levels of depth 8 (scanned), ResNet
  conditioners of width 128, batch 16; loss: the mean negative log-likelihood. ``remat``
  checkpoints every conditioner call (couplings and split priors).

Per model and remat policy (:data:`flowzoo.nets.REMAT_POLICIES`): ``temp_size_in_bytes`` of
``compiled.memory_analysis()`` (the activations and other temporaries; the CPU backend has no
``memory_stats``), with the rest of XLA's buffer assignment (``_common.memory``), compile time
(lower + compile, wall and CPU) and the steady-state step time (``_common.interleaved_steady``:
median over interleaved blocks, so policies compare under the same conditions).

XLA's CPU pipeline: its ``cse_barrier_expander`` pass removes ``jax.checkpoint``'s optimization
barriers early, and common-subexpression elimination then merges the recomputation back into
the forward pass: straight-line code (the UNet) keeps its activations whatever the policy,
while blocks inside a ``lax.scan`` (Glow's steps) are rematerialised. Each model is therefore
measured in two subprocesses: ``default`` (XLA:CPU as shipped; memory of ``full`` only:
``none`` has no barriers, the same program in both) and ``keep_barriers`` (``XLA_FLAGS=--xla_disable_hlo_passes=cse_barrier_expander``,
what a CPU user sets for remat, and what GPU and TPU pipelines do anyway; every policy,
memory and times).

Target: full remat (``keep_barriers``) brings the UNet step's temp bytes to at most
:data:`TARGET` of the step without remat; its step-time cost is reported beside it.

Run ``python benchmarks/remat.py [--quick] [--out PATH]`` (``--quick``: 8x8 images, a
one-level UNet of width 8, Glow of one level, policies none and full only: a smoke run of
about a minute); writes ``benchmarks/results/remat.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.remat
    from benchmarks import _common as common

from flowzoo import flows, nets

PIPELINES = {
    "default": "",
    "keep_barriers": "--xla_disable_hlo_passes=cse_barrier_expander",
}
TARGET = 0.67  # UNet temp bytes with full remat / without (keep_barriers): 1.5x less
LR = 1e-3

FULL = {
    "unet": {
        "image": (32, 32, 3),
        "channels": (64, 128, 128),
        "attention_heads": 4,
        "embed_dim": 128,
        "batch": 64,
    },
    "glow": {"image": (32, 32, 3), "levels": 2, "depth": 8, "hidden": 128, "batch": 16},
    "policies": nets.REMAT_POLICIES,
    "repeats": 5,
    "block_s": 0.5,
}
QUICK = {
    "unet": {
        "image": (8, 8, 3),
        "channels": (8,),
        "attention_heads": 2,
        "embed_dim": 16,
        "batch": 8,
    },
    "glow": {"image": (8, 8, 3), "levels": 1, "depth": 5, "hidden": 8, "batch": 8},
    "policies": ("none", "full"),
    "repeats": 3,
    "block_s": 0.1,
}


def pattern_params(init, *example):
    """Params of ``init``'s structure, found by abstract evaluation (no init is compiled: a
    UNet's or Glow's takes longer than their train step), filled with ``0.01 cos(i)``: the
    measured figures depend on the shapes only, and the loss stays finite."""
    shapes = jax.eval_shape(init, jax.random.key(1), *example)
    fill = lambda s: 0.01 * jnp.cos(jnp.arange(s.size, dtype=s.dtype)).reshape(s.shape)  # noqa: E731
    return jax.tree.map(fill, shapes)


def unet_problem(cfg: dict[str, Any], remat: str):
    """``(loss(params, batch), init() -> params, batch)`` of the UNet flow-matching
    regression."""
    net = nets.unet(cfg["channels"], cfg["embed_dim"], cfg["attention_heads"], remat=remat)
    n = cfg["batch"]
    x1, x0 = jax.random.normal(jax.random.key(0), (2, n, *cfg["image"]))
    t = jnp.linspace(0.05, 0.95, n)
    s = t[:, None, None, None]
    batch = {"xt": s * x1 + (1 - s) * x0, "t": t, "u": x1 - x0}

    def loss(p, b):
        return jnp.mean((net.apply(p, b["t"], b["xt"]) - b["u"]) ** 2)

    return loss, lambda: pattern_params(net.init, t, batch["xt"]), batch


def glow_problem(cfg: dict[str, Any], remat: str):
    """``(loss(params, batch), init() -> params, batch)`` of Glow's negative log-likelihood
    (bits/dim)."""
    flow = flows.glow(cfg["image"], cfg["levels"], cfg["depth"], cfg["hidden"], remat=remat)
    x = jax.random.uniform(jax.random.key(0), (cfg["batch"], *cfg["image"])) - 0.5
    dims = math.prod(cfg["image"])

    def loss(p, b):
        return -jnp.mean(flow.log_prob(p, b)) / (dims * math.log(2.0))

    return loss, lambda: pattern_params(flow.init, x), x


PROBLEMS = {"unet": unet_problem, "glow": glow_problem}


def train_step(loss):
    """The jitted step ``(params, opt_state, batch) -> (params, opt_state, loss)``."""
    opt = optax.adam(LR)

    def step(params, opt_state, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return jax.jit(step), opt


def measure_model(
    name: str, cfg: dict[str, Any], policies, repeats: int, timed: bool, block_s: float
) -> dict:
    """Memory and compile time of every policy, then (``timed``) interleaved step times. The
    params are made once (remat leaves their structure as it is)."""
    rows, cases, params = {}, {}, None
    for remat in policies:
        loss, init, batch = PROBLEMS[name](cfg, remat)
        params = init() if params is None else params
        step, opt = train_step(loss)
        carry = (params, opt.init(params))
        comp = common.measure_compile(
            lambda s=step, c=carry, b=batch: (s, (*c, b)), repeats=1, keep_compiled=True
        )
        compiled = comp.pop("compiled")
        new_params, _, value = compiled(*carry, batch)
        rows[remat] = {**comp, "loss": float(value)}
        if timed:
            cases[remat] = (lambda c, f=compiled, b=batch: f(*c, b)[:2], carry)
        mem = comp["memory"]
        print(
            f"{name} remat={remat:<12} temp {common.fmt_bytes(mem.get('temp_bytes'))} "
            f"step buffers {common.fmt_bytes(mem.get('xla_step_bytes'))} "
            f"compile {comp['total_s']['median']:.1f} s loss {float(value):.4f}",
            flush=True,
        )
    if timed:
        steady = common.interleaved_steady(cases, repeats=repeats, target_block_s=block_s, warmup=1)
        for remat, s in steady.items():
            rows[remat]["steady"] = s
            print(f"{name} remat={remat:<12} step {s['step_s']['median']:.3f} s", flush=True)
    return rows


def _ratio(row: dict, base: dict, *keys) -> float | None:
    a, b = common.dig(row, *keys), common.dig(base, *keys)
    return None if a is None or not b else a / b


def worker(pipeline: str, quick: bool) -> dict[str, Any]:
    """The models in this process (its ``XLA_FLAGS`` set by the caller): every policy, timed,
    with the barriers kept; ``full`` alone, memory only, in the default pipeline (``none``
    has no barriers, so its step is the same program in both)."""
    sizes = QUICK if quick else FULL
    timed = pipeline == "keep_barriers"
    policies = sizes["policies"] if timed else ("full",)
    return {
        name: measure_model(name, sizes[name], policies, sizes["repeats"], timed, sizes["block_s"])
        for name in PROBLEMS
    }


def with_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """``temp_over_none`` and ``step_over_none`` of every row, against ``none`` of the same
    model (measured with the barriers kept: the same program as in the default pipeline)."""
    for res in results.values():
        for model, by in res["models"].items():
            base = results["keep_barriers"]["models"][model]["none"]
            for r in by.values():
                r["temp_over_none"] = _ratio(r, base, "memory", "temp_bytes")
                r["step_over_none"] = _ratio(r, base, "steady", "step_s", "median")
    return results


def run_pipeline(pipeline: str, quick: bool) -> dict[str, Any]:
    """:func:`worker` in a subprocess whose ``XLA_FLAGS`` select the pipeline."""
    flags = " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), PIPELINES[pipeline]) if f)
    env = {**os.environ, "XLA_FLAGS": flags}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        argv = [sys.executable, __file__, "--worker", pipeline, "--out", str(out)]
        subprocess.run(argv + (["--quick"] if quick else []), env=env, check=True)
        return {"xla_flags": flags, "models": json.loads(out.read_text())}


# --------------------------------------------------------------------------- targets and docs table


def check(d: dict) -> list[dict[str, Any]]:
    """The UNet's temp bytes with full remat over those without (barriers kept)."""
    ratio = common.dig(d, "results", "keep_barriers", "models", "unet", "full", "temp_over_none")
    return [
        {
            "what": "UNet train-step temp bytes, full remat / none (barriers kept)",
            "value": ratio,
            "target": f"<= {TARGET}",
            "met": None if ratio is None else bool(ratio <= TARGET),
        }
    ]


def render(d: dict) -> str:
    """The docs block: temp bytes, compile and step time per model, pipeline and policy."""
    rows = []
    res = d["results"]
    for model in res["keep_barriers"]["models"]:
        for pipeline in ("keep_barriers", "default"):
            for remat, r in res[pipeline]["models"][model].items():
                rows.append(
                    [
                        model,
                        f"`{pipeline}`",
                        f"`{remat}`",
                        common.fmt_bytes(common.dig(r, "memory", "temp_bytes")),
                        common.fmt_x(r.get("temp_over_none")),
                        common.fmt_seconds(common.dig(r, "steady", "step_s", "median")),
                        common.fmt_x(r.get("step_over_none")),
                        common.fmt_seconds(common.dig(r, "total_s", "median")),
                    ]
                )
    return (
        "Temporaries (`memory_analysis().temp_size_in_bytes`) and times of one compiled train "
        "step (`value_and_grad` + Adam) with each remat policy; `keep_barriers` runs with "
        "`XLA_FLAGS=--xla_disable_hlo_passes=cse_barrier_expander` (XLA:CPU otherwise undoes "
        "remat outside loops); step times in that pipeline only.\n\n"
        + common.md_table(
            ["model", "XLA:CPU", "remat", "temp", "vs none", "step", "vs none", "compile"],
            rows,
        )
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/remat.json")
    ap.add_argument("--quick", action="store_true", help="small shapes, two policies (smoke run)")
    ap.add_argument("--worker", choices=tuple(PIPELINES), help=argparse.SUPPRESS)
    cfg = ap.parse_args(argv)
    if cfg.worker:  # one pipeline, in the subprocess run_pipeline started
        out = worker(cfg.worker, cfg.quick)
        common.write_json(cfg.out, out)
        return out
    env = common.env_info()
    results = with_ratios({p: run_pipeline(p, cfg.quick) for p in PIPELINES})
    payload = {
        "benchmark": "remat",
        "env": env,
        "load_average_after": common.load_average(),
        "config": {"sizes": QUICK if cfg.quick else FULL, "quick": cfg.quick, "lr": LR},
        "results": results,
    }
    payload["checks"] = check(payload)
    for c in payload["checks"]:
        print(f"{c['what']}: {c['value']} (target {c['target']}, met {c['met']})")
    common.write_json(cfg.out, payload)
    return payload


if __name__ == "__main__":
    main()
