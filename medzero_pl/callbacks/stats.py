"""Length and format statistics of every training step's completions: the seeds' failure modes show here first
(completions growing until truncated; the 1.5B model dropping ``<think>``), and so does reward hacking of a format
reward: the reasoning shrinking to the prompt's placeholder (``<think>reasoning</think>``) and the answers
collapsing onto one letter, a constant policy whose accuracy is that letter's share of the gold answers.

The callback reads what ``training_step`` returns (``outputs``), computes :func:`completion_stats` and logs it.
TRL's names are kept where TRL has the metric (``completions/mean_length``, ``completions/clipped_ratio``,
``completions/mean_terminated_length``, ...) so dashboards compare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from medzero_pl.eval.metrics import top_share
from medzero_pl.rewards.extract import (
    ANSWER_CLOSE,
    THINK_OPEN,
    copied_from_prompt,
    extract_answer,
    tagged_answer,
    text_after_answer,
    think_block,
)
from medzero_pl.rewards.mcq import MCQ, clean_options, gold_letter, parse_choice

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


def answer_letters(outputs: Mapping[str, Any]) -> tuple[list[str | None], list[str]]:
    """The answer letter of each completion on an MCQ row (None: no tagged answer naming one option) and the rows'
    gold letters; rows of other tasks are left out."""
    columns = outputs["columns"]
    n = len(outputs["completions"])
    answers, options, tasks = (columns.get(key, [None] * n) for key in ("answer", "options", "task"))
    predicted, golds = [], []
    for text, answer, opts, task in zip(outputs["completions"], answers, options, tasks, strict=True):
        opts = clean_options(opts)
        gold = gold_letter(answer, opts) if task in (None, MCQ) else None
        if gold is None:
            continue
        extracted = extract_answer(text)
        predicted.append(parse_choice(extracted, opts) if extracted is not None else None)
        golds.append(gold)
    return predicted, golds


def words(text: str) -> int:
    return len(text.split())


def completion_stats(outputs: Mapping[str, Any], count_tokens: Callable[[str], int] = words) -> dict[str, float]:
    """Statistics of one step's completions from the dict ``training_step`` returns.

    Lengths are in tokens. ``terminated`` completions ended by themselves (EOS), ``truncated`` ones hit the token
    budget; each group's lengths are reported only when it is not empty. Shares are over all completions. The
    reasoning (``<think>`` content) and answer (``<answer>`` content) lengths count 0 where the block is missing,
    measured by `count_tokens` (the callback passes the policy's tokenizer). On MCQ rows, ``answers/top_letter_share``
    is the share given the most frequent answer letter, next to the gold letters' own (``gold_top_letter_share``).
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
    reasoning = [
        think_block(c, opened_by_prompt(p)) for c, p in zip(outputs["completions"], outputs["prompts"], strict=True)
    ]
    answers = [tagged_answer(c) for c in outputs["completions"]]
    stats["completions/mean_reasoning_length"] = float(np.mean([count_tokens(r) if r else 0 for r in reasoning]))
    stats["completions/mean_answer_length"] = float(np.mean([count_tokens(a) if a else 0 for a in answers]))
    copied = [r is not None and copied_from_prompt(r, p) for r, p in zip(reasoning, outputs["prompts"], strict=True)]
    stats["completions/copied_reasoning_ratio"] = float(np.mean(copied))
    predicted, golds = answer_letters(outputs)
    if golds:
        stats["answers/top_letter_share"] = top_share(predicted)[1]
        stats["answers/gold_top_letter_share"] = top_share(golds)[1]
    return stats


class CompletionStats(Callback):
    """Log :func:`completion_stats` every training step and warn on the seeds' failure modes and on collapse.

    Args:
        truncated_warning: Warn when the share of truncated completions exceeds this (0.5 by default): longer
            answers are being cut, and the reward sees no answer at all.
        think_collapse: Warn when the share with a ``<think>`` block falls below this fraction of the highest
            share seen so far (after that was at least 0.5): the policy is dropping its reasoning.
        reasoning_collapse: Warn when the mean reasoning length falls below this fraction of its value at the first
            step: the policy is shortening its reasoning away.
        copied_warning: Warn when the share of completions whose reasoning is a piece of the prompt (its placeholder,
            e.g. ``reasoning``) exceeds this.
        letter_dominance: Warn when one answer letter is given on more than this share of MCQ completions, and on
            more than the most frequent gold letter's share: the answers are collapsing onto one letter.
    """

    def __init__(
        self,
        truncated_warning: float = 0.5,
        think_collapse: float = 0.2,
        reasoning_collapse: float = 0.5,
        copied_warning: float = 0.5,
        letter_dominance: float = 0.5,
    ) -> None:
        thresholds = {
            "truncated_warning": truncated_warning,
            "think_collapse": think_collapse,
            "reasoning_collapse": reasoning_collapse,
            "copied_warning": copied_warning,
            "letter_dominance": letter_dominance,
        }
        if not all(0 <= value <= 1 for value in thresholds.values()):
            raise ValueError(f"thresholds must lie in [0, 1], got {thresholds}")
        self.truncated_warning = truncated_warning
        self.think_collapse = think_collapse
        self.reasoning_collapse = reasoning_collapse
        self.copied_warning = copied_warning
        self.letter_dominance = letter_dominance
        self._best_think = 0.0
        self._start_reasoning: float | None = None
        self._warned: set[str] = set()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(outputs, Mapping) or "completion_lengths" not in outputs:
            return
        tokenizer = getattr(pl_module, "tokenizer", None)
        count = words if tokenizer is None else lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)
        stats = completion_stats(outputs, count)
        n = len(outputs["completions"])
        for name, value in stats.items():
            pl_module.log(name, value, prog_bar=name == "completions/mean_length", batch_size=n)
        self.check(stats, pl_module.grpo_step)

    def check(self, stats: Mapping[str, float], step: int) -> list[str]:
        """The warnings these statistics raise (each once until the condition clears); also emitted on rank 0."""
        messages: list[str] = []

        def once(key: str, condition: bool, message: str) -> None:
            if not condition:
                self._warned.discard(key)
            elif key not in self._warned:
                messages.append(f"step {step}: {message}")
                self._warned.add(key)

        truncated = stats["completions/clipped_ratio"]
        once(
            "truncated",
            truncated > self.truncated_warning,
            f"{truncated:.0%} of completions hit the token budget (completions/clipped_ratio > "
            f"{self.truncated_warning}); raise grpo.max_completion_length or penalise length",
        )
        think = stats["completions/think_ratio"]
        once(
            "think",
            self._best_think >= 0.5 and think < self.think_collapse * self._best_think,
            f"only {think:.0%} of completions have a <think> block (it was {self._best_think:.0%}): the policy is "
            "dropping its reasoning",
        )
        self._best_think = max(self._best_think, think)
        reasoning = stats.get("completions/mean_reasoning_length")
        if reasoning is not None:
            start = self._start_reasoning = reasoning if self._start_reasoning is None else self._start_reasoning
            once(
                "reasoning",
                start > 0 and reasoning < self.reasoning_collapse * start,
                f"the mean reasoning length fell to {reasoning:.1f} tokens from {start:.1f} at the start "
                "(completions/mean_reasoning_length): the policy is shortening its reasoning away",
            )
        copied = stats.get("completions/copied_reasoning_ratio", 0.0)
        once(
            "copied",
            copied > self.copied_warning,
            f"the reasoning of {copied:.0%} of completions is a piece of the prompt, such as its placeholder "
            "(completions/copied_reasoning_ratio): the format reward is being gamed; remove the copyable "
            "placeholder from the prompt, add beta > 0 or a reasoning reward",
        )
        top, gold_top = stats.get("answers/top_letter_share"), stats.get("answers/gold_top_letter_share")
        once(
            "letters",
            top is not None and top > self.letter_dominance and top > gold_top,
            f"one answer letter is given on {top or 0:.0%} of MCQ completions, the most frequent gold letter on "
            f"{gold_top or 0:.0%} (answers/top_letter_share): the answers are collapsing onto one letter",
        )
        for message in messages:
            rank_zero_warn(message)
        return messages

    def state_dict(self) -> dict[str, Any]:
        return {"best_think": self._best_think, "start_reasoning": self._start_reasoning}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._best_think = float(state_dict["best_think"])
        self._start_reasoning = state_dict.get("start_reasoning")  # absent from checkpoints before the alert
