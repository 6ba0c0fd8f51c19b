"""The LLM judge in evaluation: RareArena's top-1 / top-5 over a diagnosis benchmark's completions.

Rubric of RareArena (zhao-zy15/RareArena): each predicted diagnosis scores 2 if it is the gold disease or a
synonym, 1 if it is a broader category that contains it, 0 otherwise. Top-1 accuracy counts cases whose first
prediction scores 2, top-5 those with a 2 among the first five. The offline fuzzy matcher
(:mod:`medzero_pl.rewards.diagnosis`) is the default scorer; the judge is an optional second opinion.

The rubric, the client (``openai`` transport, disk cache, timeouts and retries) and the verdicts are those of the
``diagnosis_judge`` reward (:mod:`medzero_pl.rewards.judge`): one request per case (temperature 0); a malformed
reply or a failed request leaves the case unscored (left out of top-1/top-5 and counted), never silently wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medzero_pl.data.records import Example
from medzero_pl.rewards.diagnosis import split_diagnoses
from medzero_pl.rewards.extract import extract_answer
from medzero_pl.rewards.judge import JudgeClient, Verdict, parse_scores

__all__ = ["JudgeClient", "Verdict", "judge_results", "parse_scores", "predictions_of"]


def predictions_of(text: str) -> list[str]:
    """The ranked diagnoses of a completion (tagged answer, else "the diagnosis is ..." / boxed)."""
    answer = extract_answer(text, "first", ("answer_is", "boxed"))
    return split_diagnoses(answer)[:5] if answer else []


def judge_results(result: dict[str, Any], items: Sequence[Example], client: JudgeClient) -> dict[str, float]:
    """Judge the first completion of every record of a diagnosis benchmark; adds ``scorers["judge"]``.

    ``top1``/``top5`` (and ``accuracy`` = ``top1``) are over scored cases; ``unscored`` counts malformed replies
    and failed requests, reported rather than counted wrong.
    """
    by_id = {ex.id: ex for ex in items}
    verdicts = []
    for record in result["records"]:
        verdict = client.judge(by_id[record["id"]].diagnoses, predictions_of(record["completions"][0]))
        record["judge"] = {"scores": verdict.scores, "status": verdict.status}
        verdicts.append(verdict)
    scored = [v.scores for v in verdicts if v.scores is not None]
    summary = {
        "top1": sum(bool(s) and s[0] == 2 for s in scored) / len(scored) if scored else float("nan"),
        "top5": sum(2 in s for s in scored) / len(scored) if scored else float("nan"),
        "scored": float(len(scored)),
        "malformed": float(sum(v.status == "malformed" for v in verdicts)),
        "errors": float(sum(v.status == "error" for v in verdicts)),
    }
    summary["accuracy"] = summary["top1"]
    summary["unscored"] = summary["malformed"] + summary["errors"]
    result["scorers"]["judge"] = summary
    return summary
