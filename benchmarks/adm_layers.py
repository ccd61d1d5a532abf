"""The ADM UNet's layers on CPU: GroupNorm and attention against their direct formulations,
and every layer kind against torch's.

``flowzoo.nets.adm_unet`` (the ``fm_cifar10`` / ``sde_cifar10`` network) writes two of its
layers for XLA rather than as torchcfm's code reads:

* GroupNorm(32) sums each channel over the positions first (a reduction along the leading
  axis) and then over the channels of each group; the direct formulation is
  ``flax.linen.GroupNorm``, which reduces over the positions and the channels of a group at
  once.
* Attention contracts the qkv and output kernels viewed per head, so q, k, v and the
  attention output are head-major arrays; the direct formulation (``slices`` below) is
  ``QKVAttentionLegacy`` transcribed: one ``nn.Dense`` to ``(heads, 3, head_dim)`` channels,
  q, k and v sliced out of it, products over token-major arrays.

Both formulations have the same parameters and compute the same function (checked here to
float32 rounding before timing). Four measurements, each timed in interleaved rounds
(``_common.interleaved_steady``):

* ``groupnorm``: forward and backward (the gradients for the input, scale and bias) of
  GroupNorm + SiLU on the input of every GroupNorm of the ``fm_cifar10`` UNet at the given
  batch (the shapes are traced from the network), each layer its own jitted program, run
  in turn, and torch's ``GroupNorm`` + ``silu`` on the same shapes as the peer.
* ``attention``: the same for every attention block, with torchcfm's ``AttentionBlock`` as
  the peer.
* ``conv``: the same for every convolution, as flowzoo compiles it on CPU (XLA's Eigen
  convolutions) and torch's ``Conv2d`` (oneDNN): the kernels under both train steps, with
  no second JAX formulation.
* ``step``: the ``fm_cifar10`` train step (float32, full-precision matmuls) with the layers
  as shipped and with both direct formulations in their place.

Run ``python benchmarks/adm_layers.py [--quick] [--batch 8] [--torch-threads 2] [--no-step]``
(about 7 minutes on 2 cores; ``--quick``: a small UNet, a smoke run); writes
``benchmarks/results/adm_layers.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.adm_layers
    from benchmarks import _common as common

HERE = Path(__file__).resolve().parent
# the module whose globals ``_group_norm`` and ``_Attention`` the UNet's blocks call: the
# comparisons swap the direct formulations in there and nowhere else
UNET_MODULE = "flowzoo.nets._adm_unet"
GROUPS, EPS = 32, 1e-5


def _unet():
    import importlib

    return importlib.import_module(UNET_MODULE)


def flax_group_norm(x, name: str):
    """GroupNorm(32, eps 1e-5) by ``flax.linen.GroupNorm`` in float32, cast back."""
    norm = nn.GroupNorm(GROUPS, epsilon=EPS, dtype=jnp.float32, name=name)
    return norm(x.astype(jnp.float32)).astype(x.dtype)


class SliceAttention(nn.Module):
    """``QKVAttentionLegacy`` transcribed: the shipped block's parameters and function,
    with q, k and v sliced from the interleaved ``(heads, 3, head_dim)`` projection."""

    heads: int
    dtype: Any

    @nn.compact
    def __call__(self, x):
        unet = _unet()
        n, hh, ww, c = x.shape
        d = c // self.heads
        tokens = unet._group_norm(x, "norm").reshape(n, hh * ww, c)
        qkv = unet._dense(3 * c, c, self.dtype, "qkv")(tokens)
        qkv = qkv.reshape(n, hh * ww, self.heads, 3, d)
        scale = d**-0.25
        q, k, v = qkv[..., 0, :] * scale, qkv[..., 1, :] * scale, qkv[..., 2, :]
        logits = jnp.einsum("nthd,nshd->nhts", q, k)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("nhts,nshd->nthd", weights, v).reshape(n, hh * ww, c)
        out = unet._dense(c, c, self.dtype, "proj_out", zero=True)(out)
        return x + out.astype(x.dtype).reshape(x.shape)


def layer_shapes(cfg: dict[str, Any], batch: int) -> dict[str, list]:
    """The layers of ``cfg``'s UNet at ``batch`` (traced): ``{"groupnorm": [shape, ...],
    "attention": [(shape, heads), ...], "conv": [(shape, features, kernel, stride,
    padding), ...]}``, each with its input's shape."""
    from flowzoo import zoo

    A, unet = common.accelerator(), _unet()
    found: dict[str, list] = {"groupnorm": [], "attention": [], "conv": []}
    shipped_norm, shipped_attention, shipped_conv = unet._group_norm, unet._Attention, unet._Conv2d

    def norm(x, name):
        found["groupnorm"].append(tuple(x.shape))
        return shipped_norm(x, name)

    class Attention(shipped_attention):
        def __call__(self, x):
            found["attention"].append((tuple(x.shape), self.heads))
            return super().__call__(x)

    class Conv(shipped_conv):
        def __call__(self, x):
            spec = (self.features, self.kernel_size, self.stride, self.padding)
            found["conv"].append((tuple(x.shape), *spec))
            return super().__call__(x)

    net = zoo.cfm_network(cfg["model"], A.SHAPE)
    x = jnp.zeros((batch, *A.SHAPE))
    params = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((batch,)), x)
    with (
        mock.patch(f"{UNET_MODULE}._group_norm", norm),
        mock.patch(f"{UNET_MODULE}._Attention", Attention),
        mock.patch(f"{UNET_MODULE}._Conv2d", Conv),
    ):
        jax.eval_shape(lambda p: net.apply(p, 0.5, x), params)
    return found


def _layers(kind: str, formulation: str, shapes: list) -> list:
    """``(module, input shape)`` per layer: the shipped layer or the direct formulation."""
    unet = _unet()
    if kind == "groupnorm":
        shipped = formulation == "flowzoo"

        class Norm(nn.Module):
            @nn.compact
            def __call__(self, x):
                y = unet._group_norm(x, "norm") if shipped else flax_group_norm(x, "norm")
                return nn.silu(y)

        return [(Norm(), s) for s in shapes]
    if kind == "conv":  # no second formulation: XLA's convolution as flowzoo compiles it
        return [(unet._Conv2d(f, k, st, p), s) for s, f, k, st, p in shapes]
    cls = unet._Attention if formulation == "flowzoo" else SliceAttention
    return [(cls(heads, jnp.float32), s) for s, heads in shapes]


def _inputs(kind: str, shapes: list):
    """Parameters (perturbed off their zero/one init, so every path carries signal), inputs
    and output cotangents per layer, the same for every formulation."""
    rng = np.random.default_rng(0)
    out = []
    for module, shape in _layers(kind, "flowzoo", shapes):
        x = jnp.asarray(rng.standard_normal(shape) * 2.0 + 0.5, jnp.float32)
        params = module.init(jax.random.key(0), x)
        params = jax.tree.map(
            lambda p: p + jnp.asarray(rng.standard_normal(p.shape) * 0.05, p.dtype), params
        )
        y = jax.eval_shape(module.apply, params, x)
        out.append((params, x, jnp.asarray(rng.standard_normal(y.shape), jnp.float32)))
    return out


def vjp_program(kind: str, formulation: str, shapes: list):
    """``f(inputs) -> [(d params, d x), ...]``: forward and backward of every layer."""
    layers = _layers(kind, formulation, shapes)

    def f(inputs):
        grads = []
        for (module, _), (params, x, g) in zip(layers, inputs, strict=True):
            grads.append(jax.vjp(module.apply, params, x)[1](g))
        return grads

    return f


def max_relative_difference(kind: str, shapes: list) -> float:
    """The largest difference between the two formulations' outputs and gradients, each
    relative to the largest magnitude of the same array (one function: float32 rounding)."""
    inputs = _inputs(kind, shapes)
    pairs = []
    for formulation in ("flowzoo", "direct"):
        grads = jax.jit(vjp_program(kind, formulation, shapes))(inputs)
        layers = _layers(kind, formulation, shapes)
        values = [m.apply(p, x) for (m, _), (p, x, _) in zip(layers, inputs, strict=True)]
        pairs.append(jax.tree.leaves((grads, values)))
    worst = 0.0
    for u, v in zip(*pairs, strict=True):
        worst = max(worst, float(jnp.max(jnp.abs(u - v))) / max(float(jnp.max(jnp.abs(v))), 1e-30))
    return worst


DIRECT = {"groupnorm": "flax", "attention": "slices", "conv": None}


def layer_cases(kind: str, shapes: list, torch_threads: int | None) -> dict[str, tuple]:
    """``name -> (step, carry)`` for :func:`_common.interleaved_steady`. A step runs the
    forward and backward pass of every layer in turn, each layer its own compiled program,
    finished before the next starts, as torch runs them and as they run in the network (one
    program of independent layers would let XLA run two at once, one per core)."""
    from flowzoo.train import jit

    inputs = _inputs(kind, shapes)
    cases = {}
    formulations = [("flowzoo", "flowzoo")] + ([(DIRECT[kind], "direct")] if DIRECT[kind] else [])
    for name, formulation in formulations:
        programs = [
            jit(lambda i, m=module: jax.vjp(m.apply, i[0], i[1])[1](i[2])).lower(i).compile()
            for (module, _), i in zip(_layers(kind, formulation, shapes), inputs, strict=True)
        ]

        def step(carry, programs=programs):
            for program, i in zip(programs, inputs, strict=True):
                carry = jax.block_until_ready(program(i))
            return carry

        cases[name] = (step, None)
    if torch_threads:
        cases["torch"] = _torch_case(kind, shapes, inputs, torch_threads)
    return cases


def _torch_case(kind: str, shapes: list, inputs: list, threads: int):
    """torch's layers on the same shapes: ``GroupNorm`` + ``silu``, torchcfm's
    ``AttentionBlock``, ``Conv2d`` (NCHW)."""
    torch = common.LazyImport("torch")
    torch.set_num_threads(threads)
    layers = []
    for spec, (_, x, g) in zip(shapes, inputs, strict=True):
        c = x.shape[-1]
        if kind == "groupnorm":
            module = torch.nn.Sequential(torch.nn.GroupNorm(GROUPS, c, eps=EPS), torch.nn.SiLU())
        elif kind == "conv":
            _, features, k, stride, padding = spec
            module = torch.nn.Conv2d(c, features, k, stride=stride, padding=padding)
        else:
            from torchcfm.models.unet.unet import AttentionBlock

            module = AttentionBlock(c, num_head_channels=c // spec[1])
        tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
        tg = torch.from_numpy(np.asarray(g).transpose(0, 3, 1, 2).copy())
        layers.append((module, tx, tg))

    def step(carry):
        for module, tx, tg in layers:
            module.zero_grad(set_to_none=True)  # fresh gradients, as a train step's
            tx.grad = None
            module(tx).backward(tg)
        return carry

    return step, common.Ready()


def step_cases(cfg: dict[str, Any], batch: int) -> tuple[dict[str, tuple], dict[str, Any]]:
    """The train step with the layers as shipped and with both direct formulations."""
    direct = {
        f"{UNET_MODULE}._group_norm": flax_group_norm,
        f"{UNET_MODULE}._Attention": SliceAttention,
    }
    return common.patched_train_steps(cfg, batch, {"flowzoo": {}, "direct": direct})


def render(d: dict[str, Any]) -> str:
    """The docs tables (renders the JSON; imports nothing)."""
    import _common as common

    c = d["config"]
    what = {
        "groupnorm": (
            "GroupNorm(32) + SiLU",
            "`flax`: `flax.linen.GroupNorm`; `torch`: `torch.nn.GroupNorm` + `silu`",
        ),
        "attention": (
            "attention",
            "`slices`: q, k, v sliced from the interleaved projection; `torch`: torchcfm's "
            "`AttentionBlock`",
        ),
        "conv": (
            "Convolutions (3x3 and 1x1)",
            "`flowzoo`: `lax.conv_general_dilated` as flowzoo compiles it on CPU (XLA's Eigen "
            "convolutions); `torch`: `torch.nn.Conv2d` (oneDNN). No second JAX formulation: "
            "these are the kernels both steps run",
        ),
    }
    out = []
    for kind, (title, legend) in what.items():
        if kind not in d:  # a JSON from before the kind was measured
            continue
        r = d[kind]
        rows = [
            [name, common.fmt_seconds(v["step_s"]["median"]), common.fmt_rounds(r["ratios"][name])]
            for name, v in r["rounds"].items()
        ]
        same = r.get("max_relative_difference")
        agree = (
            f"; the formulations differ by at most {same:.0e} of the largest value"
            if same is not None
            else ""
        )
        out += [
            f"{title}, forward and backward, on the inputs of the {len(r['shapes'])} such "
            f"layers of the `fm_cifar10` UNet at batch {c['batch']} (one after another{agree}):",
            "",
            common.md_table(["formulation", "time", "time / flowzoo's"], rows),
            "",
            legend + ".",
            "",
        ]
    if d.get("step"):
        s = d["step"]
        rows = [
            [name, common.fmt_seconds(v["step_s"]["median"]), common.fmt_seconds(v["compile_s"])]
            for name, v in s["rounds"].items()
        ]
        out += [
            f"The `fm_cifar10` train step at batch {c['batch']} (float32) with both layers as "
            "shipped and with both direct formulations (`flax` GroupNorm, `slices` attention):",
            "",
            common.md_table(["layers", "step", "compile"], rows),
            "",
            f"The direct formulations' step takes {common.fmt_rounds(s['direct_over_flowzoo'])} "
            "the time of flowzoo's. Ratios are medians (and interquartile ranges) over "
            "interleaved rounds.",
        ]
    return "\n".join(out).rstrip()


def parse(argv):
    return common.unet_variant_args(
        argv, __doc__, HERE / "results" / "adm_layers.json", "the layers only"
    )


def main(argv=None) -> dict[str, Any]:
    from flowzoo import malloc

    malloc.relaunch([__file__, *(argv if argv is not None else sys.argv[1:])])
    args = parse(argv)
    A = common.accelerator()
    overrides = [f"train.batch_size={args.batch}", "train.compute_dtype=float32"]
    cfg = A.recipe("fm_cifar10", overrides + (A.QUICK_FM if args.quick else []))
    shapes = layer_shapes(cfg, args.batch)
    have_torch = not args.no_torch and common.optional_import("torchcfm") is not None
    threads = args.torch_threads if have_torch else None
    d: dict[str, Any] = {
        "env": common.env_info(["jax", "jaxlib", "flax", "torch", "torchcfm"]),
        "config": {
            "batch": args.batch,
            "quick": args.quick,
            "torch_threads": threads,
            "repeats": args.repeats,
            "allocator": malloc.loaded_allocator(),
        },
    }
    for kind in ("groupnorm", "attention", "conv"):
        rounds = common.interleaved_steady(
            layer_cases(kind, shapes[kind], threads), repeats=args.repeats
        )
        same = max_relative_difference(kind, shapes[kind]) if DIRECT[kind] else None
        d[kind] = {
            "shapes": shapes[kind],
            "max_relative_difference": same,
            "rounds": rounds,
            "ratios": {n: common.rounds_ratio(rounds, n, "flowzoo") for n in rounds},
        }
    if not args.no_step:
        cases, records = step_cases(cfg, args.batch)
        rounds = common.interleaved_steady(cases, repeats=args.repeats)
        for name in rounds:
            rounds[name]["compile_s"] = records[name]["compile_s"]
        d["step"] = {
            "rounds": rounds,
            "direct_over_flowzoo": common.rounds_ratio(rounds, "direct", "flowzoo"),
        }
    common.write_json(args.out, d)
    print(render(d))
    return d


if __name__ == "__main__":
    main()
