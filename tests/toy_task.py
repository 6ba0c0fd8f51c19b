"""A verifiable toy task for end-to-end tests: "answer with the letter shown in the question".

The reward is dense (the share of completion characters equal to the gold letter) so that a tiny random model
gets a learning signal from its first samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LETTERS = "ABCD"


def letter_share(prompts: list[Any], completions: list[str], answer: list[str], **columns: Any) -> list[float]:
    """TRL-style reward: fraction of characters of each completion that are the row's gold letter."""
    return [sum(ch == gold for ch in text) / max(len(text), 1) for text, gold in zip(completions, answer, strict=True)]


def write_toy_questions(path: Path, n: int = 32) -> Path:
    """MedQA-layout rows whose question shows the answer letter: 'Say C'."""
    with open(path, "w") as f:
        for i in range(n):
            gold = LETTERS[i % 4]
            options = {letter: f"letter {letter}" for letter in LETTERS}
            row = {"id": f"toy-{i}", "question": f"Say {gold}", "options": options, "answer_idx": gold}
            f.write(json.dumps(row | {"answer": options[gold]}) + "\n")
    return path


def opens_with_letter(prompts: list[Any], completions: list[str], answer: list[str], **columns: Any) -> list[float]:
    """A second, sparser toy reward (for multi-reward runs): 1 if the completion starts with the gold letter."""
    return [float(text[:1] == gold) for text, gold in zip(completions, answer, strict=True)]


def one_value_only(prompts: list[Any], completions: list[str], **columns: Any) -> list[float]:
    """A broken reward: one value for the whole batch."""
    return [0.0]


def toy_overrides(toy: dict[str, Path], run_dir: Path, **fields: Any) -> list[str]:
    """`key=value` overrides for a fast CPU run of the toy task on the tiny model (the `toy` fixture)."""
    settings = {
        "model.name_or_path": toy["model"],
        "data.sources": f"[{{path: {toy['data']}, format: medqa}}]",
        "data.val_fraction": 0,
        "data.prompts_per_step": 4,
        "prompt.system": "null",
        "prompt.user": "'{question}{choices}'",  # quoted: YAML would read {question} as a mapping
        "rewards": "[{name: 'tests.toy_task:letter_share'}]",
        "grpo.num_generations": 8,
        "grpo.max_completion_length": 8,
        "grpo.micro_batch_size": 16,
        "optim.lr": 1e-2,
        "optim.warmup_steps": 0,
        "optim.scheduler": "constant",
        "rollout.engine": "hf",  # the tiny model's head_dim 8 is below what vLLM's CPU attention supports
        "trainer.enable_progress_bar": "false",
        "logging.wandb": "disabled",
        "run_dir": run_dir,
    } | fields
    return [f"{k}={v}" for k, v in settings.items()]
