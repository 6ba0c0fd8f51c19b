"""Grade a row with its task's own grader: MCQ accuracy for ``task="mcq"``, diagnosis match for ``"diagnosis"``.

Shaping rewards that depend on correctness (the cosine length reward) and evaluation use this, so "correct" means
the same thing everywhere it is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from medzero_pl.rewards.diagnosis import DIAGNOSIS, clean_gold, diagnosis_match_reward
from medzero_pl.rewards.mcq import MCQ, mcq_accuracy_reward

Grader = Callable[..., "float | None"]


def make_grader(mcq: Mapping[str, Any] | None = None, diagnosis: Mapping[str, Any] | None = None) -> Grader:
    """``grade(text, task, answer, options, diagnoses) -> float | None`` with the given registry kwargs for
    ``mcq_accuracy`` and ``diagnosis_match`` (validated now). A row without ``task`` is an MCQ if it has a gold
    ``answer``, else a diagnosis case if it has ``diagnoses``; ``None`` if neither grader applies."""
    graders = {
        MCQ: mcq_accuracy_reward(**dict(mcq or {})).item,
        DIAGNOSIS: diagnosis_match_reward(**dict(diagnosis or {})).item,
    }

    def grade(
        text: str, task: Any = None, answer: Any = None, options: Any = None, diagnoses: Any = None
    ) -> float | None:
        if task is None:
            task = MCQ if isinstance(answer, str) and answer.strip() else DIAGNOSIS if clean_gold(diagnoses) else None
        if task == MCQ:
            return graders[MCQ](text, answer, options, task)
        if task == DIAGNOSIS:
            return graders[DIAGNOSIS](text, diagnoses, task)
        return None

    return grade
