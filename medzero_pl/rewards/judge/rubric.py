"""The RareArena judge rubric as pure functions: the request's messages, the reply's parsing, the cache key.

Rubric of RareArena (zhao-zy15/RareArena): each predicted diagnosis scores 2 if it is the gold disease or a
synonym, 1 if it is a broader category that contains it, 0 otherwise. The judge replies with a JSON list, one
integer per prediction, e.g. ``[0, 2, 1]``; anything else is *malformed* (None), never read as a score.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

RUBRIC_VERSION = "rarearena-2"
"""Part of every cache key: change it whenever SYSTEM or judge_prompt changes, so old verdicts are not reused."""
SYSTEM = (
    "You are a medical expert grading rare-disease diagnoses. For each predicted diagnosis, compare it with the "
    "gold diagnosis and give 2 if it is the same disease or a synonym of it, 1 if it is a broader disease category "
    "that includes the gold diagnosis, 0 otherwise. Reply with only a JSON list of integers, one per prediction, "
    "in order, e.g. [0, 2, 0]."
)
MAX_PREDICTIONS = 5
"""RareArena grades the first five diagnoses of an answer (its top-5)."""
_ARRAY = re.compile(r"\[[^\[\]]*\]")


def judge_prompt(gold: Sequence[str], predictions: Sequence[str]) -> str:
    names = " / ".join(gold)
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(predictions, 1))
    return f"Gold diagnosis: {names}\n\nPredicted diagnoses:\n{listed}"


def judge_messages(gold: Sequence[str], predictions: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages of one request."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": judge_prompt(gold, predictions)}]


def parse_scores(content: str, n: int) -> tuple[int, ...] | None:
    """The first JSON list in the reply if it holds exactly ``n`` scores in {0, 1, 2}; else None (malformed)."""
    for match in _ARRAY.finditer(content):
        try:
            values = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        ok = isinstance(values, list) and len(values) == n
        if ok and all(isinstance(v, int) and not isinstance(v, bool) and v in (0, 1, 2) for v in values):
            return tuple(values)
        return None
    return None


def score_list_regex(n: int) -> str:
    """The replies ``parse_scores`` accepts for ``n`` predictions, in the form a constrained decoder takes."""
    return r"\[[012]" + r"(, [012])" * (n - 1) + r"\]"


def cache_key(model: str, gold: Sequence[str], predictions: Sequence[str]) -> str:
    """The verdict's identity: (judge model, rubric version, case's gold names, the answer's predictions)."""
    identity = [model, RUBRIC_VERSION, list(gold), list(predictions)]
    return hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()
