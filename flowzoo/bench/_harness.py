"""The sampler benchmark: every (target, sampler, NFE budget, seed) cell, timed and scored.

A cell compiles ``samplers.run(name, key, problem, n, num_steps)`` once (compile time is
reported apart), runs it once to warm up and then ``repeats`` times (the median is the
steady-state wall time), and scores the samples against ``n`` exact samples of the target:
energy distance and MMD (with the noise floor, exact against exact, beside them), sliced W2,
mean and covariance errors, mode coverage for mixtures, KSD where the score is known, the
reported NFE, and for Markov chains the acceptance rate and the effective sample size per
second and per gradient evaluation (from a thinned trace of the second half of the run).
"""

from __future__ import annotations

import inspect
import math
import time
import weakref
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import metrics
from ..paths import cond_ot_path, vp_sde
from ..samplers import SAMPLERS, run, supports
from . import _mixture as gm
from ._peers import PEERS, T1, supports_peer
from ._targets import Target

ADAPTIVE_RTOLS = (1e-2, 1e-4)
"""Adaptive ODE solvers ignore the NFE budget: one cell per tolerance."""


class Settings(NamedTuple):
    """Benchmark settings: samples per cell, timed repeats (after one warm-up run unless
    ``warmup`` is False), chain trace length, tolerances of the adaptive ODE solvers."""

    n: int = 2000
    repeats: int = 3
    trace: int = 16
    warmup: bool = True
    rtols: tuple[float, ...] = ADAPTIVE_RTOLS


_TUNING: dict[str, dict[str, Any]] = {"annealed_langevin": {"num_levels": 8}}
"""The bench's own settings of particular samplers: 8 noise levels divide every budget of
8 or more evaluations that is a power of two."""


def _takes(name: str, option: str) -> bool:
    """Whether the flowzoo sampler ``name`` takes the keyword ``option`` (peers take none)."""
    if name in PEERS:
        return False
    param = inspect.signature(SAMPLERS[name].fn).parameters.get(option)
    return param is not None and param.kind != inspect.Parameter.VAR_KEYWORD


def _adaptive(name: str) -> bool:
    """Whether ``name`` is adaptive (its budgets are tolerances, not NFE); peers are not."""
    return name not in PEERS and SAMPLERS[name].adaptive


def steps_and_options(name: str, budget: int, target: Target) -> tuple[int | None, dict]:
    """The ``num_steps`` and options that spend about ``budget`` evaluations with ``name``.

    Steps come from the sampler's own ``steps_for`` (``None`` for adaptive samplers, which run
    at a tolerance instead); samplers that take a Langevin ``step_size`` get the target's,
    those that take ``t1`` (the flow-matching ODEs) stop at ``1 - 1e-3``, where the OT
    path's velocity is still regular for atoms.
    """
    if name in PEERS:
        return max(1, budget // PEERS[name].nfe_per_step), {}
    spec = SAMPLERS[name]
    options: dict[str, Any] = dict(_TUNING.get(name, {}))
    if _takes(name, "step_size"):
        options["step_size"] = target.step_size
    if _takes(name, "t1"):
        options["t1"] = T1
    if spec.adaptive:
        return None, options
    return spec.steps_for(budget, **options), options


def kind_of(name: str) -> str:
    """``"chain"``, ``"sde"`` or ``"ode"`` of a flowzoo sampler or a peer row."""
    return PEERS[name].kind if name in PEERS else SAMPLERS[name].kind


def _cov_error(x: np.ndarray, ref: np.ndarray) -> float:
    c, r = np.cov(x.T), np.cov(ref.T)
    return float(np.linalg.norm(np.atleast_2d(c - r)) / np.linalg.norm(np.atleast_2d(r)))


def _coverage(mix: gm.GaussianMixture, x) -> float | None:
    """Share of modes holding at least half their expected mass (mixtures of <= 100)."""
    k = mix.weights.shape[0]
    if k > 100:
        return None
    counts = np.bincount(np.asarray(gm.assign_modes(mix, x)), minlength=k) / x.shape[0]
    return float(np.mean(counts >= 0.5 * np.asarray(mix.weights)))


@jax.jit
def _distances(x, ref, key):
    """Energy distance, MMD and sliced W2 in one compiled call (one compile per shape)."""
    return (
        metrics.energy_distance(x, ref),
        metrics.mmd(x, ref),
        metrics.sliced_wasserstein(key, x, ref),
    )


# keyed by the target's own functions (weakly), so two targets with the same name (two
# runs called fm_moons) never share a cache entry
_REFERENCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SCORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def reference_samples(target: Target, seed: int, n: int):
    """The ``n`` exact samples every cell of ``target`` is scored against (computed once per
    process: for a learned target with a solve reference this is a Tsit5 solve)."""
    cache = _REFERENCES.setdefault(target.sample, {})
    if (seed, n) not in cache:
        cache[seed, n] = target.sample(jax.random.fold_in(jax.random.key(seed), 1), n)
    return cache[seed, n]


def score_samples(target: Target, x, ref, key) -> dict[str, Any]:
    """The sample-quality metrics of ``x`` against exact samples ``ref`` (same n)."""
    x = jnp.asarray(x, jnp.float32)
    if not bool(jnp.all(jnp.isfinite(x))):
        return {"diverged": True}
    xn, rn = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    ed, mmd, sw2 = _distances(x, jnp.asarray(ref, jnp.float32), key)
    out: dict[str, Any] = {
        "diverged": False,
        "energy_distance": float(ed),
        "mmd": float(mmd),
        "sliced_w2": float(sw2),
        "mean_error": float(np.linalg.norm(xn.mean(0) - rn.mean(0))),
        "cov_error": _cov_error(xn, rn),
    }
    if target.mixture is not None:
        out["mode_coverage"] = _coverage(target.mixture, x)
    if target.score is not None:
        if target.score not in _SCORES:  # one compile of the target's score per process
            _SCORES[target.score] = jax.jit(target.score)
        out["ksd"] = float(metrics.kernel_stein_discrepancy(x[:1000], _SCORES[target.score]))
    return out


def _chain_stats(info, wall: float, num_steps: int, n: int) -> dict[str, float]:
    out = {"acceptance_rate": float(info.acceptance_rate)}
    if info.trace is not None:
        half = np.asarray(info.trace)[info.trace.shape[0] // 2 :]
        ess = np.asarray(metrics.effective_sample_size(half))
        out.update(
            ess_min=float(ess.min()),
            ess_mean=float(ess.mean()),
            ess_per_second=float(ess.mean() / wall),
            ess_per_gradient=float(ess.mean() / (num_steps * n)),
        )
    return out


def run_cell(target: Target, name: str, budget: int | float, seed: int, settings: Settings):
    """One benchmark cell: compile, time and score ``name`` on ``target`` at ``budget``.

    ``budget``: an NFE budget, or for adaptive ODE solvers the tolerance (``rtol = atol``).
    """
    t_cell = time.perf_counter()
    problem = target.problem(vp_sde(), cond_ot_path())
    peer = PEERS.get(name)
    if not (supports_peer(name, problem, target) if peer else supports(name, problem)):
        return None
    tolerance = _adaptive(name)
    steps, options = steps_and_options(name, int(budget) if not tolerance else 0, target)
    if tolerance:
        options.update(rtol=float(budget), atol=float(budget))
    traced = _takes(name, "trace")  # chains that can keep a trace get ESS statistics
    if traced and steps % settings.trace == 0:
        options["trace"] = settings.trace
    salt = zlib.crc32(f"{target.name}/{name}".encode()) % 2**31  # stable across processes
    key = jax.random.fold_in(jax.random.key(seed), salt)
    if peer is not None and not peer.jittable:  # a PyTorch peer: nothing to compile
        compiled, compile_s = (lambda k: peer.run(k, problem, target, settings.n, steps)), 0.0
    else:
        if peer is not None:
            fn = jax.jit(lambda k: peer.run(k, problem, target, settings.n, steps))
        else:
            fn = jax.jit(lambda k: run(name, k, problem, settings.n, steps, **options))
        t0 = time.perf_counter()
        compiled = fn.lower(key).compile()
        compile_s = time.perf_counter() - t0
    t_warm = time.perf_counter()
    if settings.warmup:
        jax.block_until_ready(compiled(key))
    warm_s = time.perf_counter() - t_warm
    walls = []
    for r in range(settings.repeats):
        t0 = time.perf_counter()
        x, info = jax.block_until_ready(compiled(jax.random.fold_in(key, r + 1)))
        walls.append(time.perf_counter() - t0)
    wall = float(np.median(walls))
    t_score = time.perf_counter()
    ref = reference_samples(target, seed, settings.n)
    cell = {
        "target": target.name,
        "sampler": name,
        "budget": budget,
        "seed": seed,
        "n": settings.n,
        "num_steps": steps,
        "nfe": int(info.nfe),
        "compile_seconds": compile_s,
        "wall_seconds": wall,
        "kind": kind_of(name),
        **score_samples(target, x, ref, jax.random.fold_in(key, 99)),
    }
    if traced:
        cell.update(_chain_stats(info, wall, steps, settings.n))
    elif kind_of(name) == "chain":
        cell["acceptance_rate"] = float(info.acceptance_rate)
    cell["scoring_seconds"] = time.perf_counter() - t_score
    cell["sampler_seconds"] = compile_s + warm_s + float(np.sum(walls))
    cell["cell_seconds"] = time.perf_counter() - t_cell
    return cell


def noise_floor(target: Target, seed: int, settings: Settings, pairs: int = 8) -> dict[str, float]:
    """The typical magnitude of each distance between two independent exact samples of size
    n: the mean absolute value over ``pairs`` pairs (the estimates are unbiased, so a single
    pair can land near zero by chance)."""
    base = jax.random.fold_in(jax.random.key(seed), 1000)
    out: dict[str, list[float]] = {"energy_distance": [], "mmd": [], "sliced_w2": []}
    for p in range(pairs):
        a = target.sample(jax.random.fold_in(base, 2 * p), settings.n)
        b = target.sample(jax.random.fold_in(base, 2 * p + 1), settings.n)
        ed, mmd, sw2 = _distances(
            jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), jax.random.fold_in(base, p)
        )
        out["energy_distance"].append(abs(float(ed)))
        out["mmd"].append(abs(float(mmd)))
        out["sliced_w2"].append(float(sw2))
    return {k: float(np.mean(v)) for k, v in out.items()}


def budgets_for(name: str, nfe: list[int], settings: Settings | None = None) -> list[float]:
    """The budget column of a sampler: the NFE list, or the tolerances for adaptive ones."""
    rtols = (settings or Settings()).rtols
    return list(rtols) if _adaptive(name) else [float(b) for b in nfe]


def finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
