"""The test launcher ends what it started: a failed rank does not leave the others running until the deadline, and
nothing a test started (nor what that started) outlives the test."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.strategies.launch import kill_leftovers, start, wait_all


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" in status.read_text()  # exited (a zombie waits for its reaper)


def test_when_one_rank_fails_the_others_are_killed_after_the_grace_period(tmp_path):
    env = dict(os.environ)
    failing = start([sys.executable, "-c", "raise SystemExit(3)"], env, tmp_path / "rank0.log")
    waiting = start([sys.executable, "-c", "import time; time.sleep(600)"], env, tmp_path / "rank1.log")
    began = time.monotonic()
    assert wait_all([failing, waiting], tmp_path, timeout=600, grace=1) == [3, -9]
    assert time.monotonic() - began < 60


def test_leftovers_are_killed_with_the_processes_they_started(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    start(["bash", "-c", f"sleep 600 & echo $! > {pid_file}; wait"], dict(os.environ), tmp_path / "launcher.log")
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    grandchild = int(pid_file.read_text())
    kill_leftovers()
    deadline = time.monotonic() + 10
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the launcher's child survived"
        time.sleep(0.1)
