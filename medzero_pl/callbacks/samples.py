"""A table of completions every N steps: prompt, completion, each reward, total and advantage.

The quickest way to see what the policy actually writes (tags or not, language, length) next to what it was paid.
Rows go to ``<run_dir>/completions.jsonl`` always, and to a W&B Table (key ``completions``) when a ``WandbLogger``
is attached. The callback reads the dict ``training_step`` returns (``outputs``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger


def sample_rows(outputs: Mapping[str, Any], step: int, limit: int, prompt_chars: int) -> list[dict[str, Any]]:
    """The first ``limit`` completions of a step as flat rows (rewards as ``reward/<name>`` columns)."""
    rows = []
    for i, completion in enumerate(outputs["completions"][:limit]):
        row = {
            "step": step,
            "prompt_tail": outputs["prompts"][i][-prompt_chars:],
            "completion": completion,
            "reward": outputs["reward"][i],
            "advantage": outputs["advantages"][i],
            "length": outputs["completion_lengths"][i],
            "truncated": outputs["truncated"][i],
        }
        row.update({f"reward/{name}": values[i] for name, values in outputs["rewards"].items()})
        rows.append(row)
    return rows


class CompletionSamples(Callback):
    """Write ``per_step`` completions every ``every_n_steps`` training steps, from rank 0.

    Args:
        path: The JSONL file rows are appended to; None: ``<trainer.default_root_dir>/completions.jsonl``.
        per_step: Completions per logged step (the first ones of the batch: whole groups first).
        every_n_steps: Log every N-th training step (1 = every step).
        prompt_chars: Keep the last this many characters of each prompt (the question, not the system text).
    """

    def __init__(
        self, path: str | Path | None = None, per_step: int = 2, every_n_steps: int = 1, prompt_chars: int = 300
    ) -> None:
        if per_step < 1 or every_n_steps < 1:
            raise ValueError(f"per_step={per_step}, every_n_steps={every_n_steps}: expected at least 1")
        self.path = Path(path) if path is not None else None
        self.per_step = per_step
        self.every_n_steps = every_n_steps
        self.prompt_chars = prompt_chars

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.path is None:
            self.path = Path(trainer.default_root_dir) / "completions.jsonl"

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(outputs, Mapping) or "completions" not in outputs or not trainer.is_global_zero:
            return
        step = pl_module.grpo_step - 1  # the step just trained, counted from 0
        if step % self.every_n_steps:
            return
        rows = sample_rows(outputs, step, self.per_step, self.prompt_chars)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        columns = list(rows[0]) if rows else []
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                data = [[row.get(c) for c in columns] for row in rows]
                logger.log_table(key="completions", columns=columns, data=data, step=trainer.global_step)
