"""Language mixing per training step: which completions switch script, and where.

The seed runs saw an English answer followed by Chinese or Japanese text after ``</answer>`` (10.6% of the 7B
model's outputs at 1K steps, with *higher* accuracy on those), so the statistics are split by region (inside
``<think>``, inside ``<answer>``, after ``</answer>``) and the reward and accuracy are compared between mixed and
non-mixed completions, as the DiagnosisZero table does.

A region is *mixed* when it holds letters of another script than the completion's own (its dominant script, or
the ``expected`` one when given), ignoring Greek (α-galactosidase); scripts written together in one language
(Han and kana, Hangul and Han) count as one. Detection is the language reward's (:mod:`medzero_pl.rewards.language`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer

from medzero_pl.callbacks.stats import opened_by_prompt
from medzero_pl.rewards.extract import tagged_answer, text_after_answer, think_block
from medzero_pl.rewards.language import (
    ALLOWED_IN_SCIENCE,
    dominant_script,
    foreign_script_fraction,
    script_family,
    scripts_of,
)

ACCURACY_REWARDS = ("mcq_accuracy", "diagnosis_match", "open_medical_r1_accuracy")
"""Rewards read as "accuracy" when comparing mixed and non-mixed completions (the first one present)."""
REGIONS = ("think", "answer", "after_answer")
_TAGS = re.compile(r"</?(?:think|answer)>")  # the format's own Latin letters are not the model's language


def mixed_regions(
    completion: str,
    prompt: str = "",
    expected: str | Sequence[str] | None = None,
    allowed: Sequence[str] = ALLOWED_IN_SCIENCE,
) -> dict[str, bool]:
    """Per region (``completion`` as a whole, ``think``, ``answer``, ``after_answer``): does it hold letters of a
    script other than the expected one? A missing region is not mixed; the tags themselves are not text."""
    untagged = _TAGS.sub(" ", completion)
    if expected is None:
        dominant = dominant_script(untagged, allowed)
        if dominant is None or dominant == "other":
            return dict.fromkeys(("completion", *REGIONS), False)
        scripts = script_family(dominant)
    else:
        scripts = scripts_of(expected)
    regions = {
        "completion": untagged,
        "think": think_block(completion, opened_by_prompt(prompt)) or "",
        "answer": tagged_answer(completion) or "",
        "after_answer": text_after_answer(completion),
    }
    return {name: foreign_script_fraction(text, scripts, allowed) > 0 for name, text in regions.items()}


def language_mixing(
    outputs: Mapping[str, Any],
    expected: str | Sequence[str] | None = None,
    allowed: Sequence[str] = ALLOWED_IN_SCIENCE,
    accuracy_reward: str | None = None,
) -> dict[str, float]:
    """Shares of mixed completions per region, and reward / accuracy on mixed vs non-mixed completions.

    Keys: ``language/mixed_ratio`` (anywhere), ``language/{think,answer,after_answer}_mixed_ratio``,
    ``language/reward_{mixed,unmixed}`` and ``language/accuracy_{mixed,unmixed}`` (each only when its group is not
    empty; accuracy only where the accuracy reward applies).
    """
    flags = [
        mixed_regions(c, p, expected, allowed) for c, p in zip(outputs["completions"], outputs["prompts"], strict=True)
    ]
    stats = {"language/mixed_ratio": float(np.mean([f["completion"] for f in flags]))}
    for region in REGIONS:
        stats[f"language/{region}_mixed_ratio"] = float(np.mean([f[region] for f in flags]))
    rewards = outputs["rewards"]
    name = accuracy_reward or next((r for r in ACCURACY_REWARDS if r in rewards), None)
    accuracy = rewards.get(name) if name else None
    for label, wanted in (("mixed", True), ("unmixed", False)):
        rows = [i for i, f in enumerate(flags) if f["completion"] == wanted]
        if rows:
            stats[f"language/reward_{label}"] = float(np.mean([outputs["reward"][i] for i in rows]))
        graded = [accuracy[i] for i in rows if accuracy is not None and accuracy[i] is not None]
        if graded:
            stats[f"language/accuracy_{label}"] = float(np.mean(graded))
    return stats


class LanguageMixing(Callback):
    """Log :func:`language_mixing` every training step.

    Args:
        expected: A script name or language code (``"latin"``, ``"en"``, ``"zh"``) every completion should be
            written in; None (default) takes each completion's dominant script.
        allowed: Scripts never counted as a switch (Greek by default).
        accuracy_reward: The reward read as accuracy; None picks the first of :data:`ACCURACY_REWARDS` present.
    """

    def __init__(
        self,
        expected: str | Sequence[str] | None = None,
        allowed: Sequence[str] = ALLOWED_IN_SCIENCE,
        accuracy_reward: str | None = None,
    ) -> None:
        if expected is not None:
            scripts_of(expected)  # unknown names fail here, not mid-training
        scripts_of(allowed)
        self.expected, self.allowed, self.accuracy_reward = expected, tuple(allowed), accuracy_reward

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(outputs, Mapping) or "completions" not in outputs:
            return
        stats = language_mixing(outputs, self.expected, self.allowed, self.accuracy_reward)
        for name, value in stats.items():
            pl_module.log(name, value, batch_size=len(outputs["completions"]))
