"""float64 checks in their own process (``JAX_ENABLE_X64=1`` cannot be switched per test).

The worker (``x64_worker.py``) runs every bijector of the battery registry in float64 and
checks round trips, ``forward logdet == -inverse logdet`` and the log-det against
``slogdet(jacfwd)`` to 1e-10, and the ODE likelihood of a linear field against its closed
form to 1e-8. Float32 tolerances (1e-5) elsewhere would hide an error of order 1e-7 that
float64 exposes: a constant computed once in float32 fails here (fixed_affine did).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("x64_worker.py")
LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
"""The worker's programs are all compile and no run (one per bijector, float64, with a
``jacfwd`` reference): XLA:CPU's older elemental emitters compile them in about 0.6x the
time of its fusion emitters (the two parts 59 s -> 34 s on 2 cores). Codegen only: the
same HLO is computed, and the checks' tolerances are unchanged."""


@pytest.mark.slow
@pytest.mark.parametrize("part", [0, 1])  # half the registry each, in parallel under xdist
def test_log_dets_and_ode_likelihood_in_float64(part):
    flags = os.environ.get("XLA_FLAGS", "")
    flags = flags if "fusion_emitters" in flags else f"{flags} {LEGACY_EMITTERS}".strip()
    env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    out = subprocess.run(
        [sys.executable, str(WORKER), str(part), "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    report = out.stdout.strip().splitlines()
    assert out.returncode == 0, "\n".join(report) + out.stderr[-2000:]
    assert report[-1].startswith("OK ") and report[-1].split()[1] == report[-1].split()[3]
