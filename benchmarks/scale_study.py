"""Which coupling scale function, orientation and conditioner init should be the default?

Every cell trains ``flowzoo.realnvp(dim, 8, (64, 64), transformer=affine_transformer(scale,
bound, orientation=...), conditioner=mlp_conditioner((64, 64), "relu", init=...))``
(alternating half masks, zero output layer) with plain Adam(1e-3), batch 256, for
``--steps`` steps (default 3,000; the same minibatch indices for every configuration), then
reports the test NLL and the largest jump between consecutive 100-step means of the
training loss (a loss-spike check). A reference row trains flowjax's ``coupling_flow`` (8
layers, ``nn_width=64, nn_depth=2``, its default softplus affine) on the same data and
minibatches, when flowjax is installed.

Configurations are ``SCALE/ORIENTATION/INIT`` with an optional ``/ACTIVATION`` of the
conditioner's hidden layers (``relu``, flowjax's and flowzoo's default, unless named):

* scale (the log-scale ``log s`` from the conditioner output ``h``): ``tanh-B``: ``B tanh(h /
  B)`` for B in 1, 2, 3; ``sigmoid``: Glow's ``sigmoid(h + 2)`` normalised to 1 at 0;
  ``softplus``: ``log softplus(h + log(e - 1))`` (flowjax's affine scale); ``exp``:
  unbounded ``log s = h``.
* orientation: ``density`` (the density direction computes ``x * s + t``: RealNVP, Glow,
  flowjax) or ``sampling`` (sampling computes ``z * s + t``, the density direction divides
  by ``s``: flowzoo's affine couplings until 2026-11-30).
* init of the conditioner's hidden layers: ``uniform`` (weights and biases uniform on
  ``+-1/sqrt(fan_in)``, PyTorch's and equinox's default) or ``lecun`` (flax's default:
  truncated-normal weights, zero biases).

Data (standardised with the training split's statistics): two moons (noise 0.05), FFJORD's
eight Gaussians and checkerboard (20,000 train / 5,000 test points each), and scikit-learn's
8x8 digits as 64-D vectors (grey levels / 16 plus uniform dequantization noise / 16; the
fixed 1,497 / 300 split). NLL in nats per example (digits: per image).

Run:  python benchmarks/scale_study.py [--seeds 0,1,2,3,4] [--steps 3000] [--data ...]
      [--configs ...] [--quick]
Writes benchmarks/results/scale_study.json and prints the table (mean and worst seed).
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
from flowzoo import bijectors as bj
from flowzoo import data as fzdata

# the peer, imported on first use: importing this module to render its docs table needs none
fj_flows = common.LazyImport("flowjax.flows")
fj_dists = common.LazyImport("flowjax.distributions")

SCALES = {
    "tanh-1": ("tanh", 1.0),
    "tanh-2": ("tanh", 2.0),
    "tanh-3": ("tanh", 3.0),
    "sigmoid": ("sigmoid", 2.0),
    "softplus": ("softplus", 2.0),
    "exp": ("exp", 2.0),
}
CONFIGS = (
    "tanh-2/sampling/lecun",  # the default until 2026-11-30
    "tanh-1/sampling/lecun",
    "tanh-2/sampling/uniform",
    "tanh-2/density/lecun",
    "tanh-1/density/uniform",
    "tanh-2/density/uniform",
    "tanh-3/density/uniform",
    "sigmoid/density/uniform",
    "softplus/density/uniform",
    "exp/density/uniform",
)
FLOWJAX = "flowjax"
DATA = ("two_moons", "eight_gaussians", "checkerboard", "digits")
LAYERS, HIDDEN, LR, BATCH = 8, (64, 64), 1e-3, 256


def dataset(name: str, seed: int):
    if name == "digits":
        img = fzdata.image_dataset("digits")
        rng = np.random.default_rng(seed)
        tr = (img.train.reshape(len(img.train), -1) + rng.random((len(img.train), 64))) / 16
        te = (img.test.reshape(len(img.test), -1) + rng.random((len(img.test), 64))) / 16
    else:
        k1, k2 = jax.random.split(jax.random.key(1000 + seed))
        tr, te = fzdata.toy(name, k1, 20_000), fzdata.toy(name, k2, 5_000)
    tr, te = np.asarray(tr, np.float32), np.asarray(te, np.float32)
    mu, sd = tr.mean(0), tr.std(0) + 1e-6
    return jnp.asarray((tr - mu) / sd), jnp.asarray((te - mu) / sd)


def build(dim: int, config: str):
    """The flowzoo flow of one ``SCALE/ORIENTATION/INIT[/ACTIVATION]`` configuration (the
    conditioner's activation: ``relu`` unless named)."""
    scale_name, orientation, init, *act = config.split("/")
    scale, bound = SCALES[scale_name]
    return flowzoo.realnvp(
        dim,
        LAYERS,
        HIDDEN,
        transformer=bj.affine_transformer(scale, bound, orientation=orientation),
        conditioner=bj.mlp_conditioner(HIDDEN, act[0] if act else "relu", init=init),
    )


def flowjax_loss(dim: int, seed: int):
    """``(loss(params, x), params)`` of flowjax's coupling_flow with the same architecture."""
    flow = fj_flows.coupling_flow(
        jax.random.key(seed),
        base_dist=fj_dists.StandardNormal((dim,)),
        flow_layers=LAYERS,
        nn_width=HIDDEN[0],
        nn_depth=len(HIDDEN),
    )
    params, log_prob = common.flowjax_trainable(flow)

    def loss(p, x):
        return -jnp.mean(log_prob(p, x))

    return loss, params


def train(name: str, config: str, seed: int, steps: int) -> dict:
    train_x, test_x = dataset(name, seed)
    if config == FLOWJAX:
        loss, params = flowjax_loss(train_x.shape[1], seed)
    else:
        flow = build(train_x.shape[1], config)
        params = flow.init(jax.random.key(seed), train_x[:BATCH])

        def loss(p, x):
            return -jnp.mean(flow.log_prob(p, x))

    opt = optax.adam(LR)
    idx = jax.random.randint(jax.random.key(10_000 + seed), (steps, BATCH), 0, len(train_x))

    def step(carry, i):
        p, s = carry
        value, grads = jax.value_and_grad(loss)(p, train_x[i])
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    t0 = time.perf_counter()
    (params, _), losses = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), idx))(
        params, opt.init(params)
    )
    losses = np.asarray(losses)
    nll = float(jax.jit(loss)(params, test_x))
    means = losses[: steps // 100 * 100].reshape(-1, 100).mean(1)
    return {
        "test_nll": nll if np.isfinite(nll) else None,
        "max_loss_jump_100": float(np.max(np.diff(means))) if means.size > 1 else None,
        "finite": bool(np.all(np.isfinite(losses))),
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- docs table


def render(d: dict) -> str:
    """The docs block of ``scale_study``: test NLL per configuration and data set (mean / worst
    seed), the largest loss rise, and per seed on two moons when there are at most 10 seeds."""
    res = d["results"]
    data = list(res)
    kinds = list(res[data[0]])
    rows = []
    for kind in kinds:
        row = [f"`{kind}`"]
        jumps = []
        for name in data:
            cells = res[name].get(kind, [])
            nll = [c["test_nll"] for c in cells if c.get("test_nll") is not None]
            bad = len(cells) - len(nll)
            txt = f"{np.mean(nll):.3f} / {max(nll):.3f}" if nll else "-"
            if bad:
                txt += f", {bad} of {len(cells)} non-finite"
            row.append(txt)
            if name != "digits":
                jumps += [c["max_loss_jump_100"] for c in cells if c.get("finite")]
        row.append(f"{max(jumps):.3f}" if jumps else "-")
        rows.append(row)
    c = d.get("config", {})
    out = (
        f"Test NLL in nats, mean / worst of seeds {c.get('seeds')}, {c.get('steps')} steps; "
        "the last column is the largest rise between consecutive 100-step means of the "
        "training loss over the 2-D sets' finite runs (a spike check).\n\n"
        + common.md_table(["scale / orientation / init", *data, "largest loss rise"], rows)
    )
    moons = res.get("two_moons")
    seeds = c.get("seeds") or list(range(len(next(iter(moons.values()))))) if moons else []
    if moons and len(seeds) <= 10:
        per_seed = []
        for kind, cells in moons.items():
            vals = [x["test_nll"] for x in cells]
            per_seed.append([f"`{kind}`"] + [f"{v:.3f}" if v is not None else "-" for v in vals])
        out += "\n\nTwo moons, test NLL per seed:\n\n" + common.md_table(
            ["scale / orientation / init", *[f"seed {s}" for s in seeds]], per_seed
        )
    return out


def _versus_flowjax(res: dict, seeds: list | None) -> str:
    """Seed-by-seed differences of test NLL from flowjax's (same data and minibatches per seed,
    different initial weights): mean, its standard error, and the seeds where flowzoo is
    ahead or level (within 0.005 nats)."""
    rows = []
    for name, cells_by_kind in res.items():
        ref = [c.get("test_nll") for c in cells_by_kind["flowjax"]]
        for kind, cells in cells_by_kind.items():
            if kind == "flowjax":
                continue
            diff = np.array(
                [
                    c["test_nll"] - r
                    for c, r in zip(cells, ref, strict=True)
                    if c.get("test_nll") is not None and r is not None
                ]
            )
            if diff.size < 2:
                continue
            se = diff.std(ddof=1) / np.sqrt(diff.size)
            rows.append(
                [
                    name,
                    f"`{kind}`",
                    f"{diff.mean():+.4f} ± {se:.4f}",
                    f"{int(np.sum(diff <= 0.005))} of {diff.size}",
                    f"{diff.max():+.3f}",
                ]
            )
    return (
        f"Against flowjax, seed by seed ({len(seeds or [])} seeds: the same data and minibatches, "
        "different initial weights): flowzoo's test NLL minus flowjax's, mean ± standard "
        "error (negative: flowzoo lower), the seeds where flowzoo is ahead or within 0.005 "
        "nats, and the largest shortfall.\n\n"
        + common.md_table(
            ["data", "flowzoo configuration", "NLL - flowjax", "seeds ahead or level", "worst"],
            rows,
        )
    )


def render_moons_seeds(d: dict) -> str:
    """The docs block of ``moons_seeds`` (this script over 20 two-moons seeds, with flowjax):
    the scale study's mean / worst table, then the seed-by-seed comparison with flowjax."""
    out = render(d)
    if "flowjax" in next(iter(d["results"].values())):
        out += "\n\n" + _versus_flowjax(d["results"], d.get("config", {}).get("seeds"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--data", default=",".join(DATA))
    ap.add_argument(
        "--configs",
        default=",".join(CONFIGS + ((FLOWJAX,) if common.have_flowjax() else ())),
        help="SCALE/ORIENTATION/INIT entries, and 'flowjax' for the peer",
    )
    ap.add_argument(
        "--with-flowjax", action="store_true", help="add the flowjax row (when installed)"
    )
    ap.add_argument("--out", default="benchmarks/results/scale_study.json")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: seed 0, 200 steps, two moons, 2 configs"
    )
    cfg = ap.parse_args(argv)
    if cfg.quick:
        cfg.seeds, cfg.steps, cfg.data = "0", 200, "two_moons"
        cfg.configs = "tanh-2/sampling/lecun,tanh-2/density/uniform"
    if cfg.with_flowjax and common.have_flowjax() and FLOWJAX not in cfg.configs.split(","):
        cfg.configs += "," + FLOWJAX
    seeds = [int(s) for s in cfg.seeds.split(",")]
    env = common.env_info(packages=("flowjax",) if common.have_flowjax() else ())
    results: dict = {}
    for name in cfg.data.split(","):
        for kind in cfg.configs.split(","):
            cells = [train(name, kind, seed, cfg.steps) for seed in seeds]
            results.setdefault(name, {})[kind] = cells
            nll = [c["test_nll"] for c in cells]
            ok = [v for v in nll if v is not None]
            print(
                f"{name:16s} {kind:25s} mean {np.mean(ok) if ok else float('nan'):.3f} "
                f"worst {max(ok) if ok else float('nan'):.3f} diverged {len(nll) - len(ok)} "
                f"max jump {max(c['max_loss_jump_100'] or 0 for c in cells):.3f}",
                flush=True,
            )
    common.write_json(
        cfg.out,
        {
            "benchmark": "scale_study",
            "env": env,
            "load_average_after": common.load_average(),
            "config": {
                "layers": LAYERS,
                "hidden": HIDDEN,
                "lr": LR,
                "batch": BATCH,
                "steps": cfg.steps,
                "seeds": seeds,
                "quick": cfg.quick,
            },
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
