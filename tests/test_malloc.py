"""The allocator the ``flowzoo`` command preloads (:mod:`flowzoo.malloc`): which library
each choice resolves to, that the relaunched process runs on it, and that it removes the
page faults of XLA:CPU's per-call temporary buffer that glibc's ``malloc`` causes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowzoo import malloc

LINUX = sys.platform.startswith("linux")
needs_mimalloc = pytest.mark.skipif(
    not LINUX or malloc.find_allocator("auto")[0] != "mimalloc",
    reason="mimalloc (the malloc extra, in the dev extra) is not installed on this Linux",
)


def _run(code: str, choice: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, malloc.ENV: choice}
    env.pop("FLOWZOO_MALLOC_RELAUNCHED", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_choices_resolve_and_bad_ones_say_what_is_accepted():
    assert malloc.find_allocator("system") == ("system", None)
    name, path = malloc.find_allocator("auto")
    assert name in {"mimalloc", "tcmalloc", "system"}
    assert (path is None) == (name == "system")
    if path is not None:
        assert Path(path).is_file()
    with pytest.raises(ValueError, match="expected one of auto, mimalloc, tcmalloc, system"):
        malloc.find_allocator("jemalloc2")


RELAUNCH = """
import os, sys
from flowzoo import malloc
malloc.relaunch(["-c", "from flowzoo import malloc; import os; "
                 "print('child', malloc.loaded_allocator(), os.environ.get('MIMALLOC_PURGE_DELAY'))"])
print('not relaunched', malloc.loaded_allocator())
"""


@pytest.mark.slow
@needs_mimalloc
def test_relaunch_runs_the_command_again_on_the_chosen_allocator():
    out = _run(RELAUNCH, "auto")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "mimalloc", "-1"]
    out = _run(RELAUNCH, "system")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["not", "relaunched", "system"]


def test_a_named_allocator_that_is_missing_is_an_error(monkeypatch):
    monkeypatch.setenv(malloc.ENV, "tcmalloc")
    monkeypatch.setattr(malloc, "_tcmalloc_library", lambda: None)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(ValueError, match="no tcmalloc library found.*libtcmalloc-minimal4"):
        malloc.relaunch(["-c", "pass"])


# A jitted function whose temporary buffer (two 64 MiB intermediates kept apart by an
# optimisation barrier) is above glibc's mmap threshold: each call maps it afresh.
FAULTS = """
import json, resource
import jax, jax.numpy as jnp
from flowzoo import malloc

@jax.jit
def f(x):
    y = jax.lax.optimization_barrier(jnp.sin(x))
    z = jax.lax.optimization_barrier(jnp.cos(y) * x)
    return jnp.sum(z * y)

x = jnp.ones((4096, 4096), jnp.float32)
for _ in range(3):
    f(x).block_until_ready()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    f(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 5
print(json.dumps({"allocator": malloc.loaded_allocator(), "faults": faults}))
"""


@pytest.mark.slow
@needs_mimalloc
def test_the_preloaded_allocator_removes_the_page_faults_of_the_temporary_buffer():
    """glibc: at least half of the buffer's 4 KiB pages fault again on every call;
    mimalloc without purging: under a tenth of that."""
    pages = 2 * 4096 * 4096 * 4 // 4096  # the two intermediates, in pages
    code = f"from flowzoo import malloc\nmalloc.relaunch(['-c', {FAULTS!r}])\n{FAULTS}"
    glibc, mim = (json.loads(_run(code, c).stdout.splitlines()[-1]) for c in ("system", "auto"))
    assert glibc["allocator"] == "system" and mim["allocator"] == "mimalloc"
    assert glibc["faults"] > 0.5 * pages, (glibc, pages)
    assert mim["faults"] < 0.1 * glibc["faults"], (mim, glibc)


@pytest.mark.slow
@needs_mimalloc
def test_flowzoo_train_runs_on_the_allocator_and_says_so(tmp_path):
    sets = ["train.steps=2", "data.n_train=256", "data.n_test=64", "plot.n_samples=64",
            "plot.grid=8"]  # fmt: skip
    cmd = [sys.executable, "-m", "flowzoo.cli", "train", "fm_moons", "--no-progress",
           "--workdir", str(tmp_path)] + [a for s in sets for a in ("--set", s)]  # fmt: skip
    env = {**os.environ, malloc.ENV: "auto"}  # the suite's own children run on "system"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "fm_moons" / "summary.json").read_text())
    assert summary["allocator"] == "mimalloc"
    env = {**os.environ, malloc.ENV: "bogus"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "FLOWZOO_MALLOC='bogus': expected one of auto" in out.stderr
