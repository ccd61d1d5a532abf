"""One velocity network written five ways, trained by flow matching on two moons: test NLL.

The same architecture as a ``flowzoo.nets.time_mlp(2, hidden=(64, 64, 64), embed_dim=32)``
(SiLU) is written with ``flowzoo.nets`` itself and with flax.linen, flax.nnx, Equinox and
Haiku, the last four passed through ``nets.from_linen`` / ``from_nnx`` / ``from_equinox`` /
``from_haiku``. The architecture (``flowzoo/nets/_time.py``): the sinusoidal embedding of
``t`` (``nets.sinusoidal_embedding``, 32 features), then Dense(32) - SiLU - Dense(32); for
each hidden width ``w`` the layer ``h <- silu(Dense(w)(h) + Dense(w, no bias)(emb))``; a
linear output of 2. Every layer starts with flax's default initialisation (LeCun truncated
normal kernels, zero biases), written out where the library's default differs (Equinox's
uniform, Haiku's truncated normal of standard deviation ``1/sqrt(fan_in)`` before truncation),
so the kinds differ only in the library that evaluates them; the parameter counts are checked
equal (16,898). The linen module creates the same flax parameter tree as ``time_mlp``, so the
``linen`` kind starts from, and ends at, the ``nets`` kind's params.

Training, the same for every kind: ``flow_matching.cfm_loss`` on ``paths.cond_ot_path(0)``
(t=0 noise, t=1 data, uniform t) by ``flowzoo.train.fit``: Adam with step size 5e-3 decayed
to 0 by a cosine over the run, batch 256, 1,500 steps (50 per compiled call), on
standardised two moons (``data.toy("two_moons")``, noise 0.05; 4,000 training points from
key 0, 2,000 test points from key 1, both standardised by the training mean and standard
deviation). Seed ``s`` gives the init key ``key(s)`` and the run key ``key(10_000 + s)``
(data order, noise and times), the same for every kind; seeds 0-4. Test NLL (nats,
standardised units) by ``flow_matching.distribution(net, path, (2,)).log_prob``: the exact
divergence, 32 fixed RK4 steps.

Targets (``check``): for each adapter kind, (1) its parameter count equals that of the
``nets`` kind; (2) its mean test NLL over the five seeds lies within [min, max] of the
``nets`` kind's five NLLs (the seed-to-seed spread); (3) resume: seed 0 trained for half the
steps (of the full run's schedule) with ``fit``'s checkpointing
(``train.Checkpointing(workdir)``), then ``fit`` again on the same folder with the full step
count resumes from that checkpoint (its first logged record is past the half), and the final
params equal the uninterrupted seed-0 run's bit for bit.

Quality only (no timings): the wall times in the JSON are for orientation.

Run:  python benchmarks/adapters.py [--seeds 0,1,2,3,4] [--steps 1500] [--quick]
(dm-haiku is optional: without it the haiku row is left out.)
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.adapters
    from benchmarks import _common as common

from flowzoo import checkpoint as ckpt
from flowzoo import data as fzdata
from flowzoo import flow_matching as fm
from flowzoo import nets, paths
from flowzoo.integrate import SolverConfig
from flowzoo.train import Checkpointing, fit

KINDS = ("nets", "linen", "nnx", "equinox", "haiku")
HIDDEN, EMBED, DIM = (64, 64, 64), 32, 2
ACT = jax.nn.silu
TRAIN_N, TEST_N, BATCH, LR, STEPS, STEPS_PER_CALL, RK4_STEPS = 4000, 2000, 256, 5e-3, 1500, 50, 32
PATH = paths.cond_ot_path(0.0)


def _times(t, x):
    """``t`` (scalar in the ODE solver, ``(batch,)`` in the loss) as ``(batch,)`` float32."""
    return jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])


# --------------------------------------------------------------------------- the five networks


class _LinenField(nn.Module):
    """``(t, x) -> (batch, 2)`` in flax.linen (flax's default initialisation)."""

    @nn.compact
    def __call__(self, t, x):
        emb = nets.sinusoidal_embedding(_times(t, x), EMBED)
        emb = nn.Dense(EMBED)(ACT(nn.Dense(EMBED)(emb)))
        h = x
        for width in HIDDEN:
            h = ACT(nn.Dense(width)(h) + nn.Dense(width, use_bias=False)(emb))
        return nn.Dense(DIM)(h)


class _NNXField(nnx.Module):
    """``(t, x) -> (batch, 2)`` in flax.nnx (``nnx.Linear``'s default: flax's initialisation)."""

    def __init__(self, rngs: nnx.Rngs):
        self.emb_in = nnx.Linear(EMBED, EMBED, rngs=rngs)
        self.emb_out = nnx.Linear(EMBED, EMBED, rngs=rngs)
        widths_in = (DIM, *HIDDEN[:-1])
        self.dense = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths_in, HIDDEN, strict=True)]
        )
        self.time = nnx.List([nnx.Linear(EMBED, b, use_bias=False, rngs=rngs) for b in HIDDEN])
        self.out = nnx.Linear(HIDDEN[-1], DIM, rngs=rngs)

    def __call__(self, t, x):
        emb = nets.sinusoidal_embedding(_times(t, x), EMBED)
        emb = self.emb_out(ACT(self.emb_in(emb)))
        h = x
        for dense, time_proj in zip(self.dense, self.time, strict=True):
            h = ACT(dense(h) + time_proj(emb))
        return self.out(h)


@functools.cache
def _equinox_field():
    """The Equinox module class (built on first use: importing this file imports no Equinox)."""
    import equinox as eqx

    lecun = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)  # weight is (out, in)

    def linear(key, n_in, n_out, bias=True):
        k_layer, k_weight = jax.random.split(key)
        layer = eqx.nn.Linear(n_in, n_out, use_bias=bias, key=k_layer)
        layer = eqx.tree_at(lambda m: m.weight, layer, lecun(k_weight, (n_out, n_in)))
        return eqx.tree_at(lambda m: m.bias, layer, jnp.zeros(n_out)) if bias else layer

    class EqxField(eqx.Module):
        emb: tuple
        dense: tuple
        time: tuple
        out: eqx.nn.Linear

        def __init__(self, key):
            keys = list(jax.random.split(key, 3 + 2 * len(HIDDEN)))
            self.emb = (linear(keys.pop(), EMBED, EMBED), linear(keys.pop(), EMBED, EMBED))
            widths_in = (DIM, *HIDDEN[:-1])
            self.dense = tuple(
                linear(keys.pop(), a, b) for a, b in zip(widths_in, HIDDEN, strict=True)
            )
            self.time = tuple(linear(keys.pop(), EMBED, b, bias=False) for b in HIDDEN)
            self.out = linear(keys.pop(), HIDDEN[-1], DIM)

        def __call__(self, t, x):  # Equinox layers take one example: vmap over the batch
            return jax.vmap(self._one)(nets.sinusoidal_embedding(_times(t, x), EMBED), x)

        def _one(self, emb, h):
            emb = self.emb[1](ACT(self.emb[0](emb)))
            for dense, time_proj in zip(self.dense, self.time, strict=True):
                h = ACT(dense(h) + time_proj(emb))
            return self.out(h)

    return EqxField


def _haiku_field(t, x):
    """``(t, x) -> (batch, 2)`` with Haiku modules (LeCun truncated normal, zero biases)."""
    import haiku as hk

    w_init = hk.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")
    emb = nets.sinusoidal_embedding(_times(t, x), EMBED)
    emb = hk.Linear(EMBED, w_init=w_init)(ACT(hk.Linear(EMBED, w_init=w_init)(emb)))
    h = x
    for width in HIDDEN:
        h = ACT(hk.Linear(width, w_init=w_init)(h) + hk.Linear(width, False, w_init=w_init)(emb))
    return hk.Linear(DIM, w_init=w_init)(h)


def available(kind: str) -> bool:
    """Whether the library of ``kind`` imports here (Equinox and Haiku are optional)."""
    needs = {"equinox": "equinox", "haiku": "haiku"}.get(kind)
    return needs is None or common.optional_import(needs) is not None


def network(kind: str) -> nets.Network:
    """The velocity field of ``kind`` as a ``Network``: ``apply(params, t, x) -> (batch, 2)``."""
    if kind == "nets":
        return nets.time_mlp(DIM, HIDDEN, embed_dim=EMBED, activation_fn=ACT)
    if kind == "linen":
        return nets.from_linen(_LinenField())
    if kind == "nnx":
        return nets.from_nnx(_NNXField)
    if kind == "equinox":
        return nets.from_equinox(_equinox_field())
    if kind == "haiku":
        return nets.from_haiku(_haiku_field)
    raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")


# --------------------------------------------------------------------------- training


def moons() -> tuple[jax.Array, jax.Array]:
    """Standardised two moons: ``(train (4000, 2), test (2000, 2))``, fixed for all seeds."""
    train = fzdata.toy("two_moons", jax.random.key(0), TRAIN_N)
    test = fzdata.toy("two_moons", jax.random.key(1), TEST_N)
    s = fzdata.fit_standardizer(train)
    return fzdata.standardize(s, train), fzdata.standardize(s, test)


def param_count(params: Any) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def optimizer(total: int) -> optax.GradientTransformation:
    """Adam with its step size decayed from ``LR`` to 0 over ``total`` steps (cosine)."""
    return optax.adam(optax.cosine_decay_schedule(LR, total))


def train(net: nets.Network, seed: int, train_x, steps: int, total: int, workdir=None):
    """``fit`` of the CFM loss from seed ``seed``'s init up to step ``steps`` of a ``total``-step
    schedule; a ``FitResult``."""
    params = net.init(jax.random.key(seed), jnp.zeros(BATCH), train_x[:BATCH])
    return fit(
        fm.cfm_loss(net.apply, PATH),
        optimizer(total),
        params,
        fzdata.array_batches(train_x, BATCH),
        key=jax.random.key(10_000 + seed),
        num_steps=steps,
        steps_per_call=STEPS_PER_CALL,
        checkpointing=Checkpointing(workdir),
        progress=False,
    )


def resume(net: nets.Network, train_x, steps: int, uninterrupted) -> dict[str, Any]:
    """Seed 0 trained to ``steps // 2`` into a folder, then ``fit`` to ``steps`` on it."""
    half = steps // 2
    with tempfile.TemporaryDirectory() as workdir:
        train(net, 0, train_x, half, steps, workdir)
        saved = ckpt.latest_step(Path(workdir) / "checkpoints")
        resumed = train(net, 0, train_x, steps, steps, workdir)
    same_tree = jax.tree.structure(resumed.state.params) == jax.tree.structure(uninterrupted)
    pairs = zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(uninterrupted), strict=True)
    pairs = list(pairs) if same_tree else []
    first_logged = resumed.history[0]["step"] if resumed.history else None
    return {
        "checkpoint_step": saved,
        "first_logged_step": first_logged,
        "resumed": saved == half and first_logged is not None and first_logged > half,
        "final_step": int(resumed.state.step),
        "same_tree": same_tree,
        "max_abs_diff": max(float(jnp.max(jnp.abs(x - y))) for x, y in pairs) if pairs else None,
        "bit_exact": same_tree and all(np.array_equal(x, y) for x, y in pairs),
    }


def run_kind(kind: str, seeds: list[int], steps: int, train_x, test_x) -> dict[str, Any]:
    """Train ``kind`` from every seed; test NLLs, parameter count and the resume record."""
    net = network(kind)
    dist = fm.distribution(net, PATH, (DIM,), log_prob_solver=SolverConfig("rk4", RK4_STEPS))
    log_prob = jax.jit(dist.log_prob)
    out: dict[str, Any] = {"nll": [], "train_wall_s": [], "final_loss": []}
    first = None
    for seed in seeds:
        t0 = time.perf_counter()
        result = train(net, seed, train_x, steps, steps)
        out["train_wall_s"].append(time.perf_counter() - t0)
        out["final_loss"].append(result.history[-1]["loss"])
        out["nll"].append(float(-jnp.mean(log_prob(result.state.params, test_x))))
        first = result.state.params if first is None else first
        print(f"{kind} seed {seed}: test NLL {out['nll'][-1]:.4f}", flush=True)
    out["params"] = param_count(first)
    out.update(mean=float(np.mean(out["nll"])), min=min(out["nll"]), max=max(out["nll"]))
    out["resume"] = resume(net, train_x, steps, first) if seeds[0] == 0 else None
    print(f"{kind}: {out['params']} params, resume {out['resume']}", flush=True)
    return out


# --------------------------------------------------------------------------- targets and table


def check(d: dict) -> list[dict[str, Any]]:
    """Per adapter kind: parameter count equal to ``nets``', mean NLL within the ``nets``
    seeds' [min, max], resumed params equal to the uninterrupted run's (bit for bit)."""
    res, out = d["results"], []
    ref = res["nets"]
    for kind, r in res.items():
        if kind == "nets" or r is None:
            continue
        out.append(
            {
                "what": f"{kind}: parameter count",
                "value": r["params"],
                "target": f"== {ref['params']} (nets)",
                "met": r["params"] == ref["params"],
            }
        )
        out.append(
            {
                "what": f"{kind}: mean test NLL over {len(r['nll'])} seeds",
                "value": r["mean"],
                "target": f"in [{ref['min']:.4f}, {ref['max']:.4f}] (nets' seeds)",
                "met": ref["min"] <= r["mean"] <= ref["max"],
            }
        )
        if r.get("resume") is not None:
            out.append(
                {
                    "what": f"{kind}: resumed from step {r['resume']['checkpoint_step']}",
                    "value": r["resume"]["max_abs_diff"],
                    "target": "resumed; params == uninterrupted run's, bit for bit",
                    "met": bool(r["resume"]["resumed"] and r["resume"]["bit_exact"]),
                }
            )
    return out


def _resume_cell(rz: dict | None) -> str | None:
    if rz is None:
        return None
    if not rz["resumed"]:
        return "**not resumed**"
    return "bit-exact" if rz["bit_exact"] else f"**max diff {rz['max_abs_diff']:.2g}**"


def render(d: dict) -> str:
    """The table: per kind its parameter count, test NLL (mean, min, max, per seed), whether
    the mean lies in the ``nets`` seeds' range, and the resume check."""
    res, c = d["results"], d.get("config", {})
    ref = res["nets"]
    rows = []
    for kind, r in res.items():
        if r is None:
            rows.append([f"`{kind}`", None, None, None, None, "not installed", None])
            continue
        inside = (
            "reference" if kind == "nets" else common.fmt_met(ref["min"] <= r["mean"] <= ref["max"])
        )
        rows.append(
            [
                f"`{kind}`",
                f"{r['params']:,}",
                f"{r['mean']:.4f}",
                f"{r['min']:.4f} - {r['max']:.4f}",
                ", ".join(f"{v:.3f}" for v in r["nll"]),
                inside,
                _resume_cell(r.get("resume")),
            ]
        )
    head = ["network", "params", "test NLL mean", "min - max", "per seed", "mean in nets' range"]
    return (
        f"CFM (OT path) on standardised two moons, {c.get('steps')} steps of Adam "
        f"({c.get('lr')}, cosine decay to 0), batch {c.get('batch')}, seeds {c.get('seeds')}; test NLL in nats "
        f"({c.get('test_n')} points, exact divergence, {c.get('rk4_steps')} RK4 steps). "
        f"Resume: {c.get('steps', 0) // 2} steps into a checkpoint folder, then `fit` to "
        f"{c.get('steps')} on it, against the uninterrupted seed-0 run.\n\n"
        + common.md_table([*head, "resume"], rows)
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--quick", action="store_true", help="smoke run: seeds 0,1, 200 steps")
    ap.add_argument("--out", default="benchmarks/results/adapters.json")
    cfg = ap.parse_args(argv)
    seeds = [0, 1] if cfg.quick else [int(s) for s in cfg.seeds.split(",")]
    steps = 200 if cfg.quick else cfg.steps
    if steps % (2 * STEPS_PER_CALL):
        raise SystemExit(f"--steps must be a multiple of {2 * STEPS_PER_CALL}")
    env = common.env_info(packages=("equinox", "dm-haiku"))
    train_x, test_x = moons()
    t0 = time.perf_counter()
    results = {
        kind: run_kind(kind, seeds, steps, train_x, test_x) if available(kind) else None
        for kind in KINDS
    }
    d = {
        "benchmark": "adapters",
        "env": env,
        "load_average_after": common.load_average(),
        "wall_s": time.perf_counter() - t0,
        "config": {
            "hidden": HIDDEN,
            "embed_dim": EMBED,
            "activation": "silu",
            "train_n": TRAIN_N,
            "test_n": TEST_N,
            "batch": BATCH,
            "lr": LR,
            "schedule": "cosine decay to 0 over the steps",
            "steps": steps,
            "steps_per_call": STEPS_PER_CALL,
            "rk4_steps": RK4_STEPS,
            "seeds": seeds,
            "quick": cfg.quick,
        },
        "results": results,
    }
    d["checks"] = check(d)
    common.write_json(cfg.out, d)
    print(render(d))
    for c in d["checks"]:
        print(f"{'met' if c['met'] else 'MISSED'}: {c['what']} = {c['value']} ({c['target']})")


if __name__ == "__main__":
    main()
