"""Dropout masks: flowzoo's fused Threefry dropout against ``jax.random.bernoulli``'s.

``flowzoo.nets.dropout`` (and ``nets.Dropout``, which the UNets use) hashes a counter per
element with Threefry-2x32 written out round by round, so XLA fuses the draw with the
compare and the select; ``flax.linen.Dropout`` draws through ``jax.random.bernoulli``, whose
Threefry JAX lowers on CPU as a rolled loop over the whole array. Two measurements:

* ``masks``: one jitted program applying dropout (rate 0.1) to the inputs of every dropout
  layer of the ``fm_cifar10`` UNet at the given batch (the shapes are read from the network,
  not listed by hand), with each of: ``flowzoo`` (``nets.dropout``), ``flax``
  (``flax.linen.Dropout``'s draw) and, as the peer, torch's ``F.dropout`` on the same shapes
  (torch on ``--torch-threads`` threads), and ``scale`` (the same arrays multiplied by a
  constant: the memory traffic any dropout needs).
* ``step``: the ``fm_cifar10`` train step (float32, full-precision matmuls) with the UNet's
  dropout layers as shipped (``nets.Dropout``) and with ``flax.linen.Dropout`` swapped in
  (the only difference between the two programs), timed in interleaved rounds.

Times are medians over interleaved blocks (``_common.interleaved_steady``); the process
starts on the allocator the ``flowzoo`` command would use (``flowzoo.malloc``).

Run ``python benchmarks/dropout.py [--quick] [--batch 8] [--torch-threads 2] [--no-step]``
(about 5 minutes on 2 cores; ``--quick``: a small UNet, a smoke run); writes
``benchmarks/results/dropout.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.dropout
    from benchmarks import _common as common

HERE = Path(__file__).resolve().parent
RATE = 0.1
# the module whose global name ``Dropout`` the ADM UNet's residual blocks instantiate: the
# step comparison swaps flax's class in there and nowhere else
UNET_MODULE = "flowzoo.nets._adm_unet"


def dropout_shapes(cfg: dict[str, Any], batch: int) -> list[tuple[int, ...]]:
    """The input shapes of every dropout layer of ``cfg``'s UNet at ``batch`` (traced)."""
    from flowzoo import nets, zoo

    A = common.accelerator()
    shapes: list[tuple[int, ...]] = []

    class Recording(nets.Dropout):
        def __call__(self, x, deterministic=None):
            shapes.append(tuple(x.shape))
            return super().__call__(x, deterministic)

    net = zoo.cfm_network(cfg["model"], A.SHAPE)
    x = jnp.zeros((batch, *A.SHAPE))
    params = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((batch,)), x)
    with mock.patch(f"{UNET_MODULE}.Dropout", Recording):
        jax.eval_shape(lambda p: net.apply(p, 0.5, x, rng=jax.random.key(1)), params)
    return shapes


def mask_cases(shapes, torch_threads: int | None) -> dict[str, tuple]:
    """``name -> (step, carry)`` for :func:`_common.interleaved_steady`."""
    from flowzoo import nets
    from flowzoo.train import jit

    xs = [jnp.ones(s, jnp.float32) for s in shapes]

    def flowzoo_masks(key, xs):
        return [nets.dropout(jax.random.fold_in(key, i), RATE, x) for i, x in enumerate(xs)]

    def flax_masks(key, xs):
        layer = nn.Dropout(RATE, deterministic=False)
        return [
            layer.apply({}, x, rngs={"dropout": jax.random.fold_in(key, i)})
            for i, x in enumerate(xs)
        ]

    def scale(key, xs):
        return [x * (1.0 / (1.0 - RATE)) for x in xs]

    cases = {}
    for name, fn in (("flowzoo", flowzoo_masks), ("flax", flax_masks), ("scale", scale)):
        compiled = jit(fn).lower(jax.random.key(0), xs).compile()

        def step(carry, compiled=compiled):
            key, _ = carry
            return jax.random.fold_in(key, 1), compiled(key, xs)

        cases[name] = (step, (jax.random.key(0), None))
    if torch_threads:
        torch = common.LazyImport("torch")
        torch.set_num_threads(torch_threads)
        txs = [torch.ones(s) for s in shapes]

        def torch_step(carry):
            for x in txs:
                torch.nn.functional.dropout(x, RATE, training=True)
            return carry

        cases["torch"] = (torch_step, common.Ready())
    return cases


def step_cases(cfg: dict[str, Any], batch: int) -> tuple[dict[str, tuple], dict[str, Any]]:
    """The train step with the UNet's dropout layers as shipped and with flax's."""
    variants = {"flowzoo": {}, "flax": {f"{UNET_MODULE}.Dropout": nn.Dropout}}
    return common.patched_train_steps(cfg, batch, variants)


def render(d: dict[str, Any]) -> str:
    """The docs tables (renders the JSON; imports nothing)."""
    import _common as common

    c = d["config"]
    m = d["masks"]
    rows = [
        [name, common.fmt_seconds(r["step_s"]["median"]), common.fmt_x(d["mask_ratios"].get(name))]
        for name, r in m.items()
    ]
    out = [
        f"Dropout (rate {RATE}) on the inputs of the {c['layers']} dropout layers of the "
        f"`fm_cifar10` UNet at batch {c['batch']} ({c['elements']:,} elements), one call:",
        "",
        common.md_table(["draw", "time", "time / flowzoo's"], rows),
        "",
        "`scale`: the same arrays multiplied by a constant (the memory traffic of any "
        "dropout). Ratios are medians over interleaved rounds.",
    ]
    if d.get("step"):
        s = d["step"]
        rows = [
            [name, common.fmt_seconds(r["step_s"]["median"]), common.fmt_seconds(r["compile_s"])]
            for name, r in s["rounds"].items()
        ]
        out += [
            "",
            f"The `fm_cifar10` train step at batch {c['batch']} (float32) with the UNet's "
            "dropout layers as shipped and with `flax.linen.Dropout` in their place:",
            "",
            common.md_table(["dropout", "step", "compile"], rows),
            "",
            f"flax's step takes {common.fmt_rounds(s['flax_over_flowzoo'])} the time of "
            "flowzoo's (median and interquartile range over interleaved rounds).",
        ]
    return "\n".join(out)


def parse(argv):
    return common.unet_variant_args(
        argv, __doc__, HERE / "results" / "dropout.json", "the masks only"
    )


def main(argv=None) -> dict[str, Any]:
    from flowzoo import malloc

    malloc.relaunch([__file__, *(argv if argv is not None else sys.argv[1:])])
    args = parse(argv)
    A = common.accelerator()
    quick = [o for o in A.QUICK_FM if not o.startswith("model.dropout")]
    overrides = [f"train.batch_size={args.batch}", "train.compute_dtype=float32"]
    overrides += [*quick, f"model.dropout={RATE}"] if args.quick else []
    cfg = A.recipe("fm_cifar10", overrides)
    shapes = dropout_shapes(cfg, args.batch)
    threads = (
        None if args.no_torch or common.optional_import("torch") is None else args.torch_threads
    )
    masks = common.interleaved_steady(mask_cases(shapes, threads), repeats=args.repeats)
    d: dict[str, Any] = {
        "env": common.env_info(["jax", "jaxlib", "flax", "torch"]),
        "config": {
            "batch": args.batch,
            "quick": args.quick,
            "layers": len(shapes),
            "shapes": shapes,
            "elements": sum(int(jnp.prod(jnp.asarray(s))) for s in shapes),
            "torch_threads": threads,
            "repeats": args.repeats,
            "allocator": malloc.loaded_allocator(),
        },
        "masks": masks,
        "mask_ratios": {
            n: (common.rounds_ratio(masks, n, "flowzoo") or {}).get("median") for n in masks
        },
    }
    if not args.no_step:
        cases, records = step_cases(cfg, args.batch)
        rounds = common.interleaved_steady(cases, repeats=args.repeats)
        for name in rounds:
            rounds[name]["compile_s"] = records[name]["compile_s"]
        d["step"] = {
            "rounds": rounds,
            "flax_over_flowzoo": common.rounds_ratio(rounds, "flax", "flowzoo"),
        }
    common.write_json(args.out, d)
    print(render(d))
    return d


if __name__ == "__main__":
    main()
