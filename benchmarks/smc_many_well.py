"""How SMC's ``log Z`` error on ``many_well32`` depends on the budget and on how it is spent.

``python benchmarks/smc_many_well.py`` runs :func:`flowzoo.samplers.smc_sample` (MALA moves,
the registry's sampler ``smc``) on FAB's Many Well in 32 dimensions (``log Z = 164.6957``,
exact) over ``--seeds`` seeds (default 8) for each setting below, and writes the error of
``log Z`` (mean, sd over seeds, RMSE) and the final ESS to ``--out`` (default
``benchmarks/results/smc_many_well.json``):

* **budget**: 2 MALA moves a temperature at ``K`` = 255, 1,023, 2,047 temperatures (the
  bench budgets 512, 2,048 and 4,096 gradients a particle), 1,000 particles;
* **particles or temperatures**: 4,000 particles and 511 temperatures (the same total
  gradients as 1,000 particles at 2,047, a quarter of the budget a particle); 500 and
  1,000 particles at 4,095 temperatures of one move (the budget of 4,096 a particle); and
  1,000 particles at 4 and 8 moves a temperature (1,023 and 511 temperatures, the same
  budget a particle);
* **schedule**: ``b_k = (k / K)^power`` for power 1, 2 and 4 (the default) at 2,047
  temperatures;
* **the leaderboard's cell**: 2,000 particles, 2,047 temperatures, the defaults.

Accuracy only: no timing is a result here (``seconds`` is the wall time of each setting,
compilation included, recorded with the load average). ``--quick`` runs two settings on two
seeds and writes to ``/tmp`` (a smoke test).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from _common import env_info, write_json

from flowzoo.bench._literature import many_well
from flowzoo.samplers import smc_sample

SETTINGS = [
    ("budget", {"n": 1000, "K": 255}),
    ("budget", {"n": 1000, "K": 1023}),
    ("budget", {"n": 1000, "K": 2047}),
    ("split", {"n": 4000, "K": 511}),
    ("split", {"n": 500, "K": 4095, "num_moves": 1}),
    ("split", {"n": 1000, "K": 4095, "num_moves": 1}),
    ("split", {"n": 1000, "K": 1023, "num_moves": 4}),
    ("split", {"n": 1000, "K": 511, "num_moves": 8}),
    ("schedule", {"n": 1000, "K": 2047, "power": 1.0}),
    ("schedule", {"n": 1000, "K": 2047, "power": 2.0}),
    ("leaderboard", {"n": 2000, "K": 2047}),
]


def run_setting(target, setting: dict, seeds: int) -> dict:
    opts = dict(setting)
    n, k = opts.pop("n"), opts.pop("K")
    fn = jax.jit(
        lambda key: smc_sample(target.log_prob, key, n, target.reference_scale, (32,), k, **opts)
    )
    start = time.perf_counter()
    outs = [fn(jax.random.key(s)) for s in range(seeds)]
    err = np.array([float(o.log_z) - target.log_z for o in outs])
    moves = opts.get("num_moves", 2)
    return {
        **setting,
        "gradients_per_particle": 1 + k * moves,
        "seeds": seeds,
        "errors": err.round(4).tolist(),
        "mean_error": float(err.mean()),
        "sd": float(err.std(ddof=1)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "ess_mean": float(np.mean([float(o.ess) for o in outs])),
        "acceptance_mean": float(np.mean([float(o.acceptance) for o in outs])),
        "seconds": time.perf_counter() - start,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    settings = SETTINGS[:2] if args.quick else SETTINGS
    seeds = 2 if args.quick else args.seeds
    default = Path(__file__).parent / "results" / "smc_many_well.json"
    out = Path(args.out or ("/tmp/smc_many_well.json" if args.quick else default))
    target = many_well(32)
    env = env_info()
    rows = []
    for group, setting in settings:
        row = {"group": group, **run_setting(target, setting, seeds)}
        rows.append(row)
        print(
            f"{group:11s} {str(setting):44s} error {row['mean_error']:+.3f} ± {row['sd']:.3f} "
            f"(RMSE {row['rmse']:.3f}), ESS {row['ess_mean']:.0f}",
            flush=True,
        )
    env["load_average_end"] = env_info()["load_average"]
    write_json(out, {"target": "many_well32", "log_z": target.log_z, "rows": rows, "env": env})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
