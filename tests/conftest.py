"""Shared pytest configuration: strict rank promotion, a fixed PRNG key fixture, cheaper
XLA compiles, and one persistent XLA compilation cache for the whole test session.

Most tests are dominated by compiling small programs, not running them, so the suite asks
XLA:CPU for less optimisation (``--xla_backend_optimization_level=0``,
``--xla_llvm_disable_expensive_passes``): on this project's 2-core machine the image-model
tests take a third less time and training-heavy tests about the same. Results stay within
every test's tolerance; comparisons of two runs (resume == uninterrupted) use the same
flags on both sides. Set ``FLOWZOO_TEST_FULL_OPT=1`` to test with XLA's default
optimisation.

On a GPU or TPU the suite runs float32 matmuls and convolutions at full precision
(``jax_default_matmul_precision = "highest"``): its tests compare two formulations of the
same mathematics at float32 tolerances, and those devices' default precision rounds float32
operands (TF32 on NVIDIA Ampere and later), which moved such comparisons by 1e-3 on an H200.
The library's reference computations ask for full precision themselves
(``tests/test_precision.py``); ``FLOWZOO_TEST_MATMUL_PRECISION=default`` runs the suite at
the device's default instead. On CUDA the suite also asks XLA for deterministic kernels
(``--xla_gpu_deterministic_ops``): the resume tests compare a restarted run with an
uninterrupted one, which on an H200 differed by 4e-5 without it and by one unit in the last
place with it (so off the CPU they compare to float32 rounding, not bit for bit).

The cache only saves compile time: many tests (and the CLI subprocesses they start) build
the same small models anew, so they lower to identical programs, which XLA then compiles
once per session instead of once per test. The directory is fresh for each session
(created by the controlling process; xdist workers and subprocesses inherit it through
``JAX_COMPILATION_CACHE_DIR``), so no state carries over between runs, also where the
user's environment names a cache directory of its own. The same holds for
flowzoo's own cache of sample-quality classifiers (``FLOWZOO_CACHE``).
"""

import os
import shutil
import tempfile

import jax
import pytest

# NumPy's OpenBLAS on two threads runs 8-10x slower while another process holds the second
# core, which under `pytest -n 2` is always so (a 2048x2048 eigendecomposition: 15 s against
# 1.5 s): one BLAS thread per process. NumPy is loaded before this file (by pytest's
# plugins), so the limit is set through threadpoolctl (scikit-learn's dependency), and the
# environment variable covers the children the tests start.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
try:
    from threadpoolctl import threadpool_limits

    _ONE_BLAS_THREAD = threadpool_limits(1, user_api="blas")
except ImportError:  # without threadpoolctl the library's own default stays
    _ONE_BLAS_THREAD = None

# The flowzoo command re-executes itself under a faster allocator when one is installed
# (flowzoo.malloc; the dev extra installs mimalloc): a second interpreter start for each CLI
# subprocess a test starts, which buys nothing for the suite's small programs. The children
# keep glibc's malloc; tests/test_malloc.py sets FLOWZOO_MALLOC itself where it tests that.
os.environ.setdefault("FLOWZOO_MALLOC", "system")

# The suite's programs are small and many: compile time, not run time, is its cost. XLA:CPU
# at optimisation level 0, without LLVM's expensive passes and with its elemental emitters
# (--xla_cpu_use_fusion_emitters=false; the default fusion emitters take about 1.5x the
# compile time: tests/flows/test_glow.py, tests/cnf/test_cnf.py and
# tests/bijectors/test_image.py in 112 s against 170 s, two interleaved runs each) compiles
# them fastest. Codegen only: the same HLO is computed, but one computation compiled into two
# different programs (another steps_per_call, another batch_fn) may then differ in the last
# bit. The tests that promise bit-exact resume across programs run their training in child
# processes with the default emitters (tests/train/test_parallel.py: EXACT_EMITTERS).
# Children that run long loops drop these flags.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_use_fusion_emitters=false"
)
if not os.environ.get("FLOWZOO_TEST_FULL_OPT") and "optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):  # before the first computation initialises the backend; subprocesses inherit it
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()


def _cuda_installed() -> bool:
    """Whether a CUDA build of jaxlib is installed (read before JAX picks its backend)."""
    from importlib.metadata import distributions

    return any(
        (d.metadata["Name"] or "").lower().replace("_", "-").startswith("jax-cuda")
        for d in distributions()
    )


if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", "") and _cuda_installed():
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()
    )

jax.config.update("jax_numpy_rank_promotion", "raise")

_OWNER = "FLOWZOO_TEST_CACHE_OWNER"


def pytest_configure(config):
    if _OWNER not in os.environ:  # the controller (or a plain run); workers inherit these
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="flowzoo-xla-cache-")
        os.environ[_OWNER] = str(os.getpid())
        # the sample-quality classifiers are cached here, not in the user's ~/.cache
        os.environ["FLOWZOO_CACHE"] = tempfile.mkdtemp(prefix="flowzoo-cache-")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )
    jax.config.update(
        "jax_persistent_cache_min_entry_size_bytes",
        int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]),
    )
    precision = os.environ.get("FLOWZOO_TEST_MATMUL_PRECISION", "highest")
    if jax.default_backend() != "cpu" and precision != "default":
        jax.config.update("jax_default_matmul_precision", precision)


def _full_optimisation_env() -> dict[str, str]:
    """This process's environment for a child at XLA's default optimisation: the
    ``_FAST_COMPILE`` flags removed, ``FLOWZOO_TEST_FULL_OPT=1`` so that the child's own
    conftest adds none back."""
    fast = {f.split("=")[0] for f in _FAST_COMPILE.split()}
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=")[0] not in fast]
    return {**os.environ, "FLOWZOO_TEST_FULL_OPT": "1", "XLA_FLAGS": " ".join(kept)}


@pytest.fixture
def full_optimisation_env() -> dict[str, str]:
    """The environment of a child process at XLA's default optimisation (for tests that
    start a script rather than a pytest child; see the ``full_opt`` marker below)."""
    return _full_optimisation_env()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test marked ``full_opt`` runs in a child pytest at XLA's default optimisation.

    The fast-compile flags pay where compiling is the cost; a test that runs a long
    compiled loop instead (an ODE likelihood of an image model, a sampler over thousands
    of steps) runs two to three times longer under them, more than a child's start (about
    4 s) costs. The parent still sets up the test's fixtures; the child sets up its own
    and reports the outcome, with its output on failure.
    """
    if pyfuncitem.get_closest_marker("full_opt") is None or os.environ.get("FLOWZOO_TEST_FULL_OPT"):
        return None
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid],
        cwd=pyfuncitem.config.rootpath,
        env=_full_optimisation_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"{pyfuncitem.nodeid} failed in its full-optimisation child:\n"
        + proc.stdout[-4000:]
        + proc.stderr[-2000:]
    )
    if " passed" not in proc.stdout:  # skipped there (a missing extra): skipped here
        pytest.skip(f"skipped in its full-optimisation child: {proc.stdout[-500:]}")
    return True


def pytest_unconfigure(config):
    if os.environ.get(_OWNER) == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
        shutil.rmtree(os.environ.get("FLOWZOO_CACHE", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)``: ``benchmarks/<name>.py`` imported as a module, as
    ``run_all.py`` runs it (its sibling ``_common`` importable; registered in
    ``sys.modules``, which flax's dataclass modules need)."""
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        if str(bench) not in sys.path:
            sys.path.insert(0, str(bench))
        spec = importlib.util.spec_from_file_location(f"bench_{name}", bench / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def key():
    """A fixed PRNG key; tests derive sub-keys from it with ``jax.random.split``/``fold_in``."""
    return jax.random.key(0)


@pytest.fixture(scope="session")
def digits_classifier():
    """The digits sample-quality classifier that ships in the package (nothing is trained;
    ``tests/zoo/test_quality.py`` trains the recipe itself)."""
    from flowzoo.zoo import image_classifier

    return image_classifier("digits")


# A child that holds a run directory's lock (flowzoo.train.run_lock) with the lock's module
# file alone (standard library only, not the package with JAX), so that it starts in
# milliseconds.
_HOLD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("lock", sys.argv[2])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
with lock.run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder():
    """``hold(workdir) -> Popen``: a child process holding ``workdir``'s run lock (returned
    once it holds it; ``wait=False``: at once, for a child that may be refused); every
    holder is killed at the end of the test."""
    import subprocess
    import sys
    from pathlib import Path

    import flowzoo.train

    module = str(Path(flowzoo.train.__file__).with_name("_lock.py"))
    procs = []

    def hold(workdir, *, wait: bool = True):
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(workdir), module],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        if wait:  # else the caller reads whether it got the lock
            assert proc.stdout.readline().strip() == "held", proc.stderr.read()
        return proc

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
