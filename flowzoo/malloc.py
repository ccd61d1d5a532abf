"""The memory allocator of a CPU run, chosen when the process starts.

XLA:CPU takes the temporary buffer of every call of a compiled program from ``malloc``
and frees it when the call ends. For an image model's train step that buffer holds the
activations the backward pass reads, hundreds of megabytes. glibc serves an allocation
that large with a fresh ``mmap`` and returns it with ``munmap``, so every step page-faults
on every page of it again and the kernel zeroes each one. An allocator that keeps freed
memory mapped hands the same pages back: mimalloc with its purging turned off faults on
none of them. PyTorch's CPU launcher (``torch.backends.xeon.run_cpu``) preloads such an
allocator for the same reason. ``docs/benchmarks.md`` gives the fault counts and step
times (``benchmarks/malloc.py``).

An allocator replaces glibc's only when the dynamic loader loads it first (``LD_PRELOAD``),
so the choice is made where a process starts: :func:`relaunch` re-executes the current
command under the allocator that ``FLOWZOO_MALLOC`` names, once; the ``flowzoo`` command
calls it for the commands that compile models. ``FLOWZOO_MALLOC``:

- ``auto`` (the default): mimalloc when the ``cmeel-mimalloc`` wheel is installed (the
  ``malloc`` extra: ``pip install "flowzoo[malloc]"``), else the system's tcmalloc
  (``libtcmalloc_minimal.so.4``; Debian: ``libtcmalloc-minimal4``), else glibc's;
- ``mimalloc`` or ``tcmalloc``: that one, or an error that says how to install it;
- ``system``: glibc's ``malloc``, no re-execution.

Only Linux is handled; elsewhere every choice is the system's allocator. Memory a run has
freed stays with the process until it ends (mimalloc is started with
``MIMALLOC_PURGE_DELAY=-1`` unless that is set), which is what removes the page faults.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

ENV = "FLOWZOO_MALLOC"
CHOICES = ("auto", "mimalloc", "tcmalloc", "system")
_GUARD = "FLOWZOO_MALLOC_RELAUNCHED"
_SONAMES = {"mimalloc": "libmimalloc", "tcmalloc": "libtcmalloc", "jemalloc": "libjemalloc"}
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
             "/usr/local/lib")  # fmt: skip


def _mimalloc_library() -> str | None:
    """``libmimalloc.so`` of the ``cmeel-mimalloc`` wheel (``<site>/cmeel.prefix/lib``)."""
    for entry in sys.path:
        lib = Path(entry or ".") / "cmeel.prefix" / "lib"
        if lib.is_dir():
            found = sorted(lib.glob("libmimalloc.so*"), key=lambda p: len(p.name))
            if found:
                return str(found[0].resolve())
    name = ctypes.util.find_library("mimalloc")
    return _in_lib_dirs(name) if name else None


def _in_lib_dirs(soname: str) -> str | None:
    for d in _LIB_DIRS:
        if (Path(d) / soname).is_file():
            return str(Path(d) / soname)
    return None


def _tcmalloc_library() -> str | None:
    return _in_lib_dirs("libtcmalloc_minimal.so.4") or _in_lib_dirs("libtcmalloc.so.4")


def find_allocator(choice: str = "auto") -> tuple[str, str | None]:
    """``(name, path)`` of the allocator ``choice`` resolves to on this machine.

    ``name`` is ``"mimalloc"``, ``"tcmalloc"`` or ``"system"``; ``path`` the shared library
    to preload (``None`` for ``"system"``, and for a named allocator that is not installed).
    """
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "system" or not sys.platform.startswith("linux"):
        return "system", None
    if choice in ("auto", "mimalloc"):
        path = _mimalloc_library()
        if path or choice == "mimalloc":
            return "mimalloc", path
    path = _tcmalloc_library()
    if path or choice == "tcmalloc":
        return "tcmalloc", path
    return "system", None


def loaded_allocator() -> str:
    """The allocator this process runs on: ``mimalloc``, ``tcmalloc`` or ``jemalloc`` when
    its library is mapped into the process (``/proc/self/maps``), else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    for name, soname in _SONAMES.items():
        if f"/{soname}" in maps:
            return name
    return "system"


def relaunch(argv: list[str]) -> None:
    """Re-execute this process as ``python *argv`` under the allocator ``FLOWZOO_MALLOC``
    chooses, unless it runs on it already, the choice is ``system`` or nothing better is
    installed (``auto``); returns only when it does not re-execute.

    Call it before any work, with the arguments that restart the same command (the
    ``flowzoo`` command passes ``["-m", "flowzoo.cli", *sys.argv[1:]]``). Raises
    ``ValueError`` for an unknown choice, or a named allocator that is not installed.
    """
    choice = os.environ.get(ENV, "auto")
    name, path = find_allocator(choice)
    if name != "system" and path is None:
        how = {"mimalloc": 'pip install "flowzoo[malloc]"',
               "tcmalloc": "apt-get install libtcmalloc-minimal4"}[name]  # fmt: skip
        raise ValueError(
            f"{ENV}={choice}: no {name} library found on this machine; install it ({how}) "
            f"or set {ENV}=auto or {ENV}=system"
        )
    if path is None or os.environ.get(_GUARD) or loaded_allocator() != "system":
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (path, env.get("LD_PRELOAD")) if p)
    env[_GUARD] = name
    if name == "mimalloc":
        env.setdefault("MIMALLOC_PURGE_DELAY", "-1")
    else:  # tcmalloc reports every allocation over 1 GiB on stderr unless told otherwise
        env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], env)
