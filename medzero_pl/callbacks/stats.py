"""Length and format statistics of every training step's completions: the seeds' two failure modes show here
first (completions growing until truncated; the 1.5B model dropping ``<think>``).

The callback reads what ``training_step`` returns (``outputs``), computes :func:`completion_stats` and logs it.
TRL's names are kept where TRL has the metric (``completions/mean_length``, ``completions/clipped_ratio``,
``completions/mean_terminated_length``, ...) so dashboards compare.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from medzero_pl.rewards.extract import ANSWER_CLOSE, THINK_OPEN, tagged_answer, text_after_answer, think_block

log = logging.getLogger(__name__)


def opened_by_prompt(prompt: str) -> bool:
    """Whether the prompt already opened the think block (``completion_prefix: "<think>"``)."""
    return prompt.rstrip().endswith(THINK_OPEN)


def format_flags(completion: str, prompt: str = "") -> dict[str, bool]:
    """Per completion: has a complete ``<think>`` block, an empty one, an ``<answer>`` block, text after ``</answer>``."""
    think = think_block(completion, opened_by_prompt(prompt))
    return {
        "think": think is not None,
        "empty_think": think is not None and not think.strip(),
        "answer": tagged_answer(completion) is not None,
        "after_answer": ANSWER_CLOSE in completion and bool(text_after_answer(completion).strip()),
    }


def _length_stats(prefix: str, lengths: Sequence[int]) -> dict[str, float]:
    if not len(lengths):
        return {}
    values = np.asarray(lengths, dtype=np.float64)
    return {
        f"{prefix}/mean_length": float(values.mean()),
        f"{prefix}/min_length": float(values.min()),
        f"{prefix}/max_length": float(values.max()),
        f"{prefix}/median_length": float(np.median(values)),
        f"{prefix}/p95_length": float(np.percentile(values, 95)),
    }


def completion_stats(outputs: Mapping[str, Any]) -> dict[str, float]:
    """Statistics of one step's completions from the dict ``training_step`` returns.

    Lengths are in tokens. ``terminated`` completions ended by themselves (EOS), ``truncated`` ones hit the token
    budget; each group's lengths are reported only when it is not empty. Shares are over all completions.
    """
    lengths = list(outputs["completion_lengths"])
    truncated = [bool(t) for t in outputs["truncated"]]
    flags = [format_flags(c, p) for c, p in zip(outputs["completions"], outputs["prompts"], strict=True)]
    stats = _length_stats("completions", lengths)
    terminated = [n for n, cut in zip(lengths, truncated, strict=True) if not cut]
    cut = [n for n, was_cut in zip(lengths, truncated, strict=True) if was_cut]
    for group, values in (("terminated", terminated), ("truncated", cut)):
        if values:
            stats[f"completions/mean_{group}_length"] = float(np.mean(values))
            stats[f"completions/max_{group}_length"] = float(np.max(values))
    stats["completions/clipped_ratio"] = float(np.mean(truncated))
    stats["prompts/mean_length"] = float(np.mean(outputs["prompt_lengths"]))
    for key in ("think", "empty_think", "answer", "after_answer"):
        stats[f"completions/{key}_ratio"] = float(np.mean([f[key] for f in flags]))
    return stats


class CompletionStats(Callback):
    """Log :func:`completion_stats` every training step and warn on the seeds' failure modes.

    Args:
        truncated_warning: Warn when the share of truncated completions exceeds this (0.5 by default): longer
            answers are being cut, and the reward sees no answer at all.
        think_collapse: Warn when the share with a ``<think>`` block falls below this fraction of the highest
            share seen so far (after that was at least 0.5): the policy is dropping its reasoning.
    """

    def __init__(self, truncated_warning: float = 0.5, think_collapse: float = 0.2) -> None:
        if not 0 <= truncated_warning <= 1 or not 0 <= think_collapse <= 1:
            raise ValueError(f"thresholds must lie in [0, 1], got {truncated_warning=}, {think_collapse=}")
        self.truncated_warning = truncated_warning
        self.think_collapse = think_collapse
        self._best_think = 0.0
        self._warned: set[str] = set()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(outputs, Mapping) or "completion_lengths" not in outputs:
            return
        stats = completion_stats(outputs)
        n = len(outputs["completions"])
        for name, value in stats.items():
            pl_module.log(name, value, prog_bar=name == "completions/mean_length", batch_size=n)
        self.check(stats, pl_module.grpo_step)

    def check(self, stats: Mapping[str, float], step: int) -> list[str]:
        """The warnings these statistics raise (each once until the condition clears); also emitted on rank 0."""
        messages = []
        truncated = stats["completions/clipped_ratio"]
        if truncated > self.truncated_warning:
            if "truncated" not in self._warned:
                messages.append(
                    f"step {step}: {truncated:.0%} of completions hit the token budget (completions/clipped_ratio > "
                    f"{self.truncated_warning}); raise grpo.max_completion_length or penalise length"
                )
                self._warned.add("truncated")
        else:
            self._warned.discard("truncated")
        think = stats["completions/think_ratio"]
        collapsed = self._best_think >= 0.5 and think < self.think_collapse * self._best_think
        if collapsed:
            if "think" not in self._warned:
                messages.append(
                    f"step {step}: only {think:.0%} of completions have a <think> block (it was {self._best_think:.0%})"
                    ": the policy is dropping its reasoning"
                )
                self._warned.add("think")
        else:
            self._warned.discard("think")
        self._best_think = max(self._best_think, think)
        for message in messages:
            rank_zero_warn(message)
        return messages

    def state_dict(self) -> dict[str, Any]:
        return {"best_think": self._best_think}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._best_think = float(state_dict["best_think"])
