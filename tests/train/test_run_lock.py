"""One trainer per run directory (``flowzoo.train.run_lock``): a second holder is refused
with the first one's host and PID, the kernel frees the lock when its holder is killed with
SIGKILL, and one process may take it again (re-entrant)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowzoo.train
from flowzoo.train import RunLockedError, run_lock

LOCK_MODULE = str(Path(flowzoo.train.__file__).with_name("_lock.py"))

# The child loads the lock's module file alone (standard library only), not the package with
# JAX, so that each holder starts in milliseconds.
HOLD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("lock", sys.argv[2])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
with lock.run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(workdir):
    """A child process holding ``workdir``'s lock (returned once it holds it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(workdir), LOCK_MODULE], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_with_the_first_ones_host_and_pid(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLockedError) as info, run_lock(tmp_path):
            pass
        message = str(info.value)
        assert f"PID {proc.pid}" in message and socket.gethostname() in message, message
        assert "\n" not in message and str(tmp_path) in message
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_releases_the_lock(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10  # the kernel closes the dead process's descriptors
    while True:
        try:
            with run_lock(tmp_path):
                assert json.loads((tmp_path / ".lock").read_text())["pid"] != proc.pid
            break
        except RunLockedError:
            assert time.monotonic() < deadline, "lock not released after SIGKILL"
            time.sleep(0.05)


def test_reentrant_in_one_process_and_released_after(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path / "." / ""):  # the same directory, spelled differently
            pass
        proc = subprocess.run(  # still held after the inner block
            [
                sys.executable,
                "-c",
                HOLD.replace("time.sleep(600)", "pass"),
                str(tmp_path),
                LOCK_MODULE,
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1 and "RunLockedError" in proc.stderr
    with run_lock(tmp_path):  # released: can be taken again
        pass
    with run_lock(tmp_path, enabled=False):  # non-primary processes take nothing
        assert not (tmp_path / "sub").exists()
