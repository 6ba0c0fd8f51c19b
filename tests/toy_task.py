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
    return [sum(ch == gold for ch in text) / max(len(text), 1) for text, gold in zip(completions, answer)]


def write_toy_questions(path: Path, n: int = 32) -> Path:
    """MedQA-layout rows whose question shows the answer letter: 'Say C'."""
    with open(path, "w") as f:
        for i in range(n):
            gold = LETTERS[i % 4]
            options = {letter: f"letter {letter}" for letter in LETTERS}
            row = {"id": f"toy-{i}", "question": f"Say {gold}", "options": options, "answer_idx": gold}
            f.write(json.dumps(row | {"answer": options[gold]}) + "\n")
    return path


def one_value_only(prompts: list[Any], completions: list[str], **columns: Any) -> list[float]:
    """A broken reward: one value for the whole batch."""
    return [0.0]
