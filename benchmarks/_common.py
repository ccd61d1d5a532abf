"""Shared helpers for flowzoo benchmarks: compile vs steady-state timing, tables, JSON.

Every benchmark script in this folder follows the same recipe:

* **compile time**: ``jax.clear_caches()``, then time ``jitted.lower(*args)`` (tracing +
  lowering to StableHLO) and ``lowered.compile()`` (XLA compilation) on a freshly built
  function, repeated a few times; see :func:`measure_compile`. ``jax.jit`` and
  ``equinox.filter_jit`` both expose ``.lower(...).compile()``, so peers are measured the
  same way. :func:`measure_first_call` gives the other common definition (first call,
  compile and one execution, minus one steady-state step) as a cross-check.
* **steady state**: after warm-up, time blocks of ``n`` consecutive calls ending in
  ``jax.block_until_ready`` and take the median over repeats of the per-step time; see
  :func:`interleaved_steady`. Cases compared with each other are timed in alternating rounds
  so that a busy shared machine slows all of them alike.
* **memory**: :func:`memory` reads XLA's buffer assignment of a compiled step
  (``compiled.memory_analysis()``: arguments + outputs + temporaries - aliased bytes, the
  buffers one call needs); :func:`measure_compile` records it for the last compiled repeat
  and :func:`step_memory` compiles a step once just for it.
* **output**: :func:`write_json` stores the measurements next to :func:`env_info`
  (versions, device, CPU count, load average, date); :func:`format_table` prints them.

Peers are optional imports (:func:`optional_import`): a missing peer is recorded as ``null``.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import math
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

# --------------------------------------------------------------------------- environment


def optional_import(name: str):
    """Import ``name`` or return ``None`` when it (or one of its dependencies) is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class LazyImport:
    """A peer module imported on first use (:func:`optional_import`), not when the benchmark
    module is: ``run_all.py`` imports every benchmark to render its docs table, which must work
    without the peers (torch, flowjax, ...) installed. False where the peer is missing."""

    def __init__(self, name: str):
        self._name, self._module, self._tried = name, None, False

    def _load(self):
        if not self._tried:
            self._module, self._tried = optional_import(self._name), True
        return self._module

    def __bool__(self) -> bool:
        return self._load() is not None

    def __getattr__(self, attr: str):
        module = self._load()
        if module is None:
            raise ImportError(f"{self._name} is not installed (pip install -e '.[bench]')")
        value = getattr(module, attr)
        setattr(self, attr, value)  # kept: a timed peer step pays a plain attribute lookup
        return value


def have_flowjax() -> bool:
    """Whether the flowjax peer imports (its flows and distributions, equinox, paramax)."""
    needs = ("equinox", "paramax", "flowjax.flows", "flowjax.distributions")
    return all(optional_import(name) is not None for name in needs)


def flowjax_trainable(flow) -> tuple[Any, Callable[[Any, Any], Any]]:
    """``(params, log_prob(params, x))`` of a flowjax distribution, split as ``flowjax.train`` does.

    ``params`` are the inexact-array leaves outside paramax's non-trainable wrappers (paramax
    renamed ``NonModel`` to ``NonTrainable``; whichever exists is used); ``log_prob``
    recombines them with the static rest and unwraps the paramax wrappers before evaluating.
    """
    eqx = importlib.import_module("equinox")
    paramax = importlib.import_module("paramax")
    frozen = getattr(paramax, "NonTrainable", None) or getattr(paramax, "NonModel", ())
    params, static = eqx.partition(
        flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, frozen)
    )

    def log_prob(params, x):
        return paramax.unwrap(eqx.combine(params, static)).log_prob(x)

    return params, log_prob


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or ``None``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _cpu_model() -> str | None:
    return _cpuinfo().get("model name") or platform.processor() or None


def cpu_id() -> str | None:
    """Family, model and widest vector extension of the CPU (``/proc/cpuinfo``), e.g.
    ``"family 26 model 2, AVX-512"``: a model name such as "AMD EPYC" spans generations
    whose speed ratios against a peer differ (XLA's and torch's GEMM rank differently)."""
    fields = _cpuinfo()
    flags = set(fields.get("flags", "").split())
    isa = next(
        (
            name
            for flag, name in (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))
            if flag in flags
        ),
        None,
    )
    parts = [f"family {fields['cpu family']} model {fields['model']}"] if "model" in fields else []
    if isa:
        parts.append(isa + (" + AVX-512" if isa == "AMX" else ""))
    return ", ".join(parts) or None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (``None`` where the OS does not provide them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def env_info(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Where and with what a benchmark ran: versions, device, CPUs, load, date, commit."""
    dev = jax.devices()[0]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    versions = {
        name: package_version(name)
        for name in ("jax", "jaxlib", "flowzoo", "flax", "optax", "numpy", *packages)
    }
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax_version": jax.__version__,
        "versions": versions,
        "backend": jax.default_backend(),
        "device": f"{dev.platform}:{dev.device_kind}",
        "device_count": jax.device_count(),
        "cpu_model": _cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "load_average": load_average(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "x64": bool(jax.config.jax_enable_x64),
        "git_commit": _git_commit(),
    }


# --------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles, min and max of ``values`` (plus the raw list)."""
    v = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
        "values": [float(x) for x in v],
    }


def rounds_ratio(rounds: Mapping[str, Any], num: str, den: str) -> dict[str, Any] | None:
    """Case ``num``'s step time over ``den``'s in :func:`interleaved_steady`'s ``rounds``,
    round by round (the rounds pair them), summarised; ``None`` if either is missing."""
    if num not in rounds or den not in rounds:
        return None
    a, b = rounds[num]["step_s"]["values"], rounds[den]["step_s"]["values"]
    return summarize([x / y for x, y in zip(a, b, strict=True)])


class Ready:
    """The carry of a step that blocks itself (a torch step on a CPU): what
    :func:`interleaved_steady` calls ``block_until_ready`` on."""

    def block_until_ready(self):
        return self


def accelerator():
    """``benchmarks/accelerator.py`` as a module: the ``fm_cifar10`` recipe and its train
    step (:func:`accelerator.train_step_case`), which other scripts time variants of."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module("accelerator")


def patched_train_steps(
    cfg: dict[str, Any], batch: int, variants: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, tuple], dict[str, Any]]:
    """The ``cfg`` train step (float32, full-precision matmuls) once per variant, each
    compiled with its ``{dotted.name: replacement}`` patches in place (``{}``: as shipped):
    ``(name -> (step, state), name -> {"compile_s": ...})`` for :func:`interleaved_steady`."""
    import contextlib
    from unittest import mock

    cases, records = {}, {}
    for name, patches in variants.items():
        with contextlib.ExitStack() as stack:
            for target, value in patches.items():
                stack.enter_context(mock.patch(target, value))
            case, record, _ = accelerator().train_step_case(cfg, batch, "highest", False)
        cases[name], records[name] = case, {"compile_s": record["compile_s"]}
    return cases, records


def unet_variant_args(argv, doc: str, out: Path, no_step_help: str):
    """The command line of the scripts that time variants of the ``fm_cifar10`` UNet
    (``--quick``, ``--batch``, ``--repeats``, ``--torch-threads``, ``--no-torch``,
    ``--no-step``, ``--out``); ``repeats`` defaults to 15 (3 with ``--quick``)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small UNet: a smoke run")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=None, help="default 15 (quick 3)")
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-step", action="store_true", help=no_step_help)
    ap.add_argument("--out", default=str(out))
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 15)
    return args


# --------------------------------------------------------------------------- compile time


def measure_compile(
    make: Callable[[], tuple[Any, tuple]],
    repeats: int = 3,
    clear_caches: bool = True,
    keep_compiled: bool = False,
) -> dict[str, Any]:
    """Time tracing+lowering and XLA compilation of a freshly built jitted function.

    Args:
      make: ``make() -> (jitted, args)``; called once per repeat so every repeat starts from
        new Python closures. ``jitted`` must have ``.lower(*args)`` (``jax.jit``,
        ``equinox.filter_jit``).
      repeats: number of independent measurements.
      clear_caches: call ``jax.clear_caches()`` before each measurement so nothing compiled
        earlier in the process is reused.

    Returns:
      ``{"lower_s", "compile_s", "total_s", "total_cpu_s"}`` summaries (see
      :func:`summarize`); ``total_s`` (lower + compile, wall clock) is what tables call
      compile time; ``total_cpu_s`` is the process CPU time of the same span (less sensitive
      to other processes competing for the CPU); ``memory`` is :func:`memory` of the last
      compiled repeat; with ``keep_compiled``, ``compiled`` is that compiled object itself
      (for :func:`compiled_flops` without compiling once more; not JSON).
    """
    compiled = None
    lower, comp, total, cpu = [], [], [], []
    for _ in range(repeats):
        jitted, args = make()
        if clear_caches:
            jax.clear_caches()
        c0, t0 = time.process_time(), time.perf_counter()
        lowered = jitted.lower(*args)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2, c2 = time.perf_counter(), time.process_time()
        lower.append(t1 - t0)
        comp.append(t2 - t1)
        total.append(t2 - t0)
        cpu.append(c2 - c0)
    out = {
        "lower_s": summarize(lower),
        "compile_s": summarize(comp),
        "total_s": summarize(total),
        "total_cpu_s": summarize(cpu),
        "memory": memory(compiled),
    }
    return {**out, "compiled": compiled} if keep_compiled else out


def measure_first_call(
    make: Callable[[], tuple[Callable, tuple]], clear_caches: bool = True
) -> float:
    """Seconds of the first call (trace, compile, one execution) of a fresh jitted function."""
    fn, args = make()
    if clear_caches:
        jax.clear_caches()
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- memory


def memory(compiled) -> dict[str, Any]:
    """XLA's buffer assignment of a compiled function, in bytes.

    ``xla_step_bytes = argument + output + temp - alias`` bytes of
    ``compiled.memory_analysis()``: the device buffers one call needs (parameters, optimizer
    state and batch in, results out, activations and other temporaries), not counting what
    the process holds elsewhere. ``compiled`` is what ``jitted.lower(*args).compile()``
    returns (``jax.jit`` or ``equinox.filter_jit``); ``{"xla_step_bytes": None}`` when the
    backend offers no analysis.
    """
    compiled = getattr(compiled, "compiled", compiled)  # equinox wraps jax's Compiled
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backends without memory analysis
        m = None
    if m is None:
        return {"xla_step_bytes": None}
    fields = ("argument", "output", "temp", "alias", "generated_code")
    out = {f"{f}_bytes": int(getattr(m, f"{f}_size_in_bytes", 0)) for f in fields}
    out["xla_step_bytes"] = (
        out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    )
    return out


def step_memory(jitted, *args) -> dict[str, Any]:
    """:func:`memory` of ``jitted`` compiled for ``args`` (one extra compile, not timed)."""
    try:
        return memory(jitted.lower(*args).compile())
    except Exception as e:  # noqa: BLE001 - a memory figure must never stop a benchmark
        return {"xla_step_bytes": None, "error": f"{type(e).__name__}: {e}"}


def compiled_flops(compiled) -> float | None:
    """Floating-point operations of one call of a compiled function, by XLA's cost analysis.

    A multiply-add counts as 2; ``None`` when the backend offers no analysis. XLA counts the
    operations of the optimised program (dots, elementwise and reductions alike), so for an
    MLP step the figure is dominated by, and close to, ``2 * m * k * n`` summed over its dots.
    """
    compiled = getattr(compiled, "compiled", compiled)
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    flops = None if not cost else cost.get("flops")
    return None if flops is None or flops <= 0 else float(flops)


def matmul_rate(
    m: int, k: int, repeats: int = 7, target_block_s: float = 0.3, torch_threads: int | None = None
) -> dict[str, Any]:
    """Measured float32 matmul throughput, FLOP/s, of ``(m, k) @ (k, k)`` on this machine.

    XLA: 32 chained products ``x <- x @ q`` in one jitted ``lax.scan`` (``q`` orthogonal, so
    values neither grow nor vanish; one dispatch per 32 products). With ``torch_threads``
    set and torch importable, the same chain in torch (``torch.mm``, that many threads) too.
    The median over ``repeats`` timed blocks is reported: this is the reference against which
    a step's FLOP/s is a fraction of "matmul peak" (the machine's rate at that shape, not a
    datasheet number).

    Returns:
      ``{"shape": [m, k, k], "xla_flops_per_s": float, "torch_flops_per_s": float | None}``.
    """
    import jax.numpy as jnp

    chain = 32
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((k, k)))
    x0 = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    qj = jnp.asarray(q, jnp.float32)

    @jax.jit
    def step(x):
        return jax.lax.scan(lambda c, _: (c @ qj, None), x, None, length=chain)[0]

    flops = 2.0 * m * k * k * chain
    timing = interleaved_steady({"xla": (step, jnp.asarray(x0))}, repeats, target_block_s)
    out: dict[str, Any] = {
        "shape": [m, k, k],
        "xla_flops_per_s": flops / timing["xla"]["step_s"]["median"],
        "torch_flops_per_s": None,
    }
    torch = optional_import("torch") if torch_threads else None
    if torch is not None:
        torch.set_num_threads(torch_threads)
        qt, xt = torch.from_numpy(q.astype(np.float32)), torch.from_numpy(x0)

        def tstep(x):
            with torch.no_grad():
                for _ in range(chain):
                    x = torch.mm(x, qt)
            return x

        tt = interleaved_steady({"torch": (tstep, xt)}, repeats, target_block_s)
        out["torch_flops_per_s"] = flops / tt["torch"]["step_s"]["median"]
    return out


def fmt_bytes(b: float | None) -> str | None:
    """``12.3 MiB`` / ``456 KiB``."""
    if b is None:
        return None
    if b >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    if b >= 2**20:
        return f"{b / 2**20:.1f} MiB"
    return f"{b / 2**10:.0f} KiB"


# --------------------------------------------------------------------------- steady state

Step = Callable[[Any], Any]
"""``carry -> carry``: one call of the jitted function whose throughput is measured."""


def time_block(step: Step, carry: Any, n: int) -> tuple[float, float, Any]:
    """Run ``n`` chained calls and block; returns (wall s/step, process-CPU s/step, carry)."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        carry = step(carry)
    jax.block_until_ready(carry)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n, carry


def calibrate(step: Step, carry: Any, target_s: float, min_steps: int = 3) -> tuple[int, Any]:
    """Number of steps that makes one timed block last about ``target_s`` seconds."""
    n = 1
    while True:
        dt, _, carry = time_block(step, carry, n)
        if dt * n >= 0.2 * target_s or n >= 4096:
            return max(min_steps, int(round(target_s / max(dt, 1e-9)))), carry
        n *= 4


def interleaved_steady(
    cases: dict[str, tuple[Step, Any]],
    repeats: int = 15,
    target_block_s: float = 0.25,
    warmup: int = 2,
    return_carry: bool = False,
) -> dict[str, dict[str, Any]]:
    """Steady-state time per step of several cases, timed in alternating rounds.

    Every case is warmed up (``warmup`` calls, so compilation is excluded) and calibrated to
    blocks of about ``target_block_s``; then each round times one block of every case, the
    order reversing every round. Interleaving keeps ratios between cases meaningful when
    other processes share the CPU.

    Args:
      cases: ``name -> (step, carry)`` with ``step(carry) -> carry`` (already jitted).
      repeats: timed blocks per case; the median is reported.
      target_block_s: approximate duration of one timed block.
      warmup: untimed calls before calibration.
      return_carry: also return each case's final carry under ``"carry"`` (e.g. to check
        that training stayed finite; drop it before writing JSON).

    Returns:
      ``name -> {"step_s": summary, "cpu_s": summary, "steps_per_repeat": n}`` where
      ``step_s`` is wall-clock seconds per step and ``cpu_s`` process CPU seconds per step
      (all threads; ``cpu_s`` close to ``step_s`` on a multi-core machine means the step
      ran mostly on one core).
    """
    state: dict[str, list] = {}
    for name, (step, carry) in cases.items():
        for _ in range(warmup):
            carry = step(carry)
        jax.block_until_ready(carry)
        n, carry = calibrate(step, carry, target_block_s)
        state[name] = [step, carry, n, [], []]
    names = list(cases)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            st = state[name]
            wall, cpu, st[1] = time_block(st[0], st[1], st[2])
            st[3].append(wall)
            st[4].append(cpu)
    out = {}
    for name, st in state.items():
        out[name] = {
            "step_s": summarize(st[3]),
            "cpu_s": summarize(st[4]),
            "steps_per_repeat": st[2],
        }
        if return_carry:
            out[name]["carry"] = st[1]
    return out


# --------------------------------------------------------------------------- output


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic | np.ndarray) or hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (numpy/JAX scalars converted, NaN as null) as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    return path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns (``None`` shows as ``-``)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_seconds(s: float | None) -> str | None:
    """``1.23 s``, ``4.56 ms`` or ``7.8 us``."""
    if s is None:
        return None
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_rate(r: float | None) -> str | None:
    """Samples per second with a k/M suffix."""
    if r is None:
        return None
    if r >= 1e6:
        return f"{r / 1e6:.2f}M"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k"
    return f"{r:.0f}"


# --------------------------------------------------------------------------- docs tables
# helpers of the ``render`` functions that turn a benchmark's JSON into its docs block


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (``None`` shows as ``-``)."""
    cells = [["-" if c is None else str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def dig(d: Any, *keys, default=None):
    """``d[k1][k2]...``, or ``default`` where a level is missing, ``None`` or not a dict."""
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def fmt_x(v: float | None, digits: int = 2) -> str | None:
    """``1.23x``."""
    return None if v is None else f"{v:.{digits}f}x"


def fmt_rounds(s: dict | None) -> str | None:
    """``1.23x (1.10-1.31)``: median of per-round ratios and its IQR."""
    if not s:
        return None
    return f"{s['median']:.2f}x ({s['q1']:.2f}-{s['q3']:.2f})"


def fmt_met(flag) -> str | None:
    """``yes`` / ``**no**`` for a target's verdict."""
    return None if flag is None else ("yes" if flag else "**no**")


def fmt_pct(v: float | None) -> str | None:
    return None if v is None else f"{v:.0%}"


def fmt_mem(d: dict | None) -> str | None:
    """:func:`fmt_bytes` of a record's ``memory.xla_step_bytes``."""
    return fmt_bytes(dig(d, "memory", "xla_step_bytes"))


# --------------------------------------------------------------------------- load accounting
# how run_all.py decides that a script's figures were taken on a busy machine


def busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine so far (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    busy = fields[0] + fields[1] + fields[2] + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def load1() -> float | None:
    la = load_average()
    return None if la is None else la[0]


def settle(target: float, max_s: float, poll_s: float = 5.0) -> float:
    """Wait until the 1-minute load is below ``target`` (at most ``max_s``); seconds waited."""
    t0 = time.perf_counter()
    while max_s > 0 and time.perf_counter() - t0 < max_s:
        la = load1()
        if la is None or la < target:
            break
        time.sleep(poll_s)
    return time.perf_counter() - t0


def load_flags(rec: dict[str, Any], threshold: float, other_threshold: float) -> list[str]:
    """Why a script's figures count as taken under load (empty: they do not)."""
    reasons = []
    start, end = rec.get("load_before"), rec.get("load_after")
    if start is not None and start > threshold:
        reasons.append(f"1-min load {start:.2f} at the start > {threshold}")
    own = rec.get("own_load_share")
    if end is not None and end - (own or 0.0) > threshold:
        mine = "" if own is None else f" (about {own:.2f} of it the script's own)"
        reasons.append(f"1-min load {end:.2f} at the end{mine} > {threshold}")
    other = rec.get("other_cpu_cores")
    if other is not None and other > other_threshold:
        reasons.append(f"other processes used {other:.2f} cores on average > {other_threshold}")
    return reasons


def run_accounted(
    name: str, argv: list[str], log_path: Path, cwd: Path, threshold: float, other_threshold: float
) -> dict[str, Any]:
    """Run ``argv`` (benchmark ``name``), its output to stdout and ``log_path``, and account for
    the machine's load: the 1-minute load before and after, the return code and wall time, its
    own CPU time and cores, its share of the load at the end (own cores times
    ``1 - exp(-wall / 60 s)``), the cores other processes used meanwhile, and
    :func:`load_flags` of these (``load_reasons``, ``under_load``)."""
    rec: dict[str, Any] = {"load_before": load1()}
    print(f"\n=== {name}: {shlex.join(argv[1:])} (1-min load {rec['load_before']})", flush=True)
    busy0, child0, t0 = busy_seconds(), children_cpu(), time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    own_cpu = children_cpu() - child0
    busy1 = busy_seconds()
    rec.update(
        {
            "returncode": rc,
            "wall_s": round(wall, 2),
            "load_after": load1(),
            "own_cpu_s": round(own_cpu, 2),
            "own_cores": round(own_cpu / wall, 3) if wall > 0 else None,
        }
    )
    rec["own_load_share"] = round((rec["own_cores"] or 0.0) * (1 - math.exp(-wall / 60)), 3)
    if busy0 is not None and busy1 is not None and wall > 0:
        rec["other_cpu_cores"] = round(max(0.0, (busy1 - busy0 - own_cpu) / wall), 3)
    else:
        rec["other_cpu_cores"] = None
    rec["load_reasons"] = load_flags(rec, threshold, other_threshold)
    rec["under_load"] = bool(rec["load_reasons"])
    status = "ok" if rc == 0 else f"FAILED (exit {rc}, see {log_path})"
    flag = " -- TAKEN UNDER LOAD: " + "; ".join(rec["load_reasons"]) if rec["under_load"] else ""
    print(f"=== {name}: {status}, {wall:.0f} s{flag}", flush=True)
    return rec


# --------------------------------------------------------------------------- docs blocks
# run_all.py replaces what lies between the markers of docs/benchmarks.md with these blocks

MARKER = re.compile(
    r"(<!-- run_all:(?P<name>[\w-]+):begin -->\n)(?P<body>.*?)(<!-- run_all:(?P=name):end -->)",
    re.S,
)


def caption(name: str, d: dict, rec: dict | None, threshold: float, timed: bool = True) -> str:
    """The line every generated block starts with: when, where, under what load (``rec``: the
    script's record in ``run_all.json``; ``timed=False``: quality figures, not flagged)."""
    env = d.get("env", {})
    if rec is not None:
        start, end, reasons = rec.get("load_before"), rec.get("load_after"), rec["load_reasons"]
        date = rec.get("date") or env.get("date")
    else:  # a script run by hand: its own JSON's load averages, without the corrections
        start = dig(env, "load_average", default=[None])[0]
        end = (d.get("load_average_after") or [None])[0]
        date = env.get("date")
        reasons = load_flags({"load_before": start, "load_after": end}, threshold, math.inf)
    versions = env.get("versions") or {}
    vtxt = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "numpy")
    fmt = lambda v: "?" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        f"_Generated by `benchmarks/run_all.py` from `benchmarks/results/{name}.json`: taken "
        f"{date or '?'} (commit {env.get('git_commit') or '?'}), {env.get('cpu_count') or '?'} "
        f"x {env.get('cpu_model') or env.get('device') or '?'}"
        + (f" ({env['cpu_id']})" if env.get("cpu_id") else "")
        + ", 1-min load average "
        f"{fmt(start)} at the start and {fmt(end)} at the end; {vtxt}._"
    ]
    if reasons and not timed:
        lines += [
            "",
            "Quality figures only (test NLL after a fixed number of steps from fixed seeds): "
            "the load (" + "; ".join(reasons) + ") slows them down but does not change them.",
        ]
    elif reasons:
        lines += [
            "",
            '!!! warning "Taken under load"',
            "    These figures were taken on a busy machine (" + "; ".join(reasons) + "); they "
            "are not published results.",
        ]
    return "\n".join(lines)


def update_docs(
    docs_file: Path,
    out_dir: Path,
    blocks: Mapping[str, Callable[[dict, dict | None], str]],
    allow_quick: bool = False,
) -> dict[str, str]:
    """Replace every marked block ``NAME`` whose JSON exists by ``blocks[NAME](json, record)``;
    returns ``name -> what happened``. ``record`` is the script's entry in
    ``out_dir/run_all.json`` when it wrote this JSON, else ``None``."""
    text = docs_file.read_text()
    records = {}
    summary = out_dir / "run_all.json"
    if summary.exists():
        records = json.loads(summary.read_text()).get("scripts", {})
    status: dict[str, str] = {}

    def replace(m: re.Match) -> str:
        name = m.group("name")
        path = out_dir / f"{name}.json"
        if name not in blocks:
            status[name] = "no renderer: left as is"
            return m.group(0)
        if not path.exists():
            status[name] = f"no {path.name}: left as is"
            return m.group(0)
        d = json.loads(path.read_text())
        quick = dig(d, "config", "quick") or d.get("quick") or dig(records, name, "quick")
        if quick and not allow_quick:
            status[name] = "smoke-run (--quick) JSON: left as is"
            return m.group(0)
        rec = records.get(name)
        if rec is not None and Path(rec.get("json", "")).name != path.name:
            rec = None
        status[name] = "updated" + (" (taken under load)" if rec and rec["under_load"] else "")
        return m.group(1) + blocks[name](d, rec) + "\n" + m.group(4)

    new = MARKER.sub(replace, text)
    if new != text:
        docs_file.write_text(new)
    return status
