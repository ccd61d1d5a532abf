"""CNF training memory against the number of solver steps: XLA's buffers of one training step.

A CNF trained by maximum likelihood differentiates through its ODE solve. Its memory should
not grow with the number of solver steps beyond the ODE states themselves, whichever
gradient method is used. This script compiles one training step, ``jax.value_and_grad`` of
the mean negative log-likelihood of :func:`flowzoo.cnf` (the log-density
:func:`flowzoo.integrate.ode_log_prob` with the exact divergence), for

* ``dim`` 2 (batch 512) and 64 (batch 128; digits-sized vectors), the field
  ``nets.time_mlp(dim, (64, 64))``;
* RK4 with 8 and with 64 fixed steps;
* the gradient methods ``adjoint="recursive"`` (for fixed steps: one ``lax.scan`` with every
  step rematerialised, so the backward pass holds the ``num_steps`` ODE states and one
  step's intermediates) and ``"backsolve"`` (diffrax's continuous adjoint, O(1) in steps);

and reads ``xla_step_bytes`` (``_common.memory``: argument + output + temporaries - aliased
bytes of ``compiled.memory_analysis()``). The figure is a property of the compiled program,
not of the machine's load. Also reported: the forward-only log-density's buffers and the
size of one ODE state (``batch * (dim + 1)`` floats: the sample and its log-density), the
unit in which the recursive adjoint's memory grows.

Target (issue 12): the 64-step step needs at most 1.1x the buffers of the 8-step step for
both gradient methods.

Run ``python benchmarks/cnf_memory.py [--out PATH]``; writes
``benchmarks/results/cnf_memory.json``.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp

try:  # run as a script: benchmarks/ is on sys.path
    import _common as common
except ImportError:  # imported as benchmarks.cnf_memory
    from benchmarks import _common as common

from flowzoo import nets
from flowzoo.cnf import cnf
from flowzoo.integrate import SolverConfig

CASES = ((2, 512), (64, 128))  # (dim, batch)
HIDDEN = (64, 64)
STEPS = (8, 64)
ADJOINTS = ("recursive", "backsolve")
SOLVER = "rk4"
TARGET = 1.1  # memory(64 steps) / memory(8 steps)


def training_step(dim: int, batch: int, steps: int, adjoint: str):
    """``(jitted value_and_grad step, params, x)`` of a CNF with ``steps`` RK4 steps."""
    flow = cnf(
        nets.time_mlp(dim, HIDDEN),
        dim,
        log_prob_solver=SolverConfig(SOLVER, steps, adjoint=adjoint),
    )
    x = jax.random.normal(jax.random.key(0), (batch, dim), jnp.float32)
    params = flow.init(jax.random.key(1), x)

    def loss(p, x):
        return -jnp.mean(flow.log_prob(p, x))

    return jax.jit(jax.value_and_grad(loss)), jax.jit(flow.log_prob), params, x


def measure(dim: int, batch: int) -> list[dict[str, Any]]:
    rows = []
    for adjoint in ADJOINTS:
        mem = {}
        for steps in STEPS:
            step, forward, params, x = training_step(dim, batch, steps, adjoint)
            mem[steps] = {
                "train": common.step_memory(step, params, x),
                "forward": common.step_memory(forward, params, x),
            }
            # the step runs and gives a finite loss: the figures belong to a working program
            value, _ = step(params, x)
            mem[steps]["loss"] = float(value)
        b8, b64 = (mem[s]["train"]["xla_step_bytes"] for s in STEPS)
        ratio = None if not (b8 and b64) else b64 / b8
        rows.append(
            {
                "dim": dim,
                "batch": batch,
                "adjoint": adjoint,
                "state_bytes": batch * (dim + 1) * 4,
                "by_steps": {str(s): mem[s] for s in STEPS},
                "ratio_64_over_8": ratio,
                "target": TARGET,
                "target_met": None if ratio is None else bool(ratio <= TARGET),
            }
        )
        print(
            f"dim {dim} batch {batch} {adjoint:>9}: train step "
            f"{common.fmt_bytes(b8)} (8 steps) / {common.fmt_bytes(b64)} (64 steps) = "
            f"{ratio:.3f}x; forward {common.fmt_bytes(mem[8]['forward']['xla_step_bytes'])}",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------- targets and docs table


def check(d: dict) -> list[dict[str, Any]]:
    """The buffers of 64 over 8 solver steps per case: ``[{"what", "value", "target", "met"}]``."""
    return [
        {
            "what": f"memory 64/8 steps dim {r['dim']} batch {r['batch']} {r['adjoint']}",
            "value": r["ratio_64_over_8"],
            "target": f"<= {r['target']}",
            "met": r["target_met"],
        }
        for r in d["results"]
    ]


def render(d: dict) -> str:
    """The docs block: XLA buffers of the training step at 8 and 64 solver steps, against the
    target."""
    rows = []
    for r in d["results"]:
        by = r["by_steps"]
        rows.append(
            [
                r["dim"],
                r["batch"],
                f"`{r['adjoint']}`",
                common.fmt_bytes(common.dig(by, "8", "train", "xla_step_bytes")),
                common.fmt_bytes(common.dig(by, "64", "train", "xla_step_bytes")),
                common.fmt_x(r.get("ratio_64_over_8"), 3),
                f"<= {r.get('target')}x",
                common.fmt_met(r.get("target_met")),
                common.fmt_bytes(common.dig(by, "8", "forward", "xla_step_bytes")),
                common.fmt_bytes(r.get("state_bytes")),
            ]
        )
    return (
        "XLA buffers of one compiled CNF training step (`value_and_grad` of the mean NLL, "
        "exact divergence, RK4 at 8 and 64 fixed steps); `forward` is the log-density alone "
        "at 8 steps, `state` one ODE state (sample and log-density).\n\n"
        + common.md_table(
            [
                "dim",
                "batch",
                "adjoint",
                "8 steps",
                "64 steps",
                "64 / 8",
                "target",
                "met",
                "forward",
                "state",
            ],
            rows,
        )
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/cnf_memory.json")
    cfg = ap.parse_args(argv)
    env = common.env_info()
    results = [row for dim, batch in CASES for row in measure(dim, batch)]
    payload = {
        "benchmark": "cnf_memory",
        "env": env,
        "load_average_after": common.load_average(),
        "config": {"cases": CASES, "hidden": HIDDEN, "steps": STEPS, "solver": "rk4"},
        "results": results,
        "checks": check({"results": results}),
    }
    common.write_json(cfg.out, payload)
    return payload


if __name__ == "__main__":
    main()
