"""Write a few completions of every step to `<run_dir>/completions.jsonl`: the quickest way to see what the
policy actually writes (tags or not, language, length) next to the reward it got."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class CompletionSamples(Callback):
    """Append `per_step` completions (with prompt tail and reward) per training step, from rank 0."""

    def __init__(self, path: str | Path, per_step: int = 2, prompt_chars: int = 300) -> None:
        if per_step < 1:
            raise ValueError(f"per_step={per_step}: expected at least 1")
        self.path = Path(path)
        self.per_step = per_step
        self.prompt_chars = prompt_chars

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        rollouts = getattr(pl_module, "last_rollouts", None)
        if not rollouts or not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for prompt, completion, reward in list(zip(*rollouts.values(), strict=True))[: self.per_step]:
                row = {
                    "step": trainer.global_step,
                    "prompt_tail": prompt[-self.prompt_chars :],
                    "completion": completion,
                    "reward": reward,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
