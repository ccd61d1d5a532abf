"""Langevin samplers: chain-steps/s of ULA and MALA on a 2-D Gaussian mixture, 4,096 chains.

Cases (one process, timed in interleaved rounds, see ``_common.interleaved_steady``); one
timed call runs ``--steps-per-call`` chain steps for every chain:

* ``ula_handwritten``: a plain ``lax.scan`` of ``x + h s(x) + sqrt(2h) z``.
* ``ula_diffrax``: :func:`flowzoo.samplers.ula_sample`, one diffrax Euler–Maruyama solve with a
  batched ``UnsafeBrownianPath`` and ``ForwardMode`` adjoint (the fast default).
* ``ula_run_chain``: :func:`flowzoo.samplers.run_chain` of :func:`flowzoo.samplers.ula` (one
  diffrax ``Euler.step`` per ``Sampler.step``).
* ``ula_virtual_tree``: the same solve with one ``VirtualBrownianTree`` per chain (vmapped).
* ``mala_handwritten``, ``mala_flowzoo`` (``run_chain`` of :func:`flowzoo.samplers.mala`),
  ``mala_blackjax`` (``blackjax.mala`` vmapped over chains; optional import).
* ``ula_handwritten_fused``, ``mala_blackjax_fused``: the hand-written ULA scan and blackjax's
  MALA drawing from ``flowzoo.prng.fused_key(key)``: the same numbers as from ``key``, with
  the Threefry hash written out for XLA to fuse into each step.

Compile time (lower + XLA compile of a fresh function) and XLA's memory analysis of the
compiled call (``_common.memory``) are measured separately. Ratios are
given for wall-clock and for process CPU time (``cpu:``); on a shared, oversubscribed
machine the CPU-time ratios are the steadier of the two. Quality:
KSD (IMQ, exact mixture score) and MMD against exact mixture samples of 2,000 chains after
``--quality-steps`` steps from a uniform start. Writes ``benchmarks/results/langevin.json``.

Run: python benchmarks/langevin.py [--quick]

The figures of the committed run are in ``docs/benchmarks.md`` (langevin).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    dig,
    env_info,
    fmt_bytes,
    fmt_rate,
    fmt_seconds,
    format_table,
    interleaved_steady,
    load_average,
    md_table,
    measure_compile,
    optional_import,
    write_json,
)

from flowzoo import metrics, prng  # noqa: E402
from flowzoo.integrate import solve_sde  # noqa: E402
from flowzoo.metrics import kernel_stein_discrepancy  # noqa: E402
from flowzoo.samplers import mala, run_chain, ula, ula_sample  # noqa: E402

K = 8
ANGLES = jnp.arange(K) * (2 * np.pi / K)
CENTRES = 2.0 * jnp.stack([jnp.cos(ANGLES), jnp.sin(ANGLES)], 1)  # (K, 2)
STD = 0.5


def log_prob(x):
    """Equal-weight mixture of 8 N(c_k, 0.5^2 I) on a radius-2 circle; x: (n, 2) -> (n,)."""
    d2 = jnp.sum((x[:, None, :] - CENTRES[None]) ** 2, -1)
    return jax.nn.logsumexp(-0.5 * d2 / STD**2, 1) - np.log(K) - np.log(2 * np.pi * STD**2)


def score(x):
    lp, vjp = jax.vjp(log_prob, x)
    return vjp(jnp.ones_like(lp))[0]


def exact_samples(key, n):
    k1, k2 = jax.random.split(key)
    return CENTRES[jax.random.randint(k1, (n,), 0, K)] + STD * jax.random.normal(k2, (n, 2))


def make_cases(h, steps, chains, blackjax):
    """name -> (jitted fn(key, x) -> x after ``steps`` chain steps)."""
    sq = float(np.sqrt(2 * h))

    def ula_hand(key, x):
        def body(x, i):
            z = jax.random.normal(jax.random.fold_in(key, i), x.shape)
            return x + h * score(x) + sq * z, None

        return jax.lax.scan(body, x, jnp.arange(steps))[0]

    def mala_hand(key, x):
        def vs(y):
            lp, vjp = jax.vjp(log_prob, y)
            return lp, vjp(jnp.ones_like(lp))[0]

        def body(carry, i):
            x, lp, s = carry
            kz, ku = jax.random.split(jax.random.fold_in(key, i))
            y = x + h * s + sq * jax.random.normal(kz, x.shape)
            lpy, sy = vs(y)
            lq_fwd = -jnp.sum((y - x - h * s) ** 2, 1) / (4 * h)
            lq_bwd = -jnp.sum((x - y - h * sy) ** 2, 1) / (4 * h)
            acc = jnp.log(jax.random.uniform(ku, lp.shape)) < lpy - lp + lq_bwd - lq_fwd
            a = acc[:, None]
            return (jnp.where(a, y, x), jnp.where(acc, lpy, lp), jnp.where(a, sy, s)), None

        lp, s = vs(x)
        return jax.lax.scan(body, (x, lp, s), jnp.arange(steps))[0][0]

    cases = {
        "ula_handwritten": ula_hand,
        # the same scan drawing from flowzoo.prng.fused_key(key): the same numbers, the
        # Threefry hash written out for XLA to fuse into each step
        "ula_handwritten_fused": lambda key, x: ula_hand(prng.fused_key(key), x),
        "ula_diffrax": lambda key, x: ula_sample(score, key, x, h, steps),
        "ula_run_chain": lambda key, x: (
            run_chain(ula(score, h), key, x, steps, steps).state.position
        ),
        "ula_virtual_tree": lambda key, x: (
            solve_sde(
                lambda t, y: score(y),
                lambda t, y: float(np.sqrt(2.0)),
                key,
                x,
                0.0,
                h * steps,
                steps,
                brownian="virtual_tree",
            ).y1
        ),
        "mala_handwritten": mala_hand,
        "mala_flowzoo": lambda key, x: (
            run_chain(mala(log_prob, h), key, x, steps, steps).state.position
        ),
    }
    if blackjax is not None:
        bj = blackjax.mala(lambda y: log_prob(y[None])[0], h)

        def mala_bj(key, x):
            state = jax.vmap(bj.init)(x)

            def body(state, i):
                keys = jax.random.split(jax.random.fold_in(key, i), chains)
                return jax.vmap(bj.step)(keys, state)[0], None

            return jax.lax.scan(body, state, jnp.arange(steps))[0].position

        cases["mala_blackjax"] = mala_bj
        cases["mala_blackjax_fused"] = lambda key, x: mala_bj(prng.fused_key(key), x)
    return cases


# --------------------------------------------------------------------------- docs table


def render(d: dict) -> str:
    """The docs block: chain-steps/s, compile time, memory and sample quality per case, then the
    time ratios."""
    rows = [
        [
            f"`{name}`",
            fmt_rate(r.get("chain_steps_per_s")),
            fmt_seconds(dig(r, "compile", "total_s", "median")),
            fmt_bytes(dig(r, "memory", "xla_step_bytes"))
            or fmt_bytes(dig(r, "compile", "memory", "xla_step_bytes")),
            f"{dig(r, 'quality', 'ksd', default=float('nan')):.4f}",
            f"{dig(r, 'quality', 'mmd', default=float('nan')):.4f}",
        ]
        for name, r in d["results"].items()
    ]
    c = d.get("config", {})
    ratios = [
        [f"`{k.split(':', 1)[1]}`", f"{v:.2f}"]
        for k, v in d.get("ratios", {}).items()
        if k.startswith("wall:")
    ]
    return (
        f"{c.get('chains')} chains, {c.get('steps_per_call')} steps per call, step size "
        f"{c.get('step_size')}; KSD and MMD after {c.get('quality_steps')} steps.\n\n"
        + md_table(["case", "chain-steps/s", "compile", "memory", "KSD", "MMD"], rows)
        + "\n\nRatios of wall-clock time per call (`a/b`: above 1, `a` is slower; "
        "`speedup`: above 1, flowzoo is faster):\n\n" + md_table(["ratio", "value"], ratios)
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--chains", type=int, default=4096)
    p.add_argument("--steps-per-call", type=int, default=100)
    p.add_argument("--step-size", type=float, default=0.05)
    p.add_argument("--quality-steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--skip", default="", help="comma-separated cases to leave out")
    p.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "langevin.json"))
    args = p.parse_args()
    repeats = 3 if args.quick else args.repeats
    blackjax = optional_import("blackjax")
    chains, steps, h = args.chains, args.steps_per_call, args.step_size
    cases = {
        k: v
        for k, v in make_cases(h, steps, chains, blackjax).items()
        if k not in args.skip.split(",")
    }
    env = env_info(("diffrax", "blackjax", "equinox"))  # load average before the run
    key = jax.random.key(0)
    x0 = jax.random.uniform(jax.random.fold_in(key, 1), (chains, 2), minval=-3, maxval=3)

    compile_times, steady_cases = {}, {}
    for name, fn in cases.items():
        compile_times[name] = measure_compile(lambda fn=fn: (jax.jit(fn), (key, x0)), repeats=2)
        jitted = jax.jit(fn)

        def step(carry, jitted=jitted):
            i, x = carry
            return i + 1, jitted(jax.random.fold_in(key, i), x)

        steady_cases[name] = (step, (0, x0))
    steady = interleaved_steady(steady_cases, repeats=repeats, target_block_s=0.5)

    ref = exact_samples(jax.random.key(123), 2000)
    quality = {}
    qk = jax.random.key(7)
    for name, fn in cases.items():
        jitted, x = jax.jit(fn), x0
        for i in range(args.quality_steps // steps):
            x = jitted(jax.random.fold_in(qk, i), x)
        x = x[:2000]
        quality[name] = {
            "ksd": float(kernel_stein_discrepancy(x, score)),
            "mmd": float(metrics.mmd(x, ref)),
            "energy_distance": float(metrics.energy_distance(x, ref)),
        }
    exact = exact_samples(jax.random.key(321), 2000)
    quality["exact_samples"] = {
        "ksd": float(kernel_stein_discrepancy(exact, score)),
        "mmd": float(metrics.mmd(exact, ref)),
        "energy_distance": float(metrics.energy_distance(exact, ref)),
    }

    results, rows = {}, []
    for name in cases:
        s = steady[name]["step_s"]["median"]
        rate = chains * steps / s
        results[name] = {
            "call_s": steady[name]["step_s"],
            "cpu_s": steady[name]["cpu_s"],
            "chain_steps_per_s": rate,
            "compile": compile_times[name],
            "memory": compile_times[name]["memory"],  # XLA buffers of one jitted call
            "quality": quality[name],
        }
        rows.append(
            [
                name,
                fmt_seconds(s),
                fmt_rate(rate),
                fmt_seconds(compile_times[name]["total_s"]["median"]),
                fmt_bytes(compile_times[name]["memory"]["xla_step_bytes"]),
                f"{quality[name]['ksd']:.4f}",
                f"{quality[name]['mmd']:.4f}",
            ]
        )
    ratios = {}
    for kind, field in (("wall", "step_s"), ("cpu", "cpu_s")):
        t = lambda n, field=field: steady[n][field]["median"] if n in steady else None
        if t("ula_handwritten"):
            for n in ("ula_handwritten_fused", "ula_diffrax", "ula_run_chain", "ula_virtual_tree"):
                if t(n):
                    ratios[f"{kind}:{n}/ula_handwritten"] = t(n) / t("ula_handwritten")
        if t("mala_blackjax") and t("mala_flowzoo"):
            ratios[f"{kind}:mala_flowzoo_speedup_vs_blackjax"] = t("mala_blackjax") / t(
                "mala_flowzoo"
            )
        if t("mala_blackjax_fused") and t("mala_flowzoo"):
            ratios[f"{kind}:mala_flowzoo_speedup_vs_blackjax_fused"] = t("mala_blackjax_fused") / t(
                "mala_flowzoo"
            )
        if t("mala_handwritten") and t("mala_flowzoo"):
            ratios[f"{kind}:mala_flowzoo/mala_handwritten"] = t("mala_flowzoo") / t(
                "mala_handwritten"
            )
    print(format_table(["case", "call", "chain-steps/s", "compile", "XLA mem", "KSD", "MMD"], rows))
    print(
        f"exact samples: KSD {quality['exact_samples']['ksd']:.4f}, MMD {quality['exact_samples']['mmd']:.4f}"
    )
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    payload = {
        "benchmark": "langevin",
        "config": {
            "chains": chains,
            "steps_per_call": steps,
            "step_size": h,
            "quality_steps": args.quality_steps,
            "repeats": repeats,
            "quick": args.quick,
            "target": "8-component 2-D Gaussian mixture, radius 2, std 0.5",
        },
        "env": env,
        "load_average_after": load_average(),
        "results": results,
        "exact_samples_quality": quality["exact_samples"],
        "ratios": ratios,
        "timestamp": time.time(),
    }
    print(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
