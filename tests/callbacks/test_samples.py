"""Completion samples: JSONL rows every N steps, and a W&B Table when W&B is attached."""

from __future__ import annotations

import json
from types import SimpleNamespace

from lightning.pytorch.loggers import WandbLogger

from medzero_pl.callbacks.samples import CompletionSamples
from tests.callbacks.helpers import step_outputs


class FakeWandb(WandbLogger):
    def __init__(self) -> None:  # no wandb run
        self.tables = []

    def log_table(self, key, columns=None, data=None, dataframe=None, step=None) -> None:
        self.tables.append((key, columns, data))


def fake_trainer(loggers):
    return SimpleNamespace(is_global_zero=True, loggers=loggers, global_step=0)


def test_rows_every_n_steps_with_each_reward_and_the_advantage(tmp_path):
    outputs = step_outputs(
        ["<answer>A</answer>", "<answer>B</answer>", "no"],
        prompts=["x" * 500 + "Q1?"] * 3,
        rewards={"mcq_accuracy": [1.0, 0.0, None], "strict_format": [1.0, 1.0, 0.0]},
        reward=[2.0, 1.0, 0.0],
        advantages=[1.0, 0.0, -1.0],
    )
    wandb = FakeWandb()
    callback = CompletionSamples(tmp_path / "c.jsonl", per_step=2, every_n_steps=2, prompt_chars=10)
    for step in range(4):
        module = SimpleNamespace(grpo_step=step + 1)
        callback.on_train_batch_end(fake_trainer([wandb]), module, outputs, None, step)
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 0, 2, 2]
    assert rows[1] == {
        "step": 0,
        "prompt_tail": "x" * 7 + "Q1?",
        "completion": "<answer>B</answer>",
        "reward": 1.0,
        "advantage": 0.0,
        "length": 4,
        "truncated": False,
        "reward/mcq_accuracy": 0.0,
        "reward/strict_format": 1.0,
    }
    assert len(wandb.tables) == 2
    key, columns, data = wandb.tables[0]
    assert key == "completions" and columns[:3] == ["step", "prompt_tail", "completion"] and len(data) == 2


def test_nothing_is_written_without_step_outputs(tmp_path):
    callback = CompletionSamples(tmp_path / "c.jsonl")
    callback.on_train_batch_end(fake_trainer([]), SimpleNamespace(grpo_step=1), None, None, 0)
    assert not (tmp_path / "c.jsonl").exists()
