"""Spline coupling flow on two moons: test NLL and step time, flowzoo vs flowjax.

The model, the same in both libraries: 8 rational-quadratic spline couplings (8 bins on
``[-4, 4]``, identity tails; Durkan et al. 2019) with 2x64 ReLU MLP conditioners on
standardised two moons (noise 0.05; 20,000 training points, 5,000 held out). Adam(1e-3),
batch 256, 3,000 steps, the same minibatch indices for both; flowzoo's affine RealNVP with
library defaults is trained beside them as the baseline.

* flowzoo: ``realnvp(2, 8, (64, 64), transformer="spline")`` (alternating half masks).
* flowjax: ``coupling_flow(key, base_dist=Normal(zeros(2)), transformer=
  RationalQuadraticSpline(knots=8, interval=4), flow_layers=8, nn_width=64, nn_depth=2)``
  (random permutations between layers), trained on its ``eqx.is_inexact_array`` leaves.

Reported per seed: test NLL in nats (the data's differential entropy, about 1.09 nats, is a
lower bound), the largest training-loss jump between consecutive 100-step means (a spike
check), and the steady-state step time of the two spline flows, timed in interleaved blocks
(:func:`_common.interleaved_steady`) with XLA's memory analysis of each compiled step
(:func:`_common.memory`); the JSON records the load average.

Run:  python benchmarks/spline_moons.py [--seeds 0,1,2] [--steps 3000] [--quick]
"""

from __future__ import annotations

import argparse
import time

import _common as common
import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowzoo
from flowzoo.data import two_moons

# the peer, imported on first use: importing this module to render its docs table needs none
fj_flows = common.LazyImport("flowjax.flows")
fj_dists = common.LazyImport("flowjax.distributions")
fj_bij = common.LazyImport("flowjax.bijections")

LAYERS, HIDDEN, BINS, BOUND, LR, BATCH = 8, (64, 64), 8, 4.0, 1e-3, 256


def moons(seed: int):
    k1, k2 = jax.random.split(jax.random.key(1000 + seed))
    train, test = two_moons(k1, 20_000), two_moons(k2, 5_000)
    mu, sd = train.mean(0), train.std(0)
    return (train - mu) / sd, (test - mu) / sd


def flowzoo_model(kind: str):
    flow = flowzoo.realnvp(2, LAYERS, HIDDEN, transformer=kind)
    return flow.init, flow.log_prob


def flowjax_model():
    def init(key, x):
        flow = fj_flows.coupling_flow(
            key,
            base_dist=fj_dists.Normal(jnp.zeros(2)),
            transformer=fj_bij.RationalQuadraticSpline(knots=BINS, interval=BOUND),
            flow_layers=LAYERS,
            nn_width=HIDDEN[0],
            nn_depth=len(HIDDEN),
        )
        params, init.log_prob = common.flowjax_trainable(flow)
        return params

    def log_prob(params, x):
        return init.log_prob(params, x)

    return init, log_prob


def make_step(log_prob, opt):
    def loss(p, x):
        return -jnp.mean(log_prob(p, x))

    def step(carry, x):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss)(params, x)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    return step


def train(model, seed: int, steps: int):
    """Test NLL and the loss curve after ``steps`` Adam steps (one scan, one compile)."""
    init, log_prob = model
    train_x, test_x = moons(seed)
    params = init(jax.random.key(seed), train_x[:BATCH])
    opt = optax.adam(LR)
    step = make_step(log_prob, opt)
    idx = jax.random.randint(jax.random.key(10_000 + seed), (steps, BATCH), 0, len(train_x))

    @jax.jit
    def run(params, opt_state):
        return jax.lax.scan(lambda c, i: step(c, train_x[i]), (params, opt_state), idx)

    t0 = time.perf_counter()
    (params, _), losses = jax.block_until_ready(run(params, opt.init(params)))
    wall = time.perf_counter() - t0
    nll = float(-jnp.mean(jax.jit(log_prob)(params, test_x)))
    means = np.asarray(losses).reshape(-1, 100).mean(1) if steps % 100 == 0 else np.asarray([])
    spike = float(np.max(np.diff(means))) if means.size > 1 else None
    return {"test_nll": nll, "max_loss_jump_100": spike, "train_wall_s": wall}


def step_times(repeats: int) -> dict:
    cases, memory = {}, {}
    x = moons(0)[0][:BATCH]
    models = {"flowzoo_spline": flowzoo_model("spline"), "flowjax_spline": flowjax_model()}
    for name, (init, log_prob) in models.items():
        opt = optax.adam(LR)
        params = init(jax.random.key(0), x)
        step = jax.jit(make_step(log_prob, opt))
        carry = (params, opt.init(params))
        memory[name] = common.step_memory(step, carry, x)
        cases[name] = (lambda c, s=step: s(c, x)[0], carry)
    out = common.interleaved_steady(cases, repeats=repeats)
    for name, mem in memory.items():
        out[name]["memory"] = mem  # XLA buffers of the jitted train step
    return out


# --------------------------------------------------------------------------- docs table


def render(d: dict) -> str:
    """The docs block: test NLL (mean, worst seed), step time and memory per model, and the speed-
    up."""
    rows = []
    timing = d.get("step_time") or {}
    for name, per_seed in d["quality"].items():
        nll = [v["test_nll"] for v in per_seed.values() if v.get("test_nll") is not None]
        t = timing.get(name)
        rows.append(
            [
                f"`{name}`",
                len(per_seed),
                f"{np.mean(nll):.3f}" if nll else None,
                f"{max(nll):.3f}" if nll else None,
                common.fmt_seconds(common.dig(t, "step_s", "median")),
                common.fmt_mem(t),
            ]
        )
    fz, fj = (
        common.dig(timing, "flowzoo_spline", "step_s"),
        common.dig(timing, "flowjax_spline", "step_s"),
    )
    tail = ""
    if fz and fj:
        pairs = [b / a for a, b in zip(fz["values"], fj["values"], strict=True)]
        s = common.summarize(pairs)
        tail = f"\n\nflowzoo / flowjax spline step speed-up: {common.fmt_rounds(s)} (median of rounds, IQR)."
    c = d.get("config", {})
    return (
        f"{c.get('steps')} steps, batch {c.get('batch')}; test NLL in nats (mean and worst "
        "seed); train-step time and memory of the spline flows.\n\n"
        + common.md_table(["model", "seeds", "test NLL", "worst", "step", "memory"], rows)
        + tail
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="one seed, 300 steps, 3 repeats")
    ap.add_argument("--out", default="benchmarks/results/spline_moons.json")
    cfg = ap.parse_args(argv)
    seeds = [0] if cfg.quick else [int(s) for s in cfg.seeds.split(",")]
    steps, repeats = (300, 3) if cfg.quick else (cfg.steps, cfg.repeats)
    have_peer = bool(fj_flows and fj_bij)
    env = common.env_info(packages=("flowjax", "equinox", "paramax"))
    models = {"flowzoo_spline": lambda: flowzoo_model("spline")}
    models["flowzoo_affine"] = lambda: flowzoo_model("affine")
    if have_peer:
        models["flowjax_spline"] = flowjax_model
    quality = {name: {} for name in models}
    for seed in seeds:
        for name, make in models.items():
            quality[name][seed] = train(make(), seed, steps)
            print(f"seed {seed} {name}: {quality[name][seed]}", flush=True)
    timing = step_times(repeats) if have_peer else None
    rows = [[name, *[f"{quality[name][s]['test_nll']:.3f}" for s in seeds]] for name in quality]
    print(common.format_table(["model", *[f"seed {s} NLL" for s in seeds]], rows))
    if timing:
        fz, fj = timing["flowzoo_spline"]["step_s"], timing["flowjax_spline"]["step_s"]
        print(
            f"step time: flowzoo {fz['median'] * 1e3:.2f} ms, flowjax {fj['median'] * 1e3:.2f} ms, "
            f"speed-up {fj['median'] / fz['median']:.2f}x"
        )
    env_after = common.load_average()
    common.write_json(
        cfg.out,
        {
            "benchmark": "spline_moons",
            "env": env,
            "load_average_after": env_after,
            "config": {
                "layers": LAYERS,
                "hidden": HIDDEN,
                "bins": BINS,
                "bound": BOUND,
                "lr": LR,
                "batch": BATCH,
                "steps": steps,
                "seeds": seeds,
                "quick": cfg.quick,
            },
            "quality": quality,
            "step_time": timing,
        },
    )


if __name__ == "__main__":
    main()
