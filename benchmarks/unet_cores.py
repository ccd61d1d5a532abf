"""The CIFAR-10 UNet's forward and backward pass on one core and on two, against torchcfm's.

``benchmarks/accelerator.py`` finds flowzoo's ``fm_cifar10`` train step slightly slower than
torchcfm's on 2 CPU cores, the difference lying in the backward pass. This script asks
whether that difference is in the work itself or in how the work spreads over the cores. It
runs one child process per core count (``--cores``, default ``1,2``), each pinned to that
many cores before JAX or torch start (``os.sched_setaffinity``; XLA sizes its thread pool
from the affinity, torch gets as many threads), and in each child times, in interleaved
rounds (``_common.interleaved_steady``):

* ``fwd+bwd``: the UNet's forward pass and its vector-Jacobian product with respect to the
  parameters (``jax.vjp`` of ``apply`` under ``flowzoo.train.jit``; torch: ``backward``
  from fresh gradients), dropout on, one new key per call;
* ``forward``: the forward pass alone (dropout on);
* ``transposes``: three elementwise programs on one activation of the UNet's first level
  (``(batch, 32, 32, 256)`` float32): SiLU, the move of the channels to the front that
  XLA:CPU makes before each kernel-gradient convolution (NHWC to CHWN), and the two
  together in one program, which XLA compiles to one loop, as it does in the train step.

``cpu_s / step_s`` is the number of cores busy on average (process CPU time over wall time;
threads that spin while they wait count as busy). Run ``python benchmarks/unet_cores.py
[--quick | --tiny] [--batch 8] [--cores 1,2] [--repeats 9] [--no-torch]`` (about 6 minutes
on 2 cores; ``--quick``: a small UNet, a smoke run; ``--tiny``: the same at one level);
writes ``benchmarks/results/unet_cores.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.unet_cores
    from benchmarks import _common as common

HERE = Path(__file__).resolve().parent
TRANSPOSE_CHANNELS = 256  # the widest activation of the UNet's 32x32 level
QUICK_CHANNELS = 32


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small UNet: a smoke run")
    ap.add_argument("--tiny", action="store_true", help="--quick at one level (the tests)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cores", default="1,2", help="comma-separated core counts, one child each")
    ap.add_argument("--repeats", type=int, default=None, help="default 9 (quick 3)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "unet_cores.json"))
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.quick = args.quick or args.tiny
    args.repeats = args.repeats or (3 if args.quick else 9)
    args.core_counts = [int(c) for c in args.cores.split(",") if c.strip()]
    if not args.core_counts or min(args.core_counts) < 1:
        ap.error(f"--cores: positive core counts, got {args.cores!r}")
    return args


def pin(cores: int) -> None:
    """Restrict this process to the first ``cores`` CPUs it may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise ValueError(f"--cores {cores}: this process may run on {len(allowed)} CPUs only")
    os.sched_setaffinity(0, allowed[:cores])


def network_cases(cfg: dict[str, Any], batch: int, torch_threads: int | None):
    """``name -> (step, carry)``: flowzoo's and (``torch_threads``) torchcfm's UNet,
    forward and backward, and forward alone."""
    from flowzoo import zoo
    from flowzoo.train import jit

    A = common.accelerator()
    net = zoo.cfm_network(cfg["model"], A.SHAPE)
    x = jax.random.normal(jax.random.key(1), (batch, *A.SHAPE))
    t = jax.random.uniform(jax.random.key(2), (batch,))
    g = jax.random.normal(jax.random.key(3), x.shape)
    params = net.init(jax.random.key(0), t, x)

    def fwd(params, key):
        return net.apply(params, t, x, rng=key)

    fb = jit(lambda p, key: jax.vjp(lambda q: fwd(q, key), p)[1](g))
    f = jit(fwd)

    def advance(fn):
        def step(key):
            jax.block_until_ready(fn(params, key))
            return jax.random.fold_in(key, 1)

        return step

    cases = {
        "flowzoo fwd+bwd": (advance(fb), jax.random.key(5)),
        "flowzoo forward": (advance(f), jax.random.key(5)),
    }
    if torch_threads is not None:
        torch = common.LazyImport("torch")
        torch.set_num_threads(torch_threads)
        tnet = A.torch_unet(cfg["model"]).train()
        tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
        tt = torch.from_numpy(np.asarray(t))
        tg = torch.from_numpy(np.asarray(g).transpose(0, 3, 1, 2).copy())

        def torch_fb(carry):
            tnet.zero_grad(set_to_none=True)  # fresh gradients, as a train step's
            tnet(tt, tx).backward(tg)
            return carry

        def torch_f(carry):
            with torch.no_grad():
                tnet(tt, tx)
            return carry

        cases["torch fwd+bwd"] = (torch_fb, common.Ready())
        cases["torch forward"] = (torch_f, common.Ready())
    return cases


def _chwn(x):
    return jnp.transpose(x, (3, 1, 2, 0))


# NHWC -> NHWC, NHWC -> CHWN, NHWC -> CHWN
PROGRAMS = {
    "silu": jax.nn.silu,
    "transpose": _chwn,
    "silu + transpose": lambda x: _chwn(jax.nn.silu(x)),
}


def transpose_cases(batch: int, channels: int):
    """``name -> (step, carry)``: each of :data:`PROGRAMS` compiled on one activation."""
    x = jax.random.normal(jax.random.key(0), (batch, 32, 32, channels))

    def case(fn):
        c = jax.jit(fn).lower(x).compile()

        def step(carry):
            jax.block_until_ready(c(x))
            return carry

        return step, None

    return {name: case(fn) for name, fn in PROGRAMS.items()}


def child(args) -> dict[str, Any]:
    """One core count: pin, then time the network and the transposes."""
    pin(args.child)
    cpus = sorted(os.sched_getaffinity(0))  # as the kernel has it
    A = common.accelerator()
    overrides = [f"train.batch_size={args.batch}", "train.compute_dtype=float32"]
    cfg = A.recipe("fm_cifar10", overrides + A.fm_overrides(args))
    have_torch = not args.no_torch and common.optional_import("torchcfm") is not None
    threads = args.child if have_torch else None
    net = common.interleaved_steady(network_cases(cfg, args.batch, threads), repeats=args.repeats)
    ratios = {}
    if have_torch:
        for part in ("fwd+bwd", "forward"):
            ratios[part] = common.rounds_ratio(net, f"torch {part}", f"flowzoo {part}")
    channels = QUICK_CHANNELS if args.quick else TRANSPOSE_CHANNELS
    tr = common.interleaved_steady(transpose_cases(args.batch, channels), repeats=args.repeats)
    return {
        "cores": args.child,
        "cpus": cpus,
        "torch_threads": threads,
        "network": net,
        "torch_over_flowzoo": ratios,
        "transposes": {"shape": [args.batch, 32, 32, channels], "rounds": tr},
    }


def render(d: dict[str, Any]) -> str:
    """The docs tables (renders the JSON; imports nothing)."""
    import _common as common

    c, runs = d["config"], d["runs"]

    def busy(v):
        return f"{v['cpu_s']['median'] / v['step_s']['median']:.2f}"

    rows = []
    for r in runs:
        net = r["network"]
        for part in ("fwd+bwd", "forward"):
            fz, tc = net[f"flowzoo {part}"], net.get(f"torch {part}")
            rows.append(
                [
                    r["cores"],
                    part,
                    common.fmt_seconds(fz["step_s"]["median"]),
                    busy(fz),
                    common.fmt_seconds(tc["step_s"]["median"]) if tc else "-",
                    busy(tc) if tc else "-",
                    common.fmt_rounds(r["torch_over_flowzoo"].get(part)) or "-",
                ]
            )
    out = [
        f"The `fm_cifar10` UNet at batch {c['batch']} (float32, dropout on), in a process "
        "pinned to 1 core and to 2:",
        "",
        common.md_table(
            [
                "cores",
                "pass",
                "flowzoo",
                "cores busy",
                "torchcfm",
                "cores busy",
                "torchcfm / flowzoo",
            ],
            rows,
        ),
        "",
        "`fwd+bwd`: forward and vector-Jacobian product with respect to the parameters; "
        "`cores busy`: process CPU time over wall time. Ratios are medians (and interquartile "
        "ranges) over interleaved rounds.",
        "",
    ]
    shape = "x".join(str(s) for s in runs[0]["transposes"]["shape"])
    names = list(runs[0]["transposes"]["rounds"])
    rows = [
        [name]
        + [common.fmt_seconds(r["transposes"]["rounds"][name]["step_s"]["median"]) for r in runs]
        for name in names
    ]
    out += [
        f"Elementwise programs on one float32 activation of shape {shape} (NHWC):",
        "",
        common.md_table(["program", *(f"{r['cores']} core(s)" for r in runs)], rows),
        "",
        "`transpose`: the channels moved to the front, batch last (CHWN), as XLA:CPU lays out "
        "the input of a kernel-gradient convolution; `silu + transpose`: both in one program.",
    ]
    return "\n".join(out).rstrip()


def main(argv=None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.child is not None:
        print(json.dumps(child(args), default=float))
        return {}
    from flowzoo import malloc

    malloc.relaunch([__file__, *argv])
    runs = []
    for cores in args.core_counts:
        proc = subprocess.run(
            [sys.executable, __file__, *argv, "--child", str(cores)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the {cores}-core child failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    d = {
        "env": common.env_info(["jax", "jaxlib", "flax", "torch", "torchcfm"]),
        "config": {
            "batch": args.batch,
            "quick": args.quick,
            "repeats": args.repeats,
            "allocator": malloc.loaded_allocator(),
        },
        "runs": runs,
    }
    common.write_json(args.out, d)
    print(render(d))
    return d


if __name__ == "__main__":
    main()
