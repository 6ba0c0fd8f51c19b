"""`python -m medzero_pl.server_layout [--serve-args "..."] [--dry-run] key=value ...`: the Medical R1-Zero layout on
one node. The last visible GPU runs the vLLM server, the other N-1 train (`trainer.devices = N-1`), as the seed's
`accelerate launch --num_processes 3` beside `trl vllm-serve` on the fourth GPU.

The run is the same `key=value` config as `python -m medzero_pl.fit`, with `rollout.engine=vllm_server`; the server
is derived from it: `model.name_or_path`, `model.dtype`, `--max-model-len` = data.max_prompt_length +
grpo.max_completion_length, the port of `rollout.server_url` (which must be on this node), `rollout.server_transfer`.

1. Start `python -m medzero_pl.serve ...` on the serving GPU, its output in `<run_dir>/server.log`.
2. Wait for its `/health` (at most `rollout.server_startup_timeout_s`); a server that exits first ends the launch
   with one `error:` line pointing at its log.
3. Run `python -m medzero_pl.fit ...` on the training GPUs; SIGINT/SIGTERM are passed on to it (it checkpoints).
4. Stop the server; exit with the trainer's code.

Without a GPU (CPU tests) the server and the trainer share the machine and `trainer.devices` is left as configured.
Several nodes: see scripts/slurm_grpo_server.sbatch.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from medzero_pl.config import Config, compose
from medzero_pl.errors import UserError, report_user_errors
from medzero_pl.rollout.vllm_server import resolve_transfer

LOCAL_HOSTS = ("127.0.0.1", "localhost")
STOP_GRACE_S = 30


@dataclass(frozen=True)
class Plan:
    """The two processes of the layout: environment additions and command lines."""

    server_env: dict[str, str]
    server: list[str]
    trainer_env: dict[str, str]
    trainer: list[str]

    def describe(self) -> str:
        def line(env: dict[str, str], argv: list[str]) -> str:
            return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])

        return f"{line(self.server_env, self.server)} &\n{line(self.trainer_env, self.trainer)}"


def plan(cfg: Config, overrides: list[str], gpus: list[str], serve_args: list[str]) -> Plan:
    """The server on the last of `gpus`, training on the others (`gpus` empty: both on the CPU)."""
    url = urllib.parse.urlparse(cfg.rollout.server_url)
    if url.hostname not in LOCAL_HOSTS or url.port is None:
        raise UserError(
            f"rollout.server_url={cfg.rollout.server_url!r}: the one-node layout starts the server here; expected "
            "http://127.0.0.1:PORT (for a server on another node see scripts/slurm_grpo_server.sbatch)"
        )
    if len(gpus) == 1:
        raise UserError(
            "the server layout needs at least 2 GPUs (one serves, the others train); on one GPU use "
            "rollout.engine=vllm (colocated)"
        )
    transfer = resolve_transfer(cfg.rollout.server_transfer, cuda=bool(gpus))
    server = [sys.executable, "-m", "medzero_pl.serve", cfg.model.name_or_path, "--host", "127.0.0.1"]
    server += ["--port", str(url.port), "--transfer", transfer, "--seed", str(cfg.seed)]
    server += [
        "--dtype",
        cfg.model.dtype,
        "--max-model-len",
        str(cfg.data.max_prompt_length + cfg.grpo.max_completion_length),
    ]
    trainer = [sys.executable, "-m", "medzero_pl.fit", *overrides, "rollout.engine=vllm_server"]
    server_env: dict[str, str] = {}
    trainer_env: dict[str, str] = {}
    if gpus:
        server_env["CUDA_VISIBLE_DEVICES"] = gpus[-1]
        trainer_env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[:-1])
        trainer.append(f"trainer.devices={len(gpus) - 1}")
    return Plan(server_env, server + serve_args, trainer_env, trainer)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries."""
    count = torch.cuda.device_count()
    listed = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m medzero_pl.server_layout", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--serve-args", default="", help='more `python -m medzero_pl.serve` options, e.g. "--enforce-eager"'
    )
    parser.add_argument("--dry-run", action="store_true", help="print the two commands and exit")
    parser.add_argument("--gpus", default=None, help="the GPUs to use, e.g. 0,1,2,3 (default: every visible GPU)")
    args, overrides = parser.parse_known_args(argv)
    gpus = [g for g in args.gpus.split(",") if g] if args.gpus is not None else visible_gpus()
    # Checked as the trainer will run it (N-1 ranks), so a batch that does not split fails here, before any server.
    ranks = [f"trainer.devices={len(gpus) - 1}"] if len(gpus) > 1 else []
    cfg = compose([*overrides, "rollout.engine=vllm_server", *ranks])
    layout = plan(cfg, overrides, gpus, shlex.split(args.serve_args))
    if args.dry_run:
        print(layout.describe())
        return 0
    log_path = Path(cfg.run_dir) / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            layout.server,
            env=os.environ | layout.server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(server, cfg.rollout.server_url, cfg.rollout.server_startup_timeout_s, log_path)
        trainer = subprocess.Popen(layout.trainer, env=os.environ | layout.trainer_env)

        def forward(signum: int, frame: object) -> None:
            trainer.send_signal(signum)  # the trainer saves a checkpoint and exits 128 + signum

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return trainer.wait()
    finally:
        _stop(server)


def _wait_healthy(server: subprocess.Popen, url: str, timeout_s: float, log_path: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise UserError(
                f"the vLLM server exited with code {server.returncode} before it was healthy: see {log_path}"
            )
        try:
            with opener.open(url.rstrip("/") + "/health", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise UserError(
                    f"the vLLM server at {url} was not healthy after {timeout_s:g} s "
                    f"(rollout.server_startup_timeout_s): see {log_path}"
                ) from None
            time.sleep(1)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (API server, engine core, workers), SIGKILL it after a grace period."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return report_user_errors(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
