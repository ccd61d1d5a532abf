"""Reference moments and samples of the benchmark's posteriors without exact samples.

``python benchmarks/sampler_references.py`` runs, for ``logreg_breast_cancer`` and
``lgcp_synthetic`` (``flowzoo/bench/_posteriors.py``):

1. **NUTS** through flowzoo's registry (``flowzoo.samplers.run("nuts", ..., trace=...)``:
   blackjax's NUTS, each chain with Stan's window adaptation of step size and diagonal mass
   matrix), many chains from the prior, the warm-up discarded. Diagnostics per coordinate:
   the rank-normalised split R-hat (Vehtari et al. 2021: the larger of the bulk and the
   folded R-hat on split chains, pooled ranks through the normal quantile
   ``(r - 3/8) / (S + 1/4)``), the bulk ESS (``flowzoo.metrics.effective_sample_size`` on the
   rank-normalised split chains) and the plain ESS of ``x`` and of ``(x - mean)^2``
   (``effective_sample_size`` on the draws). The reference ``mean`` and ``std`` are the
   moments of every kept draw (float64).
2. **A cross-check by another algorithm**: adapted MALA (``samplers.run("mala_adapted",
   ...)``, dual averaging of each chain's step towards 0.574) with many chains; for the
   logistic regression, whose posterior is correlated (condition number about 85), on the
   coordinates ``u`` whitened by the Laplace approximation at the MAP (``w = m + R u``,
   ``R R^T`` the inverse Hessian: an affine change of variables with constant Jacobian,
   computed by Newton's method here, independent of NUTS), its chains started from that
   approximation; for the LGCP in the target's own (prior-whitened) coordinates from the
   prior. Its ESS (``effective_sample_size``) must be at least 7,000 per coordinate, and
   its mean and std must agree with NUTS's to 0.05 reference standard deviations (max over
   coordinates); the script fails otherwise.
3. **The shipped files**: ``flowzoo/bench/data/<name>_reference.npz`` (``mean``, ``std``
   float64; ``samples``: NUTS draws thinned by at least the largest autocorrelation time
   ``draws / ESS`` over coordinates and over the three ESS above, rounded up, then evenly
   spread over the chains), and the summary JSON (``--out``, default
   ``benchmarks/results/sampler_references.json``: seeds, chains, steps, warm-up, wall time
   with compilation, load average, R-hat, ESS, the cross-check's deviations, the smallest
   eigenvalue of the posterior covariance behind each target's ``step_size``).

``--quick`` runs tiny chains and writes to ``/tmp/sampler_references`` (a smoke test; its
numbers mean nothing). ``--only NAME[,NAME]`` runs some targets.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _common as common  # noqa: E402

from flowzoo import bench, metrics, samplers  # noqa: E402


class RunConfig(NamedTuple):
    """One chain run: ``chains`` chains of ``warmup + samples`` steps, every ``thin``-th
    position kept (warm-up ones dropped afterwards)."""

    chains: int
    warmup: int
    samples: int
    thin: int
    seed: int


class TargetConfig(NamedTuple):
    nuts: RunConfig
    mala: RunConfig
    precondition: bool  # MALA on the Laplace-whitened coordinates
    keep: int  # size of the shipped reference sample
    dtype: str  # its dtype


CONFIGS = {
    "logreg_breast_cancer": TargetConfig(
        RunConfig(32, 1024, 3072, 1, 1), RunConfig(1000, 512, 1536, 4, 2), True, 10_000, "float32"
    ),
    "lgcp_synthetic": TargetConfig(
        RunConfig(32, 512, 1536, 1, 1), RunConfig(64, 2048, 30720, 32, 2), False, 2_000, "float16"
    ),
}
"""Chains, warm-up and sampling steps, trace thinning and seed of each run (the warm-up a
power-of-two fraction of the steps, as the registry's ``warmup_fraction`` takes it)."""
QUICK = {
    name: cfg._replace(nuts=RunConfig(4, 64, 192, 1, 1), mala=RunConfig(16, 64, 192, 2, 2), keep=64)
    for name, cfg in CONFIGS.items()
}
MIN_CROSS_ESS = 7_000
MAX_DEVIATION = 0.05  # reference standard deviations


# ------------------------------------------------------------------ diagnostics


def _chunks(d: int, size: int):
    return (slice(i, min(i + size, d)) for i in range(0, d, size))


def ess(draws: np.ndarray) -> np.ndarray:
    """``flowzoo.metrics.effective_sample_size`` of ``(S, C, d)`` draws, per coordinate,
    in chunks of coordinates (its FFT holds ``2 S C`` complex values a coordinate)."""
    size = max(1, 2**24 // (draws.shape[0] * draws.shape[1]))
    out = [
        np.asarray(metrics.effective_sample_size(draws[..., c]))
        for c in _chunks(draws.shape[2], size)
    ]
    return np.concatenate(out).astype(np.float64)


def rank_normal(draws: np.ndarray) -> np.ndarray:
    """Pooled ranks (average for ties) through the normal quantile ``(r - 3/8) / (S C +
    1/4)``, per coordinate (Vehtari et al. 2021)."""
    s, c, d = draws.shape
    ranks = stats.rankdata(draws.reshape(s * c, d), axis=0)
    return stats.norm.ppf((ranks - 0.375) / (s * c + 0.25)).reshape(s, c, d)


def split(draws: np.ndarray) -> np.ndarray:
    """Each chain's two halves as two chains: ``(S, C, d) -> (S // 2, 2 C, d)``."""
    half = draws.shape[0] // 2
    return np.concatenate([draws[:half], draws[half : 2 * half]], 1)


def rhat(draws: np.ndarray) -> np.ndarray:
    """Gelman-Rubin's ``sqrt(var_plus / W)`` of ``(S, C, d)`` draws, per coordinate."""
    s = draws.shape[0]
    within = np.mean(np.var(draws, 0, ddof=1), 0)
    between = s * np.var(np.mean(draws, 0), 0, ddof=1)
    return np.sqrt(((s - 1) / s * within + between / s) / within)


def diagnostics(draws: np.ndarray) -> dict[str, np.ndarray]:
    """Per coordinate of ``(S, C, d)`` draws: rank-normalised split R-hat (max of bulk and
    folded), bulk ESS, and plain ESS of ``x`` and of ``(x - mean)^2``."""
    parts: dict[str, list[np.ndarray]] = {"rhat": [], "bulk_ess": [], "ess": [], "ess_sq": []}
    size = max(1, 2**23 // (draws.shape[0] * draws.shape[1]))
    for c in _chunks(draws.shape[2], size):
        x = np.asarray(draws[..., c], np.float64)
        z = rank_normal(split(x))
        folded = rank_normal(split(np.abs(x - np.median(x.reshape(-1, x.shape[2]), 0))))
        parts["rhat"].append(np.maximum(rhat(z), rhat(folded)))
        parts["bulk_ess"].append(ess(z.astype(np.float32)))
        parts["ess"].append(ess(x.astype(np.float32)))
        parts["ess_sq"].append(ess(((x - x.mean((0, 1))) ** 2).astype(np.float32)))
    return {k: np.concatenate(v) for k, v in parts.items()}


def summary(diag: dict[str, np.ndarray], draws: int) -> dict[str, Any]:
    """The figures the JSON records, and the largest autocorrelation time ``draws / ESS``."""
    tau = draws / np.min([diag["bulk_ess"], diag["ess"], diag["ess_sq"]], 0)
    return {
        "rhat_max": float(diag["rhat"].max()),
        "bulk_ess_min": float(diag["bulk_ess"].min()),
        "ess_min": float(diag["ess"].min()),
        "ess_sq_min": float(diag["ess_sq"].min()),
        "ess_median": float(np.median(diag["ess"])),
        "autocorrelation_time_max": float(tau.max()),
    }


# ------------------------------------------------------------------ runs


def chain_run(name: str, problem: samplers.Problem, cfg: RunConfig) -> tuple[np.ndarray, dict]:
    """``samplers.run(name, ...)`` with a trace; the kept post-warm-up draws ``(S, C, d)``
    float32 and the run's record (wall time includes compilation)."""
    steps = cfg.warmup + cfg.samples
    fraction = cfg.warmup / steps
    assert int(fraction * steps) == cfg.warmup, (cfg, fraction)
    run = partial(
        samplers.run,
        name,
        problem=problem,
        n=cfg.chains,
        num_steps=steps,
        trace=steps // cfg.thin,
        warmup_fraction=fraction,
    )
    load = common.load_average()
    start = time.perf_counter()
    _, info = jax.block_until_ready(jax.jit(run)(jax.random.key(cfg.seed)))
    wall = time.perf_counter() - start
    draws = np.asarray(info.trace[cfg.warmup // cfg.thin :], np.float32)
    record = {
        "sampler": name,
        "seed": cfg.seed,
        "key": f"jax.random.key({cfg.seed})",
        "chains": cfg.chains,
        "warmup_steps": cfg.warmup,
        "sampling_steps": cfg.samples,
        "trace_thin": cfg.thin,
        "kept_draws": int(draws.shape[0] * draws.shape[1]),
        "grads_per_chain": int(info.nfe),
        "acceptance": float(info.acceptance_rate),
        "wall_seconds": round(wall, 1),
        "load_before": load,
        "load_after": common.load_average(),
    }
    return draws, record


def laplace(target: bench.Target) -> tuple[np.ndarray, np.ndarray]:
    """The MAP and the inverse Hessian there (float64), by Newton's method from 0 on the
    target's float32 gradient and Hessian (autodiff)."""
    f = lambda w: target.log_prob(w[None])[0]
    grad, hess = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    w = np.zeros(target.dim)
    for _ in range(50):
        h = -np.asarray(hess(jnp.asarray(w, jnp.float32)), np.float64)
        step = np.linalg.solve(h, np.asarray(grad(jnp.asarray(w, jnp.float32)), np.float64))
        w = w + step
        if np.max(np.abs(step)) < 1e-6:
            break
    h = -np.asarray(hess(jnp.asarray(w, jnp.float32)), np.float64)
    return w, np.linalg.inv(0.5 * (h + h.T))


def mala_problem(target: bench.Target, precondition: bool):
    """The cross-check's problem and the map from its coordinates back to the target's: on
    the Laplace-whitened ``u`` (``w = m + R u``, chains from ``N(0, I)`` in ``u``) with
    ``precondition``, else the target itself with chains from the prior."""
    d = target.dim
    init = lambda key, n: jax.random.normal(key, (n, d))
    if not precondition:
        return samplers.Problem((d,), log_prob=target.log_prob, init=init), lambda u: u
    mode, cov = laplace(target)
    m = jnp.asarray(mode, jnp.float32)
    r_t = jnp.asarray(np.linalg.cholesky(cov).T, jnp.float32)
    to_w = jax.jit(lambda u: m + jnp.matmul(u, r_t, precision=jax.lax.Precision.HIGHEST))
    problem = samplers.Problem((d,), log_prob=lambda u: target.log_prob(to_w(u)), init=init)
    return problem, to_w


def thinned_sample(draws: np.ndarray, tau: float, keep: int, dtype: str) -> tuple[np.ndarray, int]:
    """``keep`` draws of ``(S, C, d)``: every ``ceil(tau)``-th of each chain, then ``keep``
    evenly spaced over the chains (chain by chain), so draws of one chain stay at least
    ``ceil(tau)`` steps apart."""
    thin = max(1, math.ceil(tau))
    kept = draws[::thin].transpose(1, 0, 2).reshape(-1, draws.shape[2])
    if kept.shape[0] < keep:
        raise RuntimeError(f"only {kept.shape[0]} draws after thinning by {thin}, need {keep}")
    pick = np.linspace(0, kept.shape[0] - 1, keep).round().astype(int)
    return kept[pick].astype(dtype), thin


def round_down(v: float) -> float:
    """``v`` rounded down to one significant digit."""
    e = math.floor(math.log10(v))
    return float(f"{math.floor(v / 10**e)}e{e}")


# ------------------------------------------------------------------ per target


def reference_run(name: str, cfg: TargetConfig, data_dir: Path) -> dict[str, Any]:
    """NUTS, the cross-check, the shipped ``.npz``; the target's JSON record."""
    target = bench.TARGETS[name](reference=False)
    start = time.perf_counter()
    draws, nuts = chain_run("nuts", target.problem(None, None), cfg.nuts)
    flat = draws.reshape(-1, target.dim).astype(np.float64)
    mean, std = flat.mean(0), flat.std(0)
    nuts.update(summary(diagnostics(draws), flat.shape[0]))
    print(f"{name}: NUTS {nuts}", flush=True)

    problem, to_w = mala_problem(target, cfg.precondition)
    u, mala = chain_run("mala_adapted", problem, cfg.mala)
    w = np.stack([np.asarray(to_w(jnp.asarray(u_i))) for u_i in u])  # (S, C, d)
    mala.update(summary(diagnostics(w), w.shape[0] * w.shape[1]))
    mala["preconditioned_by_laplace"] = cfg.precondition
    flat_w = w.reshape(-1, target.dim).astype(np.float64)
    mean_dev = np.abs(flat_w.mean(0) - mean) / std
    std_dev = np.abs(flat_w.std(0) - std) / std
    cross = {
        "max_mean_deviation_sd": float(mean_dev.max()),
        "max_std_deviation_sd": float(std_dev.max()),
        "ess_min": mala["ess_min"],
        "agrees": bool(max(mean_dev.max(), std_dev.max()) <= MAX_DEVIATION),
        "ess_enough": bool(mala["ess_min"] >= MIN_CROSS_ESS),
    }
    print(f"{name}: MALA {mala}\n{name}: cross-check {cross}", flush=True)

    sample, thin = thinned_sample(draws, nuts["autocorrelation_time_max"], cfg.keep, cfg.dtype)
    path = data_dir / f"{name}_reference.npz"
    np.savez_compressed(path, mean=mean, std=std, samples=sample)
    eig = float(np.linalg.eigvalsh(np.cov(flat, rowvar=False))[0])
    return {
        "dim": target.dim,
        "nuts": nuts,
        "cross_check": {"mala_adapted": mala, **cross},
        "reference_sample": {
            "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "shape": list(sample.shape),
            "dtype": cfg.dtype,
            "thin": thin,
            "bytes": path.stat().st_size,
        },
        "std_range": [float(std.min()), float(std.max())],
        "smallest_covariance_eigenvalue": eig,
        "step_size": round_down(0.25 * eig) if eig > 0 else None,  # None: too few draws
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CONFIGS), help="targets, comma-separated")
    parser.add_argument("--quick", action="store_true", help="tiny runs into /tmp (smoke test)")
    parser.add_argument("--out", default=None, help="the summary JSON")
    args = parser.parse_args(argv)
    names = args.only.split(",")
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {sorted(CONFIGS)}")
    configs = QUICK if args.quick else CONFIGS
    scratch = Path("/tmp/sampler_references")
    data_dir = scratch if args.quick else ROOT / "flowzoo" / "bench" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    default_out = scratch if args.quick else HERE / "results"
    out = Path(args.out) if args.out else default_out / "sampler_references.json"
    env = common.env_info(("blackjax", "scipy", "scikit-learn"))
    start = time.perf_counter()
    results = {name: reference_run(name, configs[name], data_dir) for name in names}
    payload = {
        "command": "python benchmarks/sampler_references.py " + " ".join(argv or sys.argv[1:]),
        "env": env,
        "configs": {name: configs[name]._asdict() for name in names},
        "targets": results,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "load_after": common.load_average(),
        "rules": {
            "rhat": "rank-normalised split R-hat, max of bulk and folded (Vehtari et al. 2021)",
            "bulk_ess": "flowzoo.metrics.effective_sample_size on rank-normalised split chains",
            "ess": "flowzoo.metrics.effective_sample_size on the draws (x, and (x - mean)^2)",
            "cross_check": f"MALA's ESS >= {MIN_CROSS_ESS} per coordinate; mean and std within "
            f"{MAX_DEVIATION} NUTS standard deviations of NUTS's, max over coordinates",
            "step_size": "0.25 x the smallest eigenvalue of the NUTS draws' covariance, "
            "rounded down to one significant digit",
        },
    }
    common.write_json(out, payload)
    print(f"wrote {out} ({payload['wall_seconds']} s)")
    failed = [
        n
        for n, r in results.items()
        if not (r["cross_check"]["agrees"] and r["cross_check"]["ess_enough"])
    ]
    if failed and not args.quick:
        raise SystemExit(f"cross-check failed on {failed}; see {out}")


if __name__ == "__main__":
    main()
