"""A real `python -m medzero_pl.fit` process: SIGTERM saves and exits, SIGKILL loses at most the last few steps,
and `resume=auto` continues in both cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.callbacks.test_best_checkpoint import val_rewards
from tests.model.test_lora import lora_overrides
from tests.toy_task import toy_overrides

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def start(overrides: list[str]) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "medzero_pl.fit", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_steps(samples: Path, steps: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if samples.exists() and len({line[:20] for line in samples.read_text().splitlines()}) >= steps:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("run made no progress")


def saved_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def run_overrides(toy, run_dir: Path, **fields) -> list[str]:
    return toy_overrides(toy, run_dir, **{"logging.log_completions": 1, **fields})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_writes_a_checkpoint_and_resume_continues(toy, tmp_path, signum):
    overrides = run_overrides(
        toy, tmp_path, **{"trainer.max_steps": 10_000, "trainer.checkpoint_every_n_steps": 10_000}
    )
    proc = start(overrides)
    wait_for_steps(tmp_path / "completions.jsonl", 3, proc)
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == 128 + signum
    last = tmp_path / "checkpoints" / "last.ckpt"
    stopped_at = saved_step(last)
    assert stopped_at >= 3

    resumed = start([*overrides, f"trainer.max_steps={stopped_at + 2}", "resume=auto"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    assert saved_step(last) == stopped_at + 2


def test_sigkill_mid_run_resumes_from_the_last_periodic_checkpoint(toy, tmp_path):
    overrides = run_overrides(toy, tmp_path, **{"trainer.max_steps": 10_000, "trainer.checkpoint_every_n_steps": 2})
    proc = start(overrides)
    wait_for_steps(tmp_path / "completions.jsonl", 7, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    last = tmp_path / "checkpoints" / "last.ckpt"
    stopped_at = saved_step(last)  # loads: the kill never leaves a half-written last.ckpt
    assert stopped_at >= 2 and stopped_at % 2 == 0

    resumed = start([*overrides, f"trainer.max_steps={stopped_at + 1}", "resume=auto"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    assert saved_step(last) == stopped_at + 1


def test_best_ckpt_survives_sigterm_and_resume(toy, tmp_path):
    best = {"data.val_fraction": 0.25, "trainer.val_check_interval": 1, "checkpoint.best_metric": "val/reward"}
    overrides = run_overrides(
        toy, tmp_path, **{"trainer.max_steps": 10_000, "trainer.checkpoint_every_n_steps": 10_000, **best}
    )
    proc = start(overrides)
    wait_for_steps(tmp_path / "completions.jsonl", 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    stopped_at = saved_step(tmp_path / "checkpoints" / "last.ckpt")
    before = json.loads((tmp_path / "checkpoints" / "best.json").read_text())

    resumed = start([*overrides, f"trainer.max_steps={stopped_at + 3}", "resume=auto"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    after = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    history = [v for _, v in val_rewards(tmp_path)]  # both sessions' validations
    assert after["score"] >= before["score"] and after["score"] == pytest.approx(max(history))
    assert saved_step(tmp_path / "checkpoints" / "best.ckpt") == after["step"]


def test_a_lora_run_stopped_by_sigterm_resumes_bitwise_equal_to_an_uninterrupted_run(toy, tmp_path):
    steps = 12
    fields = {"trainer.max_steps": steps, "trainer.checkpoint_every_n_steps": 10_000, "logging.log_completions": 1}
    straight = start(lora_overrides(toy, tmp_path / "straight", **fields))
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-2000:]

    stopped = lora_overrides(toy, tmp_path / "stopped", **fields)
    proc = start(stopped)
    wait_for_steps(tmp_path / "stopped" / "completions.jsonl", 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert 3 <= saved_step(tmp_path / "stopped" / "checkpoints" / "last.ckpt") < steps
    resumed = start([*stopped, "resume=auto"])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]

    want, got = (
        torch.load(p / "checkpoints" / "last.ckpt", weights_only=True)
        for p in (tmp_path / "straight", tmp_path / "stopped")
    )
    assert got["global_step"] == want["global_step"] == steps
    assert want["state_dict"].keys() == got["state_dict"].keys() and all(".lora_" in k for k in want["state_dict"])
    for name, tensor in want["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name
    for slot, state in want["optimizer_states"][0]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, got["optimizer_states"][0]["state"][slot][key]), (slot, key)
