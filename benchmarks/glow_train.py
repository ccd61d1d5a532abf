"""Glow train-step throughput, compile time (depth 8 vs 32) and memory on synthetic images.

Model: ``flowzoo.flows.glow(image_shape, levels, depth, hidden)`` (Kingma & Dhariwal 2018:
per level squeeze, ``depth`` steps of ActNorm -> LU 1x1 conv -> affine coupling with a ResNet
conditioner ``conv3x3 -> [conv3x3 -> conv1x1] -> zero conv3x3`` of width ``hidden``, split
with a learned conditional prior), standard normal base, float32. Data: one fixed batch of
uniform noise in [-0.5, 0.5) (Glow's "shift" preprocessing of 8-bit images; the numbers do
not depend on the pixel values). One jitted step = ``value_and_grad`` of the mean negative
log-likelihood + ``optax.adam(1e-3)`` update; no buffer donation.

Default sizes: 28x28x1 with 2 levels (28 -> 14 -> 7) and 32x32x3 with 3 levels, depth 8,
hidden 64, batch 32. Measured per size: compile time (``jax.clear_caches()``, then
``step.lower(*args)`` + ``.compile()`` on abstract shapes, wall and process CPU), the
steady-state step time (``benchmarks/_common.py``: median over interleaved blocks of chained
steps), images/s = batch / step time, and memory: XLA's ``memory_analysis()`` of the compiled
step (arguments + outputs + temporaries - aliased, i.e. the buffers one step needs) and the
process peak RSS (``ru_maxrss``, everything the process touched, compilation included).
Then the compile time of the 28x28x1 step at depth 32 vs depth 8 (target ratio <= 1.5: the
steps of a level run in one ``lax.scan``). The step compiles as flowzoo's train steps do
(``flowzoo.train.jit``: on CPU, XLA's Eigen convolutions).

``--conv-ab`` also times, interleaved with flowzoo's step, the same step with the ResNet
conditioner's convolutions differentiated by JAX's own rules (``lax``: both gradients; and
``lax_dx``: the input gradient only, the kernel's by flowzoo's per-tap matmuls). Inside the
level's ``lax.scan`` those gradients are convolutions in a non-canonical form, which XLA:CPU
runs in a naive loop nest (its canonicalisation pass visits top-level convolutions only);
``conv_ab.speedup_*`` is the median paired ratio of their step time to flowzoo's.

Run ``python benchmarks/glow_train.py [--quick] [--conv-ab] [--sizes 28x28x1,32x32x3]
[--out PATH]``.
"""

from __future__ import annotations

import argparse
import functools
import math
import resource
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.glow_train
    from benchmarks import _common as common

import flowzoo
import flowzoo.nets._resnet as resnet_conv  # the A/B swaps the conditioner's convolution

LR = 1e-3
HIDDEN = 64
DEPTH = 8
BATCH = 32
LEVELS = {(28, 28, 1): 2, (32, 32, 3): 3}
DEFAULT_SIZES = ((28, 28, 1), (32, 32, 3))
DEPTHS = {"shape": (28, 28, 1), "shallow": 8, "deep": 32, "target": 1.5}


def build(shape, levels, depth, hidden, batch):
    """``(jitted step, abstract args, concrete-args maker, flow)`` for one Glow config."""
    flow = flowzoo.flows.glow(shape, levels, depth, hidden)
    opt = optax.adam(LR)
    dims = math.prod(shape)

    def loss(params, x):
        return -jnp.mean(flow.log_prob(params, x)) / (dims * math.log(2.0))  # bits/dim

    def step(params, opt_state, x):
        value, grads = jax.value_and_grad(loss)(params, x)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    x = jax.random.uniform(jax.random.key(0), (batch, *shape), jnp.float32, -0.5, 0.5)
    params_shape = jax.eval_shape(flow.init, jax.random.key(1), x)
    opt_shape = jax.eval_shape(opt.init, params_shape)
    abstract = (params_shape, opt_shape, jax.ShapeDtypeStruct(x.shape, x.dtype))

    def concrete():
        params = jax.jit(flow.init)(jax.random.key(1), x)  # ActNorm data-dependent init
        return params, opt.init(params), x

    return flowzoo.train.jit(step), abstract, concrete


_NHWC = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _lax_dx_conv(x, w, padding):
    """The A/B's ``lax_dx``: flowzoo's per-tap kernel tangent, JAX's input transpose."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


@_lax_dx_conv.defjvp
def _lax_dx_jvp(padding, primals, tangents):
    x, w = primals
    dx, dw = tangents
    y = _lax_dx_conv(x, w, padding)
    dy = jax.lax.conv_general_dilated(dx, w, (1, 1), padding, dimension_numbers=_NHWC)
    return y, dy + resnet_conv._taps_conv(x, dw, padding, y.shape[1:3])


def _lax_conv(x, w, padding):
    """The A/B's ``lax``: ``lax.conv_general_dilated`` with JAX's gradients."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


CONV_VARIANTS = {"lax": _lax_conv, "lax_dx": _lax_dx_conv}


def compiled_with_conv(conv, shape, levels, cfg):
    """Build and compile the step with ``conv`` as the conditioner's convolution (the
    swap lasts while the step is traced)."""
    kept = resnet_conv.conv_tap_grad
    resnet_conv.conv_tap_grad = conv
    try:
        jitted, abstract, concrete = build(shape, levels, cfg.depth, cfg.hidden, cfg.batch)
        compiled = jitted.lower(*abstract).compile()
    finally:
        resnet_conv.conv_tap_grad = kept
    return compiled, concrete


def measure_conv_ab(shape, levels, cfg, compiled, concrete) -> dict[str, Any]:
    """Step time of flowzoo's step and of the ``CONV_VARIANTS`` steps, interleaved, with
    the paired per-round ratios (variant / flowzoo) and the variants' first losses."""
    print(f"  conv A/B {'x'.join(map(str, shape))} ...", flush=True)
    steps = {"flowzoo": (compiled, concrete)}
    for name, conv in CONV_VARIANTS.items():
        steps[name] = compiled_with_conv(conv, shape, levels, cfg)
    cases, losses = {}, {}
    for name, (fn, make) in steps.items():
        params, opt_state, x = make()
        losses[name] = float(fn(params, opt_state, x)[2])
        cases[name] = ((lambda c, fn=fn, x=x: fn(c[0], c[1], x)), (params, opt_state, 0.0))
    rounds = common.interleaved_steady(
        cases, repeats=cfg.repeats, target_block_s=cfg.block_seconds, warmup=1
    )
    out: dict[str, Any] = {"first_loss_bpd": losses}
    base = rounds["flowzoo"]["step_s"]
    for name in CONV_VARIANTS:
        out[name] = rounds[name]
        pair = [
            v / b for v, b in zip(rounds[name]["step_s"]["values"], base["values"], strict=True)
        ]
        out[f"speedup_{name}"] = common.summarize(pair)
    out["flowzoo"] = rounds["flowzoo"]
    return out


def compile_step(jitted, abstract) -> tuple[Any, dict[str, float]]:
    """Lower and compile from a clean cache; ``(compiled, {lower_s, compile_s, total_s,
    total_cpu_s})``."""
    jax.clear_caches()
    c0, t0 = time.process_time(), time.perf_counter()
    lowered = jitted.lower(*abstract)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2, c2 = time.perf_counter(), time.process_time()
    return compiled, {
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "total_s": t2 - t0,
        "total_cpu_s": c2 - c0,
    }


def measure_compile(shape, levels, depth, hidden, batch, repeats):
    """Compile ``repeats`` fresh steps; returns the last compiled step and summaries."""
    runs = []
    for _ in range(repeats):
        jitted, abstract, concrete = build(shape, levels, depth, hidden, batch)
        compiled, t = compile_step(jitted, abstract)
        runs.append(t)
    summary = {k: common.summarize([r[k] for r in runs]) for k in runs[0]}
    return compiled, concrete, summary


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def measure_size(shape, cfg) -> dict[str, Any]:
    levels = LEVELS.get(shape, cfg.levels)
    print(f"measuring {'x'.join(map(str, shape))} (levels {levels}) ...", flush=True)
    compiled, concrete, comp = measure_compile(
        shape, levels, cfg.depth, cfg.hidden, cfg.batch, cfg.compile_repeats
    )
    params, opt_state, x = concrete()
    _, _, loss0 = compiled(params, opt_state, x)
    steady = common.interleaved_steady(
        {"glow": (lambda c: compiled(c[0], c[1], x), (params, opt_state, jnp.zeros(())))},
        repeats=cfg.repeats,
        target_block_s=cfg.block_seconds,
        warmup=1,
        return_carry=True,
    )["glow"]
    final = float(steady.pop("carry")[2])
    t = steady["step_s"]["median"]
    conv_ab = measure_conv_ab(shape, levels, cfg, compiled, concrete) if cfg.conv_ab else None
    return {
        "image_shape": list(shape),
        "levels": levels,
        "depth": cfg.depth,
        "hidden": cfg.hidden,
        "batch": cfg.batch,
        "n_params": int(sum(p.size for p in jax.tree.leaves(params))),
        "compile": comp,
        "memory": common.memory(compiled),
        "initial_loss_bpd": float(loss0),
        "final_loss_bpd": final,
        **steady,
        "images_per_s": cfg.batch / t,
        "conv_ab": conv_ab,
    }


def measure_depth(cfg) -> dict[str, Any]:
    shape = DEPTHS["shape"]
    levels = LEVELS[shape]
    print(f"measuring compile time, depth {DEPTHS['deep']} vs {DEPTHS['shallow']} ...", flush=True)
    out: dict[str, Any] = {"image_shape": list(shape), "levels": levels, "batch": cfg.batch}
    for depth in (DEPTHS["shallow"], DEPTHS["deep"]):
        _, _, comp = measure_compile(
            shape, levels, depth, cfg.hidden, cfg.batch, cfg.compile_repeats
        )
        out[str(depth)] = comp
    deep, shallow = out[str(DEPTHS["deep"])], out[str(DEPTHS["shallow"])]
    out["ratio"] = deep["total_s"]["median"] / shallow["total_s"]["median"]
    out["cpu_ratio"] = deep["total_cpu_s"]["median"] / shallow["total_cpu_s"]["median"]
    out["target_ratio"] = DEPTHS["target"]
    out["target_met"] = bool(out["ratio"] <= DEPTHS["target"])
    return out


def _mib(b) -> str | None:
    return common.fmt_bytes(b)


def report(results, depth) -> str:
    rows = [
        [
            "x".join(map(str, r["image_shape"])),
            r["levels"],
            r["depth"],
            r["hidden"],
            r["batch"],
            f"{r['n_params'] / 1e6:.2f}M",
            common.fmt_seconds(r["compile"]["total_s"]["median"]),
            common.fmt_seconds(r["step_s"]["median"]),
            common.fmt_seconds(r["cpu_s"]["median"]),
            f"{r['images_per_s']:.1f}",
            _mib(r["memory"]["xla_step_bytes"]),
        ]
        for r in results
    ]
    headers = ["image", "L", "K", "hidden", "batch", "params", "compile", "step", "cpu/step"]
    lines = [common.format_table([*headers, "images/s", "XLA step mem"], rows)]
    if depth is not None:
        s, d = depth[str(DEPTHS["shallow"])], depth[str(DEPTHS["deep"])]
        lines += [
            "",
            f"compile time vs depth ({'x'.join(map(str, depth['image_shape']))}, "
            f"batch {depth['batch']}):",
            common.format_table(
                [
                    f"depth {DEPTHS['shallow']}",
                    f"depth {DEPTHS['deep']}",
                    "ratio",
                    "cpu ratio",
                    "target",
                    "",
                ],
                [
                    [
                        common.fmt_seconds(s["total_s"]["median"]),
                        common.fmt_seconds(d["total_s"]["median"]),
                        f"{depth['ratio']:.2f}",
                        f"{depth['cpu_ratio']:.2f}",
                        f"<= {DEPTHS['target']}",
                        "met" if depth["target_met"] else "MISSED",
                    ]
                ],
            ),
        ]
    for r in results:
        if r.get("conv_ab"):
            ab = r["conv_ab"]
            lines.append(
                f"\nconv A/B {'x'.join(map(str, r['image_shape']))}: step time over flowzoo's: "
                f"lax_dx {common.fmt_rounds(ab['speedup_lax_dx'])}, "
                f"lax {common.fmt_rounds(ab['speedup_lax'])}"
            )
    lines.append(f"\npeak RSS of the process: {_mib(peak_rss_bytes())}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- targets and docs table


def check(d: dict) -> list[dict[str, Any]]:
    """The compile-time-against-depth target: ``[{"what", "value", "target", "met"}]``."""
    depth = d.get("depth_compile")
    if depth is None:
        return []
    return [
        {
            "what": f"glow compile depth {DEPTHS['deep']}/{DEPTHS['shallow']}",
            "value": depth["ratio"],
            "target": f"<= {DEPTHS['target']}",
            "met": depth["target_met"],
        }
    ]


def render(d: dict) -> str:
    """The docs block: throughput, compile time and memory per image size, then compile time
    against depth."""
    rows = [
        [
            "x".join(map(str, r["image_shape"])),
            r["levels"],
            r["depth"],
            r["batch"],
            f"{r['n_params'] / 1e6:.2f}M",
            common.fmt_seconds(common.dig(r, "compile", "total_s", "median")),
            common.fmt_seconds(common.dig(r, "step_s", "median")),
            None if r.get("images_per_s") is None else f"{r['images_per_s']:.1f}",
            common.fmt_mem(r),
        ]
        for r in d["sizes"]
    ]
    out = [
        common.md_table(
            [
                "image",
                "levels",
                "depth",
                "batch",
                "params",
                "compile",
                "step",
                "images/s",
                "memory",
            ],
            rows,
        )
    ]
    ab = [r for r in d["sizes"] if r.get("conv_ab")]
    if ab:
        out += [
            "",
            common.md_table(
                ["image", "flowzoo step", "`lax_dx` step", "`lax` step", "`lax_dx` / flowzoo",
                 "`lax` / flowzoo"],
                [
                    [
                        "x".join(map(str, r["image_shape"])),
                        common.fmt_seconds(common.dig(r, "conv_ab", "flowzoo", "step_s", "median")),
                        common.fmt_seconds(common.dig(r, "conv_ab", "lax_dx", "step_s", "median")),
                        common.fmt_seconds(common.dig(r, "conv_ab", "lax", "step_s", "median")),
                        common.fmt_rounds(common.dig(r, "conv_ab", "speedup_lax_dx")),
                        common.fmt_rounds(common.dig(r, "conv_ab", "speedup_lax")),
                    ]
                    for r in ab
                ],
            ),
        ]  # fmt: skip
    dc = d.get("depth_compile")
    if dc:
        keys = sorted((k for k in dc if k.isdigit()), key=int)
        out += [
            "",
            common.md_table(
                [*[f"compile, depth {k}" for k in keys], "ratio", "cpu ratio", "target", "met"],
                [
                    [
                        *[common.fmt_seconds(common.dig(dc, k, "total_s", "median")) for k in keys],
                        f"{dc['ratio']:.2f}",
                        f"{dc['cpu_ratio']:.2f}",
                        f"<= {dc['target_ratio']}",
                        common.fmt_met(dc.get("target_met")),
                    ]
                ],
            ),
        ]
    return "\n".join(out)


def parse_sizes(text: str | None) -> list[tuple[int, int, int]]:
    """``"28x28x1,32x32x3"`` -> ``[(28, 28, 1), (32, 32, 3)]``."""
    if not text:
        return list(DEFAULT_SIZES)
    return [tuple(int(v) for v in item.strip().lower().split("x")) for item in text.split(",")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, few repeats (smoke run)")
    ap.add_argument("--out", default="benchmarks/results/glow_train.json")
    ap.add_argument("--sizes", default=None, help="comma list of HxWxC (default 28x28x1,32x32x3)")
    ap.add_argument("--levels", type=int, default=2, help="levels for sizes not in the defaults")
    ap.add_argument("--depth", type=int, default=DEPTH)
    ap.add_argument("--hidden", type=int, default=HIDDEN)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--no-depth", action="store_true", help="skip the depth 32 vs 8 compile")
    ap.add_argument(
        "--conv-ab",
        action="store_true",
        help="also time the step with JAX's own convolution gradients (interleaved)",
    )
    ap.add_argument("--repeats", type=int, default=None, help="steady-state repeats")
    ap.add_argument("--compile-repeats", type=int, default=1)
    ap.add_argument("--block-seconds", type=float, default=None)
    cfg = ap.parse_args(argv)
    cfg.batch = cfg.batch or (8 if cfg.quick else BATCH)
    cfg.repeats = cfg.repeats or (3 if cfg.quick else 7)
    cfg.block_seconds = cfg.block_seconds or (0.2 if cfg.quick else 1.0)

    env = common.env_info()
    results = [measure_size(s, cfg) for s in parse_sizes(cfg.sizes)]
    depth = None if cfg.no_depth else measure_depth(cfg)
    table = report(results, depth)
    load_after = common.load_average()
    busy = [
        la[0]
        for la in (env["load_average"], load_after)
        if la is not None and la[0] > (env["cpu_count"] or 1)
    ]
    if busy:
        table += (
            f"\nWARNING: 1-min load average reached {max(busy):.1f} on {env['cpu_count']} CPUs: "
            "other processes competed for the CPU; absolute times are inflated (the cpu "
            "columns and the cpu ratio are the least affected)."
        )
    print()
    print(table)
    payload = {
        "benchmark": "glow_train",
        "env": env,
        "load_average_after": load_after,
        "peak_rss_bytes": peak_rss_bytes(),
        "config": {
            "model": "flowzoo.flows.glow(image_shape, levels, depth, hidden) (LU 1x1 conv, "
            "split prior, sigmoid-bounded affine couplings, ResNet conditioner num_blocks=1)",
            "depth": cfg.depth,
            "hidden": cfg.hidden,
            "batch": cfg.batch,
            "optimizer": f"optax.adam({LR})",
            "loss": "mean NLL in bits/dim of a fixed uniform[-0.5, 0.5) batch",
            "dtype": "float32",
            "donate": False,
            "jit": "flowzoo.train.jit (on CPU: XLA's Eigen convolutions)",
            "conv_ab": cfg.conv_ab,
            "quick": cfg.quick,
            "repeats": cfg.repeats,
            "compile_repeats": cfg.compile_repeats,
            "block_seconds": cfg.block_seconds,
            "compile_method": "jax.clear_caches(); fresh step; time step.lower(abstract "
            "args) + .compile(); median over compile_repeats",
            "step_method": "median over repeats of (time of N chained steps + "
            "block_until_ready) / N, N calibrated to block_seconds",
            "memory_method": "xla_step_bytes = argument + output + temp - alias bytes of "
            "compiled.memory_analysis(); peak_rss_bytes = ru_maxrss of the whole process",
        },
        "sizes": results,
        "depth_compile": depth,
        "checks": check({"depth_compile": depth}),
        "table": table,
    }
    path = common.write_json(cfg.out, payload)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
