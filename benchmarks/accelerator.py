"""Accelerator benchmark: the fm_cifar10 and glow_cifar10 train steps and 100-NFE ODE sampling,
flowzoo against torchcfm on the same device (GPU, or this machine's CPU).

What is timed (every figure a steady-state median over interleaved blocks,
``_common.interleaved_steady``; compile time apart):

* ``fm`` -- the ``fm_cifar10`` recipe's train step (``experiments/fm_cifar10.py``: torchcfm's
  CIFAR-10 UNet, I-CFM with sigma 0, Adam 2e-4 with warm-up, gradient clip 1, EMA 0.9999,
  dropout 0.1) at ``--batch`` (128), built as ``flowzoo train`` builds it
  (``zoo.build_model``, ``zoo.build_optimizer``, ``train.make_train_step``; ``bfloat16`` is
  ``train.compute_dtype``), beside torchcfm's step from ``examples/images/cifar10/
  train_cifar10.py`` (atong01/conditional-flow-matching): ``UNetModelWrapper`` +
  ``ConditionalFlowMatcher(sigma=0)`` + Adam + ``LambdaLR`` warm-up + ``clip_grad_norm_`` + the
  example's state-dict EMA, eager and under ``torch.compile`` (the model), bfloat16 through
  ``torch.autocast``. Both sides train on one fixed batch held on the device (no input
  pipeline); flowzoo also dequantizes it inside its step, as its recipe does.
* float32 is timed at both matmul precisions where they differ (GPU): ``highest`` (JAX
  ``jax.default_matmul_precision("highest")``; torch ``set_float32_matmul_precision
  ("highest")`` and ``cudnn.allow_tf32 = False``) and ``tf32`` (JAX ``"tensorfloat32"``, its
  default on GPU; torch ``"high"`` and ``cudnn.allow_tf32 = True``). bfloat16 contenders run
  with the ``tf32`` setting for what stays in float32.
* ``split`` -- where the float32 ``fm`` step's time goes, per library, in one interleaved
  set: the step, its loss alone without gradients (``forward``; flowzoo's compiled as the
  step is, torch's under ``no_grad``) and its optimizer update alone (``update``: clipping,
  Adam, the schedule and the EMA on fixed random gradients, reached through a linear loss
  ``sum(params * grads)`` on both sides, so both also pay one pass over the parameters for
  it); ``rest`` = step - forward - update, round by round, is the backward pass with the
  forward's saved activations. Last in line: a ``--budget-s`` run drops it first.
* ``glow`` -- the ``glow_cifar10`` step (flowzoo only) at ``--glow-batch`` (64, the paper's
  per-GPU batch).
* ``sample`` -- Euler with 100 steps (100 NFE) of the fm_cifar10 network for
  ``--sample-batch`` images: flowzoo's ``flow_matching.distribution(...).sample`` with
  ``SolverConfig("euler", 100)`` under ``flowzoo.train.jit`` (as ``flowzoo sample`` compiles
  it: on CPU with Eigen convolutions; ``--cpu-conv-ab`` adds the same solve compiled with
  XLA's defaults, the ``flowzoo ynnpack-conv`` row, and ``sample.cpu_conv_speedup``),
  against the same loop in torch (``x + dt * model(t, x)`` on ``linspace(0, 1, 101)``,
  eager and compiled) and torchdyn's ``NeuralODE(solver="euler")``, which torchcfm's
  example samples with (``--torchdyn``; by default on a GPU). Both sides run the same
  weights (torchcfm's, perturbed, converted by ``nets.adm_unet_params_from_torch``);
  ``velocity_max_abs_diff`` compares one field evaluation. A solve takes seconds on a
  CPU, so each timed block is one solve (:func:`single_call_rounds`), the order
  alternating every round.

Model FLOPs are counted from the program, not measured: ``zoo.jaxpr_flops`` of the jaxpr of
flowzoo's step, as ``flowzoo train --dry-run`` counts them (2 per multiply-add of every matrix
product and convolution, forward and backward, a ``scan`` body times its length, every kernel
tap counted as in the usual analytic count; XLA's cost analysis counts only taps inside the
image, a loop body once, and on GPU nothing inside cuBLAS/cuDNN calls; its figure is kept as
``xla_flops`` for comparison). torchcfm's step runs the same network, so the same count.
MFU = FLOPs / step time / the device's dense peak for the contender's mode, from
:data:`PEAKS` (datasheet; GPU only), and ``of_matmul_peak`` the same against a large matmul
measured in the same run (both libraries; the faster counts). Parameters are random: flowzoo's
drawn by numpy in the shapes ``init`` gives (step time does not depend on the values, and
XLA:CPU takes seconds to compile a UNet's random init), torchcfm's by torch.

On CPU flowzoo's step compiles with ``flowzoo.train.compiler_options`` (XLA's Eigen
convolutions in place of YNNPACK's), as ``flowzoo train`` compiles it; ``--cpu-conv-ab`` (on by
default on CPU without ``--quick``) also times it with XLA's defaults
(``FLOWZOO_CPU_CONV=ynnpack``) and reports ``fm.cpu_conv_speedup``, the paired ratio.

Memory: flowzoo, XLA's buffer assignment of the compiled step (``_common.memory``; no buffer
donation, so the state is counted in and out); torchcfm on a GPU, the growth of
``torch.cuda.max_memory_allocated`` over one step plus the contender's own parameters, EMA,
optimizer state and gradients; on GPU also ``jax_process_peak_bytes``, JAX's allocator peak
over the whole run. ``--budget-s`` skips what no longer fits (``skipped`` says what), and the
JSON is written after every part.

Run: ``python benchmarks/accelerator.py [--quick] [--batch 8] [--torch-threads 2]
[--parts fm,sample,glow,split] [--out PATH]``; on a lent GPU: ``benchmarks/device_run.sh``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.accelerator
    from benchmarks import _common as common

from flowzoo import flow_matching as fm
from flowzoo import malloc as flowzoo_malloc
from flowzoo import nets, zoo
from flowzoo.integrate import SolverConfig
from flowzoo.train import compiler_options, ema_warmup, init_train_state, make_train_step
from flowzoo.train import jit as flowzoo_jit

torch = common.LazyImport("torch")
tcfm = common.LazyImport("torchcfm.conditional_flow_matching")
tcfm_unet = common.LazyImport("torchcfm.models.unet.unet")
torchdyn = common.LazyImport("torchdyn.core")

SHAPE = (32, 32, 3)
PEAKS = {  # dense FLOP/s by device kind (first substring match wins): bf16, tf32, fp32
    "H100 PCIe": {"bf16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12},  # SXM (HBM3)
    "H200": {"bf16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
}
JAX_PRECISION = {"highest": "highest", "tf32": "tensorfloat32"}
QUICK_FM = [  # a UNet of the same structure, small enough to compile in seconds on a CPU
    "model.num_channels=32",
    "model.channel_mult=[1, 1]",
    "model.num_res_blocks=1",
    "model.num_head_channels=32",
    "model.attention_resolutions=[16]",
    "model.dropout=0.0",
]
QUICK_GLOW = ["model.levels=1", "model.depth=2", "model.hidden=16"]
TINY_FM = [*QUICK_FM, "model.channel_mult=[1]", "model.attention_resolutions=[]"]
"""``--tiny`` (the test suite's size): the quick UNet with one level and no attention, half
its compile time; everything else as ``--quick``."""


def fm_overrides(args) -> list[str]:
    """The fm_cifar10 overrides of the run's size: none, ``--quick`` or ``--tiny``."""
    return TINY_FM if args.tiny else QUICK_FM if args.quick else []


# --------------------------------------------------------------------------- device, budget


def device_info(name: str | None) -> dict[str, Any]:
    """Platform, device kind and its datasheet peaks (``None`` off the table, e.g. a CPU)."""
    dev = jax.devices()[0]
    kind = name or dev.device_kind
    peaks = next((p for key, p in PEAKS.items() if key.lower() in kind.lower()), None)
    return {"platform": dev.platform, "kind": kind, "peaks": peaks}


def torch_device() -> str:
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


class Budget:
    """Seconds left of ``--budget-s`` (unlimited without it) and what was skipped for it."""

    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.perf_counter() + seconds
        self.skipped: list[str] = []

    def left(self) -> float:
        return math.inf if self.end is None else self.end - time.perf_counter()

    def allows(self, what: str, needs_s: float) -> bool:
        if self.left() >= needs_s:
            return True
        self.skipped.append(f"{what}: {self.left():.0f} s left, needs about {needs_s:.0f} s")
        print("skipped", self.skipped[-1], flush=True)
        return False


def mode_of(dtype: str, precision: str) -> str:
    """``bf16``, ``fp32-highest`` or ``fp32-tf32``: what a contender's peak FLOP/s is."""
    return "bf16" if dtype == "bfloat16" else f"fp32-{precision}"


PEAK_KEY = {"bf16": "bf16", "fp32-tf32": "tf32", "fp32-highest": "fp32"}


# --------------------------------------------------------------------------- FLOP count


def model_flops(fn, *args) -> float:
    """Model FLOPs of ``fn(*args)`` by :func:`flowzoo.zoo.jaxpr_flops` (what ``flowzoo train
    --dry-run`` reports): 2 per multiply-add of every matrix product and convolution of the
    jaxpr, padded taps included, a ``scan`` body times its length; elementwise work left out."""
    return zoo.jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


# --------------------------------------------------------------------------- flowzoo side


def numpy_params(shapes: Any, seed: int = 0) -> Any:
    """Random params in the tree of shapes ``init`` gives: ``scale`` leaves 1, other vectors
    0, kernels uniform on ``+-1/sqrt(fan_in)`` (torch's default), drawn by numpy."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = str(getattr(path[-1], "key", "")) if path else ""
        if not jnp.issubdtype(s.dtype, jnp.floating) or len(s.shape) < 2:
            return jnp.full(s.shape, 1 if name == "scale" else 0, s.dtype)
        bound = 1.0 / math.sqrt(math.prod(s.shape[:-1]))
        return jnp.asarray(rng.uniform(-bound, bound, s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def recipe(name: str, overrides: list[str]) -> dict[str, Any]:
    """The completed config of experiment ``name`` with ``overrides`` (``key=value``)."""
    return zoo.complete_config(zoo.apply_overrides(zoo.load_experiment(name), overrides))


def images(batch: int, seed: int = 1) -> jax.Array:
    """A fixed batch of CIFAR-shaped grey levels (float32 in [0, 256), NHWC)."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, (batch, *SHAPE)).astype(np.float32))


class _Precise:
    """A jitted function whose ``lower`` traces under a JAX matmul precision."""

    def __init__(self, fn, precision: str | None):
        self.fn, self.precision = fn, precision

    def lower(self, *args):
        if self.precision is None:
            return self.fn.lower(*args)
        with jax.default_matmul_precision(self.precision):
            return self.fn.lower(*args)


def _flowzoo_training(cfg: dict[str, Any], batch: int, real_init: bool):
    """``(model, optimizer, ema_decay, state, key, batch)`` of ``cfg`` as ``flowzoo train``
    builds them (image data, 256 levels); params by ``init`` or :func:`numpy_params`."""
    model = zoo.build_model({**cfg, "model": {**cfg["model"], "data_levels": 256}}, SHAPE)
    opt = zoo.build_optimizer(cfg)
    t = cfg["train"]
    ema = None if t["ema_decay"] <= 0 else t["ema_decay"]  # as flowzoo train sets it
    ema = ema_warmup(ema) if ema is not None and t["ema_warmup"] else ema
    x, key = images(batch), jax.random.key(cfg["seed"])
    if real_init:
        params = jax.jit(model.init)(jax.random.key(0), x)
    else:
        params = numpy_params(jax.eval_shape(model.init, jax.random.key(0), x[:2]))
    state = jax.jit(lambda p: init_train_state(p, opt, ema is not None))(params)
    return model, opt, ema, state, key, x


def train_step_case(cfg: dict[str, Any], batch: int, precision: str | None, real_init: bool):
    """A flowzoo train step of ``cfg`` (image data, 256 levels) compiled for ``batch``.

    Returns ``(case, record, flops_args)``: ``case`` is ``(step, state)`` for
    ``interleaved_steady``, ``record`` its compile time and memory, ``flops_args`` what
    :func:`model_flops` needs. ``real_init``: the model's own ``init`` (data-dependent, as
    Glow's ActNorm needs), else :func:`numpy_params`.
    """
    model, opt, ema, state, key, x = _flowzoo_training(cfg, batch, real_init)
    t = cfg["train"]
    dtype = None if t["compute_dtype"] == "float32" else t["compute_dtype"]
    step = make_train_step(model.loss, opt, ema_decay=ema, compute_dtype=dtype)
    jax_precision = JAX_PRECISION.get(precision) if precision else None
    comp = common.measure_compile(
        lambda: (_Precise(step, jax_precision), (state, key, x)), repeats=1, keep_compiled=True
    )
    compiled = comp.pop("compiled")
    t0 = time.perf_counter()
    first, metrics = compiled(state, key, x)
    jax.block_until_ready(first)
    record = {
        "compile_s": comp["total_s"]["median"],
        "first_run_s": time.perf_counter() - t0,
        "memory": comp["memory"],
        "peak_bytes": comp["memory"]["xla_step_bytes"],
        "peak_source": "xla_memory_analysis",
        "loss": float(metrics["loss"]),
        "xla_flops": common.compiled_flops(compiled),
    }
    return (lambda s: compiled(s, key, x)[0], first), record, (step, state, key, x)


# --------------------------------------------------------------------------- torch side


class TorchCarry:
    """Carry of a torch step: ``jax.block_until_ready`` calls this, which waits for CUDA."""

    def __init__(self, device: str):
        self.device = device

    def block_until_ready(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
        return self


def set_torch_precision(precision: str) -> None:
    """``highest``: float32 matmuls and cuDNN convolutions in full float32; ``tf32``: both
    in TF32 (torch's default keeps matmuls in float32 and convolutions in TF32)."""
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = precision == "tf32"


def torch_unet(m: dict[str, Any]):
    """torchcfm's ``UNetModelWrapper`` with the sizes of a ``cfm`` model section."""
    return tcfm_unet.UNetModelWrapper(
        dim=(SHAPE[2], SHAPE[0], SHAPE[1]),
        num_channels=int(m["num_channels"]),
        num_res_blocks=int(m["num_res_blocks"]),
        channel_mult=list(m["channel_mult"]),
        num_heads=int(m["num_heads"]),
        num_head_channels=int(m["num_head_channels"]),
        attention_resolutions=",".join(str(r) for r in m["attention_resolutions"]),
        dropout=float(m["dropout"]),
    )


def _ema(source, target, decay: float) -> None:
    """torchcfm's example EMA (``utils_cifar.ema``): one state-dict entry at a time."""
    src, tgt = source.state_dict(), target.state_dict()
    for k in src:
        tgt[k].data.copy_(tgt[k].data * decay + src[k].data * (1 - decay))


def _bytes(tensors) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors if t is not None))


def _torch_training(cfg, batch: int, dtype: str, precision: str, compiled: bool, dev: str):
    """torchcfm's CIFAR-10 training (``train_cifar10.py``): ``(closures, (net, ema_net,
    optimizer), last)``. ``closures`` maps ``step`` (the train step), ``forward`` (its loss
    without gradients) and ``update`` (gradient clipping, Adam, the schedule and the EMA on
    fixed random gradients, through a linear loss whose gradient they are) to
    ``fn(carry) -> carry``; ``last`` holds the step's last loss."""
    t = cfg["train"]
    torch.manual_seed(0)
    net = torch_unet(cfg["model"]).to(dev).train()
    ema_net = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=t["lr"])
    warm = max(int(t["warmup_steps"]), 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s, warm) / warm)
    matcher = tcfm.ConditionalFlowMatcher(sigma=0.0)
    model = torch.compile(net) if compiled else net
    x1 = torch.rand(batch, SHAPE[2], SHAPE[0], SHAPE[1], device=dev) * 2 - 1
    grads = [torch.randn_like(w) / math.sqrt(max(w[0].numel(), 1)) for w in net.parameters()]
    last = {}

    def loss_of_batch():
        tt, xt, ut = matcher.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            vt = model(tt, xt)
        return torch.mean((vt.float() - ut) ** 2)

    def apply(loss):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), t["grad_clip"])
        opt.step()
        sched.step()
        _ema(net, ema_net, t["ema_decay"])

    def step(carry):
        set_torch_precision(precision)
        opt.zero_grad()
        loss = loss_of_batch()
        apply(loss)
        last["loss"] = loss.detach()
        return carry

    def forward(carry):
        set_torch_precision(precision)
        with torch.no_grad():
            carry.value = loss_of_batch()
        return carry

    def update(carry):
        opt.zero_grad()
        apply(sum(torch.sum(w * g) for w, g in zip(net.parameters(), grads, strict=True)))
        return carry

    return {"step": step, "forward": forward, "update": update}, (net, ema_net, opt), last


def torch_train_case(cfg, batch: int, dtype: str, precision: str, compiled: bool, dev: str):
    """torchcfm's CIFAR-10 step; returns ``((step, carry), record)``."""
    closures, (net, ema_net, opt), last = _torch_training(
        cfg, batch, dtype, precision, compiled, dev
    )
    step = closures["step"]
    carry = TorchCarry(dev)
    calls = []
    for _ in range(2):  # the first call compiles (torch.compile) or warms cuDNN up
        t0 = time.perf_counter()
        step(carry).block_until_ready()
        calls.append(time.perf_counter() - t0)
    record = {"first_call_s": calls[0], "second_call_s": calls[1], "peak_bytes": None}
    if dev == "cuda":
        own = [*net.parameters(), *net.buffers(), *ema_net.parameters(), *ema_net.buffers()]
        own += [p.grad for p in net.parameters()]
        own += [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(carry).block_until_ready()
        grow = torch.cuda.max_memory_allocated() - before
        record.update(peak_bytes=grow + _bytes(own), peak_source="torch.cuda growth + own state")
    record["loss"] = float(last["loss"])
    return (step, carry), record


# --------------------------------------------------------------------------- matmul peak


def _jax_matmul(n: int, mode: str, repeats: int, block_s: float) -> float:
    """FLOP/s of one ``(n, n) @ (n, n)`` product in JAX, in ``mode``'s dtype and precision."""
    dtype = jnp.bfloat16 if mode == "bf16" else jnp.float32
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.standard_normal((n, n)), dtype) for _ in range(2))
    precision = JAX_PRECISION["tf32" if mode == "bf16" else mode.split("-")[1]]
    compiled = _Precise(jax.jit(jnp.matmul), precision).lower(a, b).compile()
    case = (lambda c: (c[0], c[1], compiled(c[0], c[1])), (a, b, a))
    tm = common.interleaved_steady({"jax": case}, repeats, block_s)
    return 2.0 * n**3 / tm["jax"]["step_s"]["median"]


def _torch_matmul(n: int, mode: str, dev: str, repeats: int, block_s: float) -> float:
    """FLOP/s of one ``(n, n) @ (n, n)`` product in torch on ``dev``."""
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    precision = "tf32" if mode == "bf16" else mode.split("-")[1]

    def step(carry):
        set_torch_precision(precision)
        torch.mm(a, b)
        return carry

    tm = common.interleaved_steady({"torch": (step, TorchCarry(dev))}, repeats, block_s)
    return 2.0 * n**3 / tm["torch"]["step_s"]["median"]


def matmul_peaks(modes, quick: bool, torch_on: bool, threads: int) -> dict[str, Any]:
    """The measured matmul rate per mode: on a GPU an ``n^3`` product (n = 8192, quick 512)
    in JAX and torch; on a CPU ``_common.matmul_rate``'s chained float32 products."""
    if jax.default_backend() == "cpu":
        m, k = (128, 128) if quick else (1024, 512)
        r = common.matmul_rate(m, k, repeats=3 if quick else 5, torch_threads=threads or None)
        rec = {"shape": r["shape"], "jax": r["xla_flops_per_s"], "torch": r["torch_flops_per_s"]}
        return {"fp32-highest": rec}
    n, repeats, block = (512, 3, 0.05) if quick else (8192, 5, 0.3)
    out = {}
    for mode in modes:
        rec = {"shape": [n, n, n], "jax": _jax_matmul(n, mode, repeats, block), "torch": None}
        if torch_on:
            rec["torch"] = _torch_matmul(n, mode, torch_device(), repeats, block)
        out[mode] = rec
    return out


def remeasure_peaks(peaks: dict[str, Any], again: dict[str, Any]) -> None:
    """Keep the faster of two measurements of each library's matmul rate (a CPU's rate moves
    during a run of minutes on a shared host), both recorded under ``start`` and ``end``."""
    for mode, rec in again.items():
        first = peaks[mode]
        first["start"] = {lib: first[lib] for lib in ("jax", "torch")}
        first["end"] = {lib: rec[lib] for lib in ("jax", "torch")}
        for lib in ("jax", "torch"):
            rates = [r for r in (first["start"][lib], rec[lib]) if r]
            first[lib] = max(rates) if rates else None


# --------------------------------------------------------------------------- parts


def fm_specs(args, gpu: bool, torch_on: bool) -> list[dict[str, Any]]:
    """The fm contenders, most wanted first (a tight budget drops the last)."""
    specs = []
    for dtype in args.dtypes:
        precisions = args.precisions if dtype == "float32" else ["tf32" if gpu else "highest"]
        for precision in precisions:
            variants = ["jit"] + (["eager"] if torch_on else [])
            variants += ["compiled"] if torch_on and dtype in args.torch_compile else []
            variants += ["jit-ynnpack"] if args.cpu_conv_ab and not gpu else []
            for variant in variants:
                lib = "flowzoo" if variant.startswith("jit") else "torchcfm"
                mode = mode_of(dtype, precision)
                tag = {"jit": "", "jit-ynnpack": " ynnpack-conv"}.get(variant, f" {variant}")
                specs.append(dict(name=f"{lib}{tag} {mode}", library=lib, variant=variant,
                                  dtype=dtype, precision=precision, mode=mode))  # fmt: skip
    return specs


def _build_fm(spec, args, dev: str):
    over = [f"train.batch_size={args.batch}", f"train.compute_dtype={spec['dtype']}"]
    cfg = recipe("fm_cifar10", over + fm_overrides(args))
    if spec["library"] == "flowzoo":
        conv = "ynnpack" if spec["variant"] == "jit-ynnpack" else "eigen"
        # flowzoo.train reads FLOWZOO_CPU_CONV when it builds the step: eigen (its
        # default) or ynnpack (XLA's own defaults)
        with mock.patch.dict(os.environ, {"FLOWZOO_CPU_CONV": conv}):
            case, rec, fargs = train_step_case(cfg, args.batch, spec["precision"], False)
        return case, rec, fargs
    compiled = spec["variant"] == "compiled"
    case, rec = torch_train_case(cfg, args.batch, spec["dtype"], spec["precision"], compiled, dev)
    return case, rec, None


def run_fm(args, gpu: bool, torch_on: bool, budget: Budget) -> dict[str, Any]:
    """The fm_cifar10 step of every contender, timed in interleaved rounds. A contender is
    built only while the time it needs, the timing and the later parts' share still fit."""
    dev = torch_device() if torch_on else "cpu"
    needs = {"jit": 90, "jit-ynnpack": 90, "eager": 20, "compiled": 200} if not args.quick else {}
    later = 0 if args.quick else 60 + 90 * ("sample" in args.parts) + 120 * ("glow" in args.parts)
    cases, records, flops = {}, {}, None
    for spec in fm_specs(args, gpu, torch_on):
        if not budget.allows(f"fm {spec['name']}", needs.get(spec["variant"], 0) + later):
            continue
        try:
            case, rec, fargs = _build_fm(spec, args, dev)
        except Exception as err:  # noqa: BLE001 - one contender failing (torch.compile) is a result
            records[spec["name"]] = {**spec, "error": f"{type(err).__name__}: {str(err)[:500]}"}
            print("failed:", spec["name"], records[spec["name"]]["error"], flush=True)
            continue
        if fargs is not None and flops is None:
            flops = {"total": model_flops(*fargs), "xla_flops": rec["xla_flops"]}
        cases[spec["name"]], records[spec["name"]] = case, {**spec, **rec}
        print("built", spec["name"], {k: v for k, v in rec.items() if k != "memory"}, flush=True)
    timed = common.interleaved_steady(cases, args.repeats, args.block_s) if cases else {}
    for name, tm in timed.items():
        records[name].update(step_s=tm["step_s"], cpu_s=tm["cpu_s"]["median"])
        records[name]["samples_per_s"] = args.batch / tm["step_s"]["median"]
    return {"batch": args.batch, "flops": flops, "contenders": records}


def run_glow(args, gpu: bool, budget: Budget) -> dict[str, Any] | None:
    """The glow_cifar10 step (flowzoo only), at the device's default float32 precision."""
    if not budget.allows("glow", 0 if args.quick else 120):
        return None
    batch = args.glow_batch
    over = [f"train.batch_size={batch}"] + (QUICK_GLOW if args.quick else [])
    precision = "tf32" if gpu else "highest"
    case, rec, fargs = train_step_case(recipe("glow_cifar10", over), batch, precision, True)
    flops = {"total": model_flops(*fargs), "xla_flops": rec["xla_flops"]}
    tm = common.interleaved_steady({"flowzoo": case}, args.repeats, args.block_s)["flowzoo"]
    rec.update(step_s=tm["step_s"], cpu_s=tm["cpu_s"]["median"], precision=precision)
    rec.update(samples_per_s=batch / tm["step_s"]["median"], mode=mode_of("float32", precision))
    return {"batch": batch, "flops": flops, "contenders": {"flowzoo": rec}}


SPLIT_PARTS = ("step", "forward", "update")


def _linear_loss(params, key, grads):
    """``sum(params * grads)``: its gradient is ``grads``, so a train step of it is the
    optimizer update on fixed gradients (plus the one pass that computes this loss)."""
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(grads), strict=True)
    return sum(jnp.vdot(p, g) for p, g in pairs), {}


def flowzoo_split_cases(cfg: dict[str, Any], batch: int, precision: str) -> dict[str, tuple]:
    """flowzoo's fm step, its loss alone (forward, no gradients) and its update alone (the
    same ``apply_update`` on fixed random gradients, :func:`_linear_loss`), compiled as
    ``flowzoo train`` compiles the step; ``name -> (step, carry)``."""
    model, opt, ema, state, key, x = _flowzoo_training(cfg, batch, False)
    grads = numpy_params(jax.eval_shape(lambda: state.params), seed=1)
    precise = JAX_PRECISION[precision]
    cases = {}
    chained = {  # each call starts from the state the last one returned, as in training
        "step": (make_train_step(model.loss, opt, ema_decay=ema), (key, x)),
        "update": (make_train_step(_linear_loss, opt, ema_decay=ema), (key, grads)),
    }
    for part, (fn, rest) in chained.items():
        compiled = _Precise(fn, precise).lower(state, *rest).compile()
        cases[f"flowzoo {part}"] = (lambda s, f=compiled, r=rest: f(s, *r)[0], state)
    forward = flowzoo_jit(lambda p, k, b: model.loss(p, k, b)[0])
    compiled = _Precise(forward, precise).lower(state.params, key, x).compile()
    cases["flowzoo forward"] = (lambda _, f=compiled: f(state.params, key, x), None)
    return cases


def run_split(args, torch_on: bool, budget: Budget) -> dict[str, Any] | None:
    """Where the float32 fm step's time goes, per library: the step, its forward pass alone
    and its optimizer update alone, timed in one interleaved set; ``rest`` (the backward pass
    with the forward's saved activations) is step - forward - update, round by round."""
    if not budget.allows("split", 0 if args.quick else 150):
        return None
    precision = args.precisions[0]
    over = [f"train.batch_size={args.batch}", "train.compute_dtype=float32", *fm_overrides(args)]
    cfg = recipe("fm_cifar10", over)
    cases = flowzoo_split_cases(cfg, args.batch, precision)
    libraries = ["flowzoo"]
    if torch_on:
        dev = torch_device()
        closures, _, _ = _torch_training(cfg, args.batch, "float32", precision, False, dev)
        cases.update({f"torchcfm {k}": (fn, TorchCarry(dev)) for k, fn in closures.items()})
        libraries.append("torchcfm")
    timed = common.interleaved_steady(cases, args.repeats, args.block_s)
    out = {"batch": args.batch, "mode": mode_of("float32", precision), "libraries": {}}
    for lib in libraries:
        rounds = {k: np.asarray(timed[f"{lib} {k}"]["step_s"]["values"]) for k in SPLIT_PARTS}
        rounds["rest"] = rounds["step"] - rounds["forward"] - rounds["update"]
        out["libraries"][lib] = {k: v.tolist() for k, v in rounds.items()}
    return out


def split_rows(split: dict[str, Any]) -> list[list[Any]]:
    """Per part: each library's median seconds and the median of the per-round ratios
    torchcfm / flowzoo (above 1: flowzoo's part is the faster)."""
    libs = split["libraries"]
    rows = []
    for part in ("forward", "rest", "update", "step"):
        ours = np.asarray(libs["flowzoo"][part])
        row = [part, common.fmt_seconds(float(np.median(ours)))]
        if "torchcfm" in libs:
            theirs = np.asarray(libs["torchcfm"][part])
            ratio = common.summarize((theirs / ours).tolist())
            row += [common.fmt_seconds(float(np.median(theirs))), common.fmt_rounds(ratio)]
        rows.append(row)
    return rows


def _torch_sampler(net, n: int, nfe: int, precision: str, dev: str, node=None):
    """Euler on ``linspace(0, 1, nfe + 1)`` in torch (or torchdyn's ``node.trajectory``)."""
    ts = torch.linspace(0, 1, nfe + 1, device=dev)

    def step(carry):
        set_torch_precision(precision)
        with torch.no_grad():
            x = torch.randn(n, SHAPE[2], SHAPE[0], SHAPE[1], device=dev)
            if node is not None:
                x = node.trajectory(x, t_span=ts)[-1]
            else:
                for i in range(nfe):
                    x = x + (ts[i + 1] - ts[i]) * net(ts[i], x)
        carry.value = x
        return carry

    return step, TorchCarry(dev)


def _velocity_diff(net, params, tnet, dev: str) -> float:
    """Largest difference of one field evaluation, flowzoo vs torch, same weights and input."""
    x = np.random.default_rng(2).standard_normal((2, *SHAPE)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(net.apply(params, jnp.full((2,), 0.3), jnp.asarray(x)))
    set_torch_precision("highest")
    with torch.no_grad():
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)
        theirs = tnet(torch.full((2,), 0.3, device=dev), xt).cpu().numpy().transpose(0, 2, 3, 1)
    return float(np.max(np.abs(ours - theirs)))


def _torch_sample_cases(args, tnet, precision: str, dev: str, budget: Budget):
    """The torch samplers (eager, compiled, torchdyn) and the first call of the compiled one."""
    n, nfe = args.sample_batch, args.nfe
    cases = {"torch eager": _torch_sampler(tnet, n, nfe, precision, dev)}
    first = {}
    if "sample" in args.torch_compile and budget.allows("sample: torch compiled", 120):
        step, carry = _torch_sampler(torch.compile(tnet), n, nfe, precision, dev)
        t0 = time.perf_counter()
        step(carry).block_until_ready()
        cases["torch compiled"], first["torch compiled"] = (step, carry), time.perf_counter() - t0
    if args.torchdyn and torchdyn:
        node = torchdyn.NeuralODE(tnet, solver="euler", sensitivity="adjoint")
        cases["torchdyn"] = _torch_sampler(tnet, n, nfe, precision, dev, node)
    return cases, first


def single_call_rounds(cases: dict[str, tuple], repeats: int) -> dict[str, dict[str, Any]]:
    """``_common.interleaved_steady`` with one call per block and one warm-up call, for calls
    of seconds (a 100-step solve on a CPU), where its blocks of at least 3 calls take minutes."""
    state = {}
    for name, (step, carry) in cases.items():
        state[name] = [step, jax.block_until_ready(step(carry)), []]
    names = list(cases)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            step, carry, walls = state[name]
            t0 = time.perf_counter()
            state[name][1] = jax.block_until_ready(step(carry))
            walls.append(time.perf_counter() - t0)
    return {name: {"step_s": common.summarize(st[2])} for name, st in state.items()}


def run_sample(args, gpu: bool, torch_on: bool, budget: Budget) -> dict[str, Any] | None:
    """Euler, ``--nfe`` steps, of the fm_cifar10 network: flowzoo against torch loops."""
    if not budget.allows("sample", 0 if args.quick else 90):
        return None
    m, n = recipe("fm_cifar10", fm_overrides(args))["model"], args.sample_batch
    precision, dev = ("tf32" if gpu else "highest"), (torch_device() if torch_on else "cpu")
    net = zoo.cfm_network(m, SHAPE)
    solver = SolverConfig("euler", args.nfe)
    dist = fm.distribution(net, zoo.path_from_config(m), SHAPE, sample_solver=solver)
    tnet, out = None, {"batch": n, "nfe": args.nfe, "solver": "euler", "precision": precision}
    if torch_on:  # both sides run torchcfm's weights, perturbed: its output layer starts at 0
        torch.manual_seed(0)
        tnet = torch_unet(m).to(dev).eval()
        with torch.no_grad():
            for w in tnet.parameters():
                w.add_(0.02 * torch.randn_like(w))
        sd = {k: v.detach().cpu().numpy() for k, v in tnet.state_dict().items()}
        params = nets.adm_unet_params_from_torch(sd)
        out["velocity_max_abs_diff"] = _velocity_diff(net, params, tnet, dev)
    else:
        params = numpy_params(jax.eval_shape(dist.init, jax.random.key(0), jnp.zeros((2, *SHAPE))))

    def solve(p, carry):
        return jax.random.fold_in(carry[0], 1), dist.sample(p, carry[0], n)

    carry = (jax.random.key(3), jnp.zeros((n, *SHAPE)))
    variants = {"flowzoo": "eigen"}
    if args.cpu_conv_ab and not gpu:
        variants["flowzoo ynnpack-conv"] = "ynnpack"
    cases, first, comps = {}, {}, {}
    for name, conv in variants.items():
        # flowzoo.train.jit reads FLOWZOO_CPU_CONV when it builds the program
        with mock.patch.dict(os.environ, {"FLOWZOO_CPU_CONV": conv}):
            jitted = flowzoo_jit(solve)
        precise = _Precise(jitted, JAX_PRECISION[precision])
        make = lambda p=precise: (p, (params, carry))  # noqa: E731
        comps[name] = common.measure_compile(make, repeats=1, keep_compiled=True)
        compiled = comps[name].pop("compiled")
        cases[name] = (lambda c, f=compiled: f(params, c), carry)
    out["flops"] = {"total": model_flops(solve, params, carry)}
    if torch_on:
        torch_cases, first = _torch_sample_cases(args, tnet, precision, dev, budget)
        cases.update(torch_cases)
    timed = single_call_rounds(cases, min(args.repeats, 5))
    records = {}
    for name, tm in timed.items():
        ours = name in variants
        rec = {"name": name, "library": "flowzoo" if ours else "torch"}
        rec.update(mode=mode_of("float32", precision), step_s=tm["step_s"])
        if name in first:
            rec.update(variant="compiled", first_call_s=first[name])
        if ours:
            rec["variant"] = "jit" if variants[name] == "eigen" else "jit-ynnpack"
            rec.update(compile_s=comps[name]["total_s"]["median"], memory=comps[name]["memory"])
            rec["peak_bytes"] = comps[name]["memory"]["xla_step_bytes"]
        rec["samples_per_s"] = n / tm["step_s"]["median"]
        records[name] = rec
    return {**out, "contenders": records}


# --------------------------------------------------------------------------- derived figures


def derive(d: dict[str, Any]) -> None:
    """FLOP/s, MFU (datasheet peak) and the fraction of the measured matmul peak of every
    timed contender; torch's compile time as its first call less a steady step."""
    peaks = d["device"]["peaks"]
    for part in ("fm", "glow", "sample"):
        p = d.get(part)
        if not p or not p.get("flops"):
            continue
        for c in p["contenders"].values():
            if "step_s" not in c:
                continue
            rate = p["flops"]["total"] / c["step_s"]["median"]
            measured = d.get("matmul_peak", {}).get(c["mode"]) or {}
            best = max([v for v in (measured.get("jax"), measured.get("torch")) if v], default=None)
            c["flops_per_s"] = rate
            c["mfu"] = rate / peaks[PEAK_KEY[c["mode"]]] if peaks else None
            c["of_matmul_peak"] = rate / best if best else None
            if c.get("variant") == "compiled":
                c["compile_s"] = max(c["first_call_s"] - c["step_s"]["median"], 0.0)
    for part in ("fm", "sample"):  # the CPU convolution A/B: YNNPACK time / Eigen time
        contenders = (d.get(part) or {}).get("contenders") or {}
        for c in contenders.values():
            if c.get("variant") != "jit-ynnpack" or "step_s" not in c:
                continue
            own = next((o for o in contenders.values() if o.get("variant") == "jit"
                        and o["mode"] == c["mode"] and "step_s" in o), None)  # fmt: skip
            if own is not None:
                pair = np.asarray(c["step_s"]["values"]) / np.asarray(own["step_s"]["values"])
                d[part]["cpu_conv_speedup"] = {"mode": c["mode"], **common.summarize(pair.tolist())}


def fm_ratios(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Per mode: flowzoo's step against torchcfm's faster contender (eager or compiled) in
    that mode, as the median over rounds of their paired time ratios."""
    contenders = (d.get("fm") or {}).get("contenders", {}).values()
    timed = [c for c in contenders if "step_s" in c]
    rows = []
    for fz in [c for c in timed if c["library"] == "flowzoo" and c.get("variant", "jit") == "jit"]:
        peers = [c for c in timed if c["library"] == "torchcfm" and c["mode"] == fz["mode"]]
        best = max(peers, key=lambda c: c["samples_per_s"], default=None)
        row = {"mode": fz["mode"], "flowzoo": fz, "peer": best, "ratio": None}
        if best is not None:
            pair = np.asarray(best["step_s"]["values"]) / np.asarray(fz["step_s"]["values"])
            row["ratio"] = common.summarize(pair.tolist())
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- targets, docs


def check(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets: on a GPU, flowzoo's bfloat16 fm step >= 1.2x torchcfm's best and >= 35%
    MFU, float32 >= 1.0x at each matmul precision; on a CPU, float32 >= 1.0x."""
    gpu, batch, out = d["device"]["platform"] == "gpu", d["fm"]["batch"], []
    for row in fm_ratios(d):
        target = (1.2 if row["mode"] == "bf16" else 1.0) if gpu else 1.0
        if not gpu and row["mode"] != "fp32-highest":
            continue
        value = None if row["ratio"] is None else row["ratio"]["median"]
        peer = row["peer"]["name"] if row["peer"] else "none timed"
        out.append(
            {
                "what": f"fm_cifar10 step, batch {batch}, {row['mode']}: flowzoo / {peer}",
                "value": value,
                "target": f">= {target}",
                "met": None if value is None else value >= target,
            }
        )
        if gpu and row["mode"] == "bf16":
            mfu = row["flowzoo"].get("mfu")
            out.append(
                {
                    "what": f"fm_cifar10 step, batch {batch}, bf16: flowzoo MFU",
                    "value": mfu,
                    "target": ">= 0.35",
                    "met": None if mfu is None else mfu >= 0.35,
                }
            )
    return out


def _contender_rows(part: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, c in part["contenders"].items():
        step = common.dig(c, "step_s", "median")
        rows.append(
            [
                name,
                c.get("mode"),
                common.fmt_seconds(c.get("compile_s")),
                common.fmt_seconds(step)
                if step
                else c.get("error", "not timed")[:80].replace("|", "/"),
                None if step is None else f"{c['samples_per_s']:.1f}",
                common.fmt_bytes(c.get("peak_bytes")),
                common.fmt_pct(c.get("mfu")),
                common.fmt_pct(c.get("of_matmul_peak")),
            ]
        )
    return rows


def _peaks_line(d: dict[str, Any]) -> str:
    parts = []
    for mode, r in (d.get("matmul_peak") or {}).items():
        rates = [f"{lib} {r[lib] / 1e12:.3g}" for lib in ("jax", "torch") if r.get(lib)]
        parts.append(f"{mode} `{'x'.join(map(str, r['shape']))}`: " + ", ".join(rates))
    both = any("end" in r for r in (d.get("matmul_peak") or {}).values())
    when = (
        " (the faster of the measurements at the start and at the end of the run)" if both else ""
    )
    return f"Measured matmul peak{when}, TFLOP/s: " + ("; ".join(parts) or "not measured") + "."


def render(d: dict[str, Any]) -> str:
    """The docs block: the fm step contenders and ratios, sampling, Glow, the peaks used."""
    dev = d["device"]
    head = ["contender", "mode", "compile", "step", "samples/s", "memory", "MFU", "of matmul peak"]
    text = [
        f"Device: {dev['kind']} ({dev['platform']}); torch on {d.get('torch_threads')} "
        f"thread(s); memory allocator {d.get('allocator', 'system')} (both). fm_cifar10 train step, batch {d['fm']['batch']}, "
        f"{(d['fm'].get('flops') or {}).get('total', 0) / 1e9:.1f} GFLOP per step:",
        "",
        common.md_table(head, _contender_rows(d["fm"])),
        "",
    ]
    rows = [
        [
            r["mode"],
            r["peer"]["name"] if r["peer"] else None,
            common.fmt_rounds(r["ratio"]),
            c["target"] if (c := _check_for(d, r)) else None,
            common.fmt_met(c["met"]) if c else None,
        ]
        for r in fm_ratios(d)
    ]
    text += [common.md_table(["mode", "torchcfm's best", "flowzoo / it", "target", "met"], rows)]
    if ab := d["fm"].get("cpu_conv_speedup"):
        text += ["", f"flowzoo's step with XLA's YNNPACK convolutions (XLA:CPU's default) takes "
                 f"{common.fmt_rounds(ab)} the time of its step with Eigen convolutions "
                 f"(`flowzoo.train.compiler_options`, {ab['mode']}; paired rounds)."]  # fmt: skip
    for part, title in (("sample", "ODE sampling"), ("glow", "glow_cifar10 train step")):
        p = d.get(part)
        if p:
            extra = f", {p['nfe']} NFE ({p['solver']})" if part == "sample" else ""
            text += ["", f"{title}, batch {p['batch']}{extra}:", ""]
            text += [common.md_table(head, _contender_rows(p))]
            if ab := p.get("cpu_conv_speedup"):
                text += ["", f"flowzoo's solve with XLA's YNNPACK convolutions takes "
                         f"{common.fmt_rounds(ab)} the time of its solve with Eigen "
                         f"convolutions (`flowzoo.train.jit`; paired rounds)."]  # fmt: skip
    if split := d.get("split"):
        head = ["part", "flowzoo"] + (
            ["torchcfm", "torchcfm / flowzoo"] if "torchcfm" in split["libraries"] else []
        )
        text += ["", f"Where the fm_cifar10 step's time goes, batch {split['batch']}, "
                 f"{split['mode']} (medians of one interleaved set; `rest` = step - forward - "
                 "update, round by round: the backward pass, with the forward's saved "
                 "activations):", "", common.md_table(head, split_rows(split))]  # fmt: skip
    text += ["", _peaks_line(d)]
    if d.get("skipped"):
        text += ["", "Skipped for the time budget: " + "; ".join(d["skipped"]) + "."]
    return "\n".join(text)


def _check_for(d: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in check(d) if f", {row['mode']}: flowzoo / " in c["what"]), None)


# --------------------------------------------------------------------------- main


def parse(argv, gpu: bool) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small UNet and Glow, short repeats")
    p.add_argument("--tiny", action="store_true", help="--quick with a one-level UNet (tests)")
    p.add_argument("--batch", type=int, default=None, help="fm batch (default 128, quick 4)")
    p.add_argument("--glow-batch", type=int, default=None, help="default 64 on GPU, else --batch")
    p.add_argument("--sample-batch", type=int, default=None, help="default --batch on GPU, else 1")
    p.add_argument("--nfe", type=int, default=100, help="Euler steps of the sampling part")
    p.add_argument("--parts", default="fm,sample,glow,split")
    p.add_argument("--dtypes", default="bfloat16,float32" if gpu else "float32")
    p.add_argument("--precisions", default="tf32,highest" if gpu else "highest")
    default_compile = "bfloat16,float32,sample" if gpu else ""  # minutes per compile on 2 cores
    p.add_argument("--torch-compile", default=default_compile, help="dtypes (and 'sample')")
    p.add_argument("--no-torch", action="store_true", help="flowzoo only")
    p.add_argument("--cpu-conv-ab", action=argparse.BooleanOptionalAction, default=None,
                   help="on CPU, flowzoo's fm step also with XLA's YNNPACK convolutions "
                   "(default: on CPU, off with --quick)")  # fmt: skip
    p.add_argument("--torchdyn", action=argparse.BooleanOptionalAction, help="default: on GPU")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count())
    p.add_argument("--device-name", default=None, help="device kind for the peak table")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--block-s", type=float, default=None, help="seconds per timed block")
    p.add_argument("--budget-s", type=float, default=None, help="skip parts that do not fit")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "accelerator.json"))  # fmt: skip
    a = p.parse_args(argv)
    a.quick = a.quick or a.tiny
    a.batch = a.batch or (4 if a.quick else 128)
    a.glow_batch = a.glow_batch or (64 if gpu and not a.quick else a.batch)
    a.sample_batch = a.sample_batch or (a.batch if gpu else (2 if a.quick else 1))
    a.torchdyn = gpu if a.torchdyn is None else a.torchdyn
    a.cpu_conv_ab = (not gpu and not a.quick) if a.cpu_conv_ab is None else a.cpu_conv_ab
    a.repeats = a.repeats or (3 if a.quick else 7 if gpu else 11)  # CPU steps vary 10-15%
    a.block_s = a.block_s or (0.05 if a.quick else 0.3 if gpu else 1.0)
    for name in ("parts", "dtypes", "precisions", "torch_compile"):
        setattr(a, name, [v for v in getattr(a, name).split(",") if v])
    return a


def _summary_table(d: dict[str, Any]) -> str:
    rows = []
    for part in ("fm", "sample", "glow"):
        for name, c in ((d.get(part) or {}).get("contenders") or {}).items():
            step = common.dig(c, "step_s", "median")
            rows.append([part, name, common.fmt_seconds(c.get("compile_s")),
                         common.fmt_seconds(step), common.fmt_rate(c.get("samples_per_s")),
                         common.fmt_pct(c.get("mfu")), common.fmt_pct(c.get("of_matmul_peak"))])  # fmt: skip
    head = ["part", "contender", "compile", "step", "samples/s", "MFU", "of matmul peak"]
    return common.format_table(head, rows)


def main(argv=None) -> dict[str, Any]:
    if argv is None:  # a script run: on the allocator `flowzoo train` would use (malloc.py)
        flowzoo_malloc.relaunch([__file__, *sys.argv[1:]])
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU
    gpu = jax.default_backend() == "gpu"
    args = parse(argv, gpu)
    torch_on = not args.no_torch and bool(torch) and bool(tcfm) and bool(tcfm_unet)
    if torch_on:
        torch.set_num_threads(args.torch_threads)
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
    budget, t0 = Budget(args.budget_s), time.perf_counter()
    d: dict[str, Any] = {
        "benchmark": "accelerator",
        "quick": args.quick,
        "env": common.env_info(("torch", "torchcfm", "torchdyn", "pot")),
        "device": device_info(args.device_name),
        "torch_threads": args.torch_threads if torch_on else None,
        "peer": "torchcfm" if torch_on else None,
        "compiler_options": compiler_options(),
        "allocator": flowzoo_malloc.loaded_allocator(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "skipped": budget.skipped,
    }

    def save(final: bool = False) -> None:
        d.update(wall_s=time.perf_counter() - t0, load_average_after=common.load_average())
        if gpu:
            d["jax_process_peak_bytes"] = jax.devices()[0].memory_stats().get("peak_bytes_in_use")
        derive(d)
        common.write_json(args.out, d)
        if final:  # the checks from the JSON as written, as run_all's check reads it
            d["checks"] = check(json.loads(Path(args.out).read_text()))
            common.write_json(args.out, d)

    modes = [mode_of(t, p) for t in args.dtypes for p in (args.precisions if t == "float32" else ["tf32"])]  # fmt: skip
    d["matmul_peak"] = matmul_peaks(modes, args.quick, torch_on, args.torch_threads)
    runs = {"fm": lambda: run_fm(args, gpu, torch_on, budget)}
    runs["sample"] = lambda: run_sample(args, gpu, torch_on, budget)
    runs["glow"] = lambda: run_glow(args, gpu, budget)
    runs["split"] = lambda: run_split(args, torch_on, budget)
    d["fm"] = {"batch": args.batch, "flops": None, "contenders": {}}
    for part in [p for p in ("fm", "sample", "glow", "split") if p in args.parts]:
        d[part] = runs[part]()
        save()
    if not gpu:
        remeasure_peaks(
            d["matmul_peak"], matmul_peaks(modes, args.quick, torch_on, args.torch_threads)
        )
    save(final=True)
    print(_summary_table(d))
    for c in d["checks"]:
        print(f"target: {c['what']}: {c['value']}, {c['target']}: {common.fmt_met(c['met'])}")
    print("wrote", args.out)
    return d


if __name__ == "__main__":
    main()
