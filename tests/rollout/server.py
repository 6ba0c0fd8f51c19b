"""A real vLLM server for tests: `python -m medzero_pl.serve` on 127.0.0.1 in its own process group, killed whole
at teardown (also when the test fails), with a deadline on start-up so a server that never comes up fails the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.strategies.launch import ROOT, free_port

START_TIMEOUT_S = 420  # a tiny model starts in ~40-120 s on 2 busy cores
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL the server and every process it started (API server, engine core, worker): a crash."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def vllm_server(model: Path, log: Path, *extra: str) -> Iterator[Server]:
    """Serve `model` (float32, as the tests' policies) until the block ends."""
    port = free_port()
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # the cores are shared with the trainer: no pinning
    }
    args = [str(model), "--port", str(port), "--dtype", "float32", "--max-model-len", "1024"]
    args += ["--kv-cache-gib", "0.05", "--enforce-eager", *extra]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "medzero_pl.serve", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown reaches the engine core and worker too
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the vLLM server exited ({server.process.returncode}):\n{server.tail()}")
        try:
            with NO_PROXY.open(server.url + "/health", timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the vLLM server did not come up within {START_TIMEOUT_S} s:\n{server.tail()}")
