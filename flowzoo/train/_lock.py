"""One trainer per run directory: an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock``.

The kernel releases an ``flock`` when its file descriptor closes, which includes the
holder's death by any signal (``kill -9`` too), so a crashed run never leaves a stale lock.
The lock file holds the holder's host name and PID (JSON) for the refusal message; its
contents are informative only, the lock is the ``flock``. In a multi-process run only
process 0 takes it (the other processes of the same run share the directory).

``flock`` locks are reliable on local file systems; on NFS they are emulated with POSIX
record locks (Linux 2.6.12 and later), and some network file systems do not support them
at all, in which case taking the lock fails with the system's error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"
"""The name of the lock file inside a run directory."""

_HELD: dict[str, list[int]] = {}  # resolved run dir -> [fd, depth]: re-entrant in one process
_GUARD = threading.Lock()


class RunLockedError(RuntimeError):
    """Another process is training in this run directory."""


def _holder(path: Path) -> str:
    """``host H, PID P`` from the lock file, or a plain phrase when it is unreadable."""
    try:
        info = json.loads(path.read_text())
        return f"host {info['host']}, PID {info['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _acquire(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunLockedError(
                f"{workdir} is being trained by {_holder(path)} (lock {path}); wait for that "
                "run to finish or stop it, or pass another --name"
            ) from None
        raise
    info = json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)
    return fd


@contextlib.contextmanager
def run_lock(workdir: str | os.PathLike, *, enabled: bool = True) -> Iterator[None]:
    """Hold the run directory's exclusive lock for the duration of the ``with`` block.

    Re-entrant within one process (a run that trains its guide in a sub-directory, or
    ``fit`` called inside a locked ``train_and_evaluate``, takes it once). ``enabled=False``
    does nothing (the non-primary processes of a multi-process run).

    Raises:
      RunLockedError: another process holds the lock; the message names its host and PID.
    """
    if not enabled:
        yield
        return
    key = str(Path(workdir).resolve())
    with _GUARD:
        held = _HELD.get(key)
        if held is None:
            held = _HELD[key] = [_acquire(Path(workdir)), 0]
        held[1] += 1
    try:
        yield
    finally:
        with _GUARD:
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                os.close(held[0])  # releases the flock; the file stays (harmless, reused)
