"""Start one process per rank on this machine, as torchrun would, with a deadline so a deadlock fails a test.

Every process starts in its own session and is remembered, so that `kill_leftovers` (an autouse fixture in
tests/conftest.py) ends it, with whatever it started (torchrun's workers, DeepSpeed's helpers), when the test is
over, passed or failed: a failed multi-process test must not leave ranks running that keep pytest from exiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAILED_RANK_GRACE_S = 60.0
"""After one rank fails, how long the others get to end by themselves (they usually wait in a collective that can
never complete) before they are killed."""
_started: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What a launcher sets for a rank (Lightning then creates no processes itself), one CPU thread each."""
    return os.environ | {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world_size),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "NODE_RANK": "0",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "TOKENIZERS_PARALLELISM": "false",
    }


def spawn(args: list[str], world_size: int, log_dir: Path) -> list[subprocess.Popen]:
    """`python <args>` once per rank; each rank's output goes to `log_dir/rank<N>.log`."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    return [
        start([sys.executable, *args], rank_env(rank, world_size, port), log_dir / f"rank{rank}.log")
        for rank in range(world_size)
    ]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`command` in its own session (so its whole process group can be killed), output to `log`, remembered."""
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
    _started.append(process)
    return process


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the process and everything in its process group, and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def kill_leftovers() -> None:
    """Kill every process `start` began that is still running (called after each test)."""
    while _started:
        kill(_started.pop())


def wait_all(
    procs: list[subprocess.Popen],
    log_dir: Path,
    timeout: float,
    expected: tuple[int, ...] = (0,),
    grace: float = FAILED_RANK_GRACE_S,
) -> list[int]:
    """Exit codes of every rank. Fails with the logs' tails if `timeout` seconds pass first. Once a rank has ended
    with a code not in `expected`, the others get `grace` seconds, then are killed (exit code -9): a failure ends
    the test in a minute instead of at the deadline."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        if any(p.returncode is not None and p.returncode not in expected for p in procs):
            deadline = min(deadline, time.monotonic() + grace)
            if time.monotonic() > deadline:
                break
        elif time.monotonic() > deadline:
            for p in procs:
                kill(p)
            raise AssertionError(f"ranks still running after {timeout:.0f} s (deadlock?)\n{tails(log_dir)}")
        time.sleep(0.2)
    for p in procs:
        kill(p)
    return [p.returncode for p in procs]


def tails(log_dir: Path, chars: int = 3000) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in sorted(log_dir.glob("rank*.log")))
