"""Start one process per rank on this machine, as torchrun would, with a deadline so a deadlock fails a test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
    procs = []
    for rank in range(world_size):
        log = open(log_dir / f"rank{rank}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, *args], cwd=ROOT, env=rank_env(rank, world_size, port), stdout=log, stderr=log
            )
        )
    return procs


def wait_all(procs: list[subprocess.Popen], log_dir: Path, timeout: float) -> list[int]:
    """Exit codes of every rank; kills all and fails with the logs' tails if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        raise AssertionError(f"ranks still running after {timeout:.0f} s (deadlock?)\n{tails(log_dir)}") from None


def tails(log_dir: Path, chars: int = 3000) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in sorted(log_dir.glob("rank*.log")))
