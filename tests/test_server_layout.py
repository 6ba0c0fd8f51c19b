"""The one-node server layout (`python -m medzero_pl.server_layout`): the last GPU serves, the others train, and the
server is derived from the run's own config; on CPU (slow) a real launch serves, trains and stops the server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from medzero_pl.config import compose
from medzero_pl.errors import UserError
from medzero_pl.server_layout import main, plan
from tests.strategies.launch import ROOT, free_port
from tests.toy_task import toy_overrides


def config(toy, tmp_path, **fields):
    overrides = toy_overrides(toy, tmp_path, **{"rollout.server_url": "http://127.0.0.1:8123", **fields})
    return compose([*overrides, "rollout.engine=vllm_server"]), overrides


def test_four_gpus_serve_on_the_last_and_train_on_three(toy, tmp_path):
    cfg, overrides = config(toy, tmp_path, **{"data.max_prompt_length": 1024, "grpo.max_completion_length": 8192})
    layout = plan(cfg, overrides, ["0", "1", "2", "3"], ["--gpu-memory-utilization", "0.9"])

    assert layout.server_env == {"CUDA_VISIBLE_DEVICES": "3"}
    assert layout.server[:4] == [sys.executable, "-m", "medzero_pl.serve", str(toy["model"])]
    server = " ".join(layout.server)
    for flag in ("--host 127.0.0.1", "--port 8123", "--transfer nccl", "--dtype float32", "--max-model-len 9216"):
        assert flag in server
    assert server.endswith("--gpu-memory-utilization 0.9")

    assert layout.trainer_env == {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    assert layout.trainer[:3] == [sys.executable, "-m", "medzero_pl.fit"]
    assert layout.trainer[-2:] == ["rollout.engine=vllm_server", "trainer.devices=3"]  # after the user's overrides


def test_without_a_gpu_both_share_the_cpu_and_weights_go_through_gloo(toy, tmp_path):
    cfg, overrides = config(toy, tmp_path)
    layout = plan(cfg, overrides, [], [])
    assert layout.server_env == {} and layout.trainer_env == {}
    assert "--transfer gloo" in " ".join(layout.server)
    assert not any(arg.startswith("trainer.devices") for arg in layout.trainer[-2:])


@pytest.mark.parametrize(
    ("gpus", "url", "expected"),
    [(["0"], "http://127.0.0.1:8000", "at least 2 GPUs"), (["0", "1"], "http://gpu-node-7:8000", "starts the server")],
)
def test_layouts_it_cannot_start_are_refused(toy, tmp_path, gpus, url, expected):
    cfg, overrides = config(toy, tmp_path, **{"rollout.server_url": url})
    with pytest.raises(UserError, match=expected):
        plan(cfg, overrides, gpus, [])


def test_dry_run_prints_the_two_commands(toy, tmp_path, capsys):
    _, overrides = config(toy, tmp_path, **{"data.prompts_per_step": 6})  # 2 prompts per training rank
    assert main(["--dry-run", "--gpus", "0,1,2,3", *overrides]) == 0
    server, trainer = capsys.readouterr().out.strip().splitlines()
    assert server.startswith("CUDA_VISIBLE_DEVICES=3 ") and server.endswith(" &")
    assert trainer.startswith("CUDA_VISIBLE_DEVICES=0,1,2 ") and trainer.endswith("trainer.devices=3")


def test_a_batch_that_does_not_split_over_the_training_ranks_fails_before_anything_starts(toy, tmp_path, capsys):
    _, overrides = config(toy, tmp_path, **{"data.prompts_per_step": 4})
    assert main(["--dry-run", "--gpus", "0,1,2,3", *overrides]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: ") and "data.prompts_per_step=4 must be a multiple of" in error


@pytest.mark.slow
def test_the_launcher_starts_the_server_trains_against_it_and_stops_it(toy, tmp_path):
    """On CPU: the server and one training process share the machine; the run ends and takes the server with it."""
    if not os.environ.get("CI"):
        pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")
    import psutil  # comes with vLLM

    from tests.rollout.test_vllm import vllm_model_dir

    port = free_port()
    task = {"model": vllm_model_dir(tmp_path / "model"), "data": toy["data"]}
    fields = {"rollout.server_url": f"http://127.0.0.1:{port}", "rollout.server_timeout_s": 120}
    overrides = toy_overrides(
        task, tmp_path / "run", **fields, **{"trainer.max_steps": 2, "grpo.max_completion_length": 16}
    )
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env |= {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    serve_args = "--kv-cache-gib 0.05 --enforce-eager"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "medzero_pl.server_layout", "--serve-args", serve_args, *overrides],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = launcher.communicate(timeout=900)
    finally:  # a launcher that hangs must not leave its server behind
        for process in psutil.Process(launcher.pid).children(recursive=True) if launcher.poll() is None else []:
            process.kill()
        launcher.kill()
    assert launcher.returncode == 0, stderr[-3000:]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert "Application startup complete" in (tmp_path / "run" / "server.log").read_text()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))  # the server is gone
