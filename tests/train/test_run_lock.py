"""One trainer per run directory (``flowzoo.train.run_lock``): a second holder is refused
with the first one's host and PID, the kernel frees the lock when its holder is killed with
SIGKILL, and one process may take it again (re-entrant)."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from flowzoo.train import RunLockedError, run_lock


def test_second_holder_is_refused_with_the_first_ones_host_and_pid(tmp_path, lock_holder):
    proc = lock_holder(tmp_path)
    with pytest.raises(RunLockedError) as info, run_lock(tmp_path):
        pass
    message = str(info.value)
    assert f"PID {proc.pid}" in message and socket.gethostname() in message, message
    assert "\n" not in message and str(tmp_path) in message
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid


def test_sigkill_releases_the_lock(tmp_path, lock_holder):
    proc = lock_holder(tmp_path)
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


def test_reentrant_in_one_process_and_released_after(tmp_path, lock_holder):
    with run_lock(tmp_path):
        with run_lock(tmp_path / "." / ""):  # the same directory, spelled differently
            pass
        proc = lock_holder(tmp_path, wait=False)  # still held after the inner block
        assert proc.wait(timeout=60) == 1 and "RunLockedError" in proc.stderr.read()
    with run_lock(tmp_path):  # released: can be taken again
        pass
    with run_lock(tmp_path, enabled=False):  # non-primary processes take nothing
        assert not (tmp_path / "sub").exists()
