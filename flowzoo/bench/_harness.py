"""The sampler benchmark: every (target, sampler, NFE budget, seed) cell, timed and scored.

A cell compiles ``samplers.run(name, key, problem, n, num_steps)`` once, shared by its
seeds (compile time is reported apart, 0 where a seed reused the program), runs it once to
warm up and then ``repeats`` times (the median is the steady-state wall time), and scores the samples against ``n`` exact samples of the target:
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
_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Compiled cells by target (its log-density, sampler or field) and (sampler, steps, n,
options): the seeds of a cell share one program (the key is its argument)."""
_SHIPPED: dict[int, tuple] = {}  # shipped reference samples: id -> (array, cache)


def reference_size(target: Target, n: int) -> int:
    """How many samples a cell of ``n`` is scored on: ``n`` for a target with exact samples;
    for one that carries only ``reference.samples`` (``sample`` is ``None``), at most half
    the shipped samples, so the noise floor compares two disjoint halves of the same size."""
    if target.sample is not None:
        return n
    if target.reference is None or target.reference.samples is None:
        raise ValueError(
            f"target {target.name!r} has neither an exact sampler nor reference samples"
        )
    return min(n, target.reference.samples.shape[0] // 2)


def _shipped(target: Target, key, m: int, part: int):
    """``m`` reference samples from one half (``part`` 0 or 1) of a random split of the
    shipped ones, without replacement."""
    pool = np.asarray(target.reference.samples, np.float32)
    order = np.asarray(jax.random.permutation(key, pool.shape[0]))
    half = order[part * (pool.shape[0] // 2) :][:m]
    return jnp.asarray(pool[half])


def reference_samples(target: Target, seed: int, n: int):
    """The reference samples every cell of ``target`` is scored against (computed once per
    process): ``n`` exact samples (for a learned target with a solve reference, a Tsit5
    solve), or for a target without an exact sampler :func:`reference_size` of its shipped
    reference samples."""
    if target.sample is not None:
        cache = _REFERENCES.setdefault(target.sample, {})
    else:  # shipped samples: keyed by the array object, kept alive by the cache itself
        cache = _SHIPPED.setdefault(id(target.reference.samples), (target.reference.samples, {}))[1]
    if (seed, n) not in cache:
        key = jax.random.fold_in(jax.random.key(seed), 1)
        if target.sample is None:
            cache[seed, n] = _shipped(target, key, reference_size(target, n), 0)
        else:
            cache[seed, n] = target.sample(key, n)
    return cache[seed, n]


def moment_errors(target: Target, x) -> dict[str, float]:
    """Errors of the sample's moments in units of the target's reference standard
    deviations ``s_i``: ``mean_error_sd`` = RMS over coordinates of ``(xbar_i - m_i) / s_i``,
    ``mean_error_sd_max`` its largest coordinate, ``std_error_rel`` = RMS of
    ``(sd_i(x) - s_i) / s_i``. Empty without reference moments."""
    ref = target.reference
    if ref is None:
        return {}
    xn = np.asarray(x, np.float64)
    z = (xn.mean(0) - ref.mean) / ref.std
    r = (xn.std(0, ddof=1) - ref.std) / ref.std
    return {
        "mean_error_sd": float(np.sqrt(np.mean(z**2))),
        "mean_error_sd_max": float(np.max(np.abs(z))),
        "std_error_rel": float(np.sqrt(np.mean(r**2))),
    }


def score_samples(target: Target, x, ref, key) -> dict[str, Any]:
    """The sample-quality metrics of ``x`` against reference samples ``ref``: the distances
    on the first ``len(ref)`` rows of ``x``, the moment errors (:func:`moment_errors`) on
    all of ``x``."""
    x = jnp.asarray(x, jnp.float32)
    if not bool(jnp.all(jnp.isfinite(x))):
        return {"diverged": True}
    m = ref.shape[0]
    xn, rn = np.asarray(x[:m], np.float64), np.asarray(ref, np.float64)
    ed, mmd, sw2 = _distances(x[:m], jnp.asarray(ref, jnp.float32), key)
    out: dict[str, Any] = {
        "diverged": False,
        "energy_distance": float(ed),
        "mmd": float(mmd),
        "sliced_w2": float(sw2),
        "mean_error": float(np.linalg.norm(xn.mean(0) - rn.mean(0))),
        "cov_error": _cov_error(xn, rn),
        **moment_errors(target, x),
    }
    if target.mixture is not None:
        out["mode_coverage"] = _coverage(target.mixture, x)
    if target.score is not None:
        if target.score not in _SCORES:  # one compile of the target's score per process
            _SCORES[target.score] = jax.jit(target.score)
        out["ksd"] = float(metrics.kernel_stein_discrepancy(x[:1000], _SCORES[target.score]))
    return out


def _chain_stats(info, wall: float, n: int) -> dict[str, float]:
    """Acceptance and, from the second half of the trace, ESS per coordinate (total over
    the ``n`` chains): its mean per second of steady-state wall time and per gradient
    evaluation, where the gradients are the ``n`` chains' reported NFE (warm-up included)."""
    out = {"acceptance_rate": float(info.acceptance_rate)}
    if info.trace is not None:
        half = np.asarray(info.trace)[info.trace.shape[0] // 2 :]
        ess = np.asarray(metrics.effective_sample_size(half))
        out.update(
            ess_min=float(ess.min()),
            ess_mean=float(ess.mean()),
            ess_per_second=float(ess.mean() / wall),
            ess_per_gradient=float(ess.mean() / (max(int(info.nfe), 1) * n)),
        )
    return out


def _estimates(target: Target, info) -> dict[str, float]:
    """A sampler's own ``log Z`` and importance ESS (SMC, flow samplers), and the error of
    ``log Z`` against the target's exact value where both exist."""
    out = {}
    log_z, ess = float(info.log_z), float(info.ess)
    if math.isfinite(log_z):
        out["log_z"] = log_z
        if target.log_z is not None:
            out["log_z_error"] = log_z - target.log_z
    if math.isfinite(ess):
        out["importance_ess"] = ess
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
    owner = target.log_prob or target.sample
    programs = _PROGRAMS.setdefault(owner, {})
    program = (name, steps, settings.n, repr(sorted(options.items())))
    cached = program in programs  # another seed of this cell: the same program, a new key
    if peer is not None and not peer.jittable:  # a PyTorch peer: nothing to compile
        compiled, compile_s = (lambda k: peer.run(k, problem, target, settings.n, steps)), 0.0
    elif cached:
        compiled, compile_s = programs[program], 0.0
    else:
        if peer is not None:
            fn = jax.jit(lambda k: peer.run(k, problem, target, settings.n, steps))
        else:
            fn = jax.jit(lambda k: run(name, k, problem, settings.n, steps, **options))
        t0 = time.perf_counter()
        compiled = programs[program] = fn.lower(key).compile()
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
        "compile_reused": cached,
        "wall_seconds": wall,
        "kind": kind_of(name),
        **score_samples(target, x, ref, jax.random.fold_in(key, 99)),
        **_estimates(target, info),
    }
    if traced:
        cell.update(_chain_stats(info, wall, settings.n))
    elif kind_of(name) == "chain":
        cell["acceptance_rate"] = float(info.acceptance_rate)
    cell["scoring_seconds"] = time.perf_counter() - t_score
    cell["sampler_seconds"] = compile_s + warm_s + float(np.sum(walls))
    cell["cell_seconds"] = time.perf_counter() - t_cell
    return cell


def _exact_pair(target: Target, base, p: int, n: int):
    """Pair ``p`` of independent exact samples of size :func:`reference_size` (two disjoint
    halves of the shipped reference samples for a target without an exact sampler)."""
    if target.sample is None:
        m, key = reference_size(target, n), jax.random.fold_in(base, p)
        return _shipped(target, key, m, 0), _shipped(target, key, m, 1)
    a = target.sample(jax.random.fold_in(base, 2 * p), n)
    return a, target.sample(jax.random.fold_in(base, 2 * p + 1), n)


def noise_floor(target: Target, seed: int, settings: Settings, pairs: int = 8) -> dict[str, float]:
    """The typical magnitude of each metric for exact sampling at this n: for the distances
    between two independent exact samples, the mean absolute value over ``pairs`` pairs (the
    estimates are unbiased, so a single pair can land near zero by chance); for the moment
    errors, their mean over the same exact samples."""
    base = jax.random.fold_in(jax.random.key(seed), 1000)
    out: dict[str, list[float]] = {"energy_distance": [], "mmd": [], "sliced_w2": []}
    for p in range(pairs):
        a, b = _exact_pair(target, base, p, settings.n)
        ed, mmd, sw2 = _distances(
            jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), jax.random.fold_in(base, p)
        )
        out["energy_distance"].append(abs(float(ed)))
        out["mmd"].append(abs(float(mmd)))
        out["sliced_w2"].append(float(sw2))
        for k, v in moment_errors(target, a).items():
            out.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in out.items()}


def budgets_for(name: str, nfe: list[int], settings: Settings | None = None) -> list[float]:
    """The budget column of a sampler: the NFE list, or the tolerances for adaptive ones."""
    rtols = (settings or Settings()).rtols
    return list(rtols) if _adaptive(name) else [float(b) for b in nfe]


def finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
