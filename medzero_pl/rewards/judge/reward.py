"""The ``diagnosis_judge`` reward: the RareArena judge scores each answer, ``diagnosis_match`` stands in for it.

Per batch, every row with a gold diagnosis and an answer is sent to the judge at once through a bounded thread pool
(``max_workers``), each request with its own timeout and retries (:class:`~.client.JudgeClient`), and the batch waits
at most ``deadline`` seconds. A row the judge leaves unscored (timeout, malformed reply, server down, deadline
passed) gets ``diagnosis_match``'s score instead and is counted (an answer over 300 characters is not a name: it
is matched, never sent): ``rewards/diagnosis_judge/fallback_rate`` is the
unscored share of the rows that needed the judge, reported through TRL's ``log_metric`` callback. The call never
raises on the judge's account and returns by the deadline: requests still running then finish in the background
(their verdicts still reach the cache), queued ones are cancelled.

The value of a row is the best credit of its first ``top_k`` diagnoses: 1.0 for the judge's 2 (the disease or a
synonym), ``broader_credit`` for its 1 (a broader category), 0.0 for 0; 0.0 without an answer; ``None`` on a row of
another task or without gold.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from medzero_pl.rewards.batch import BatchReward, completion_text
from medzero_pl.rewards.diagnosis import DIAGNOSIS, clean_gold, diagnosis_match_reward, split_diagnoses
from medzero_pl.rewards.extract import check_extraction, extract_answer
from medzero_pl.rewards.judge.client import JudgeClient
from medzero_pl.rewards.judge.rubric import MAX_PREDICTIONS

log = logging.getLogger(__name__)
NAME = "diagnosis_judge"
FALLBACK_RATE = f"rewards/{NAME}/fallback_rate"
MAX_NAME_CHARS = 300
"""A longer "diagnosis" is prose (as for the fuzzy matcher): not sent to the judge."""


def judge_credit(scores: Sequence[int], broader_credit: float) -> float:
    """The reward of one answer from the judge's scores of its predictions: the best of 1.0 / broader / 0.0."""
    return max((1.0 if s == 2 else broader_credit if s == 1 else 0.0 for s in scores), default=0.0)


class DiagnosisJudgeReward:
    """``reward(prompts, completions, diagnoses=..., task=..., log_metric=...) -> list[float | None]``.

    Args:
        client: The judge.
        fallback: ``diagnosis_match`` as built for this run; scores the rows the judge leaves unscored.
        top_k: Predictions of an answer the judge grades (1: RareArena's top-1; at most 5).
        broader_credit: Reward for the judge's 1 (a broader category that contains the gold).
        policy: ``<answer>`` policy (see :mod:`medzero_pl.rewards.extract`).
        max_workers: Requests in flight at once.
        deadline: Seconds a batch may wait for the judge.
    """

    __name__ = NAME

    def __init__(
        self,
        client: JudgeClient,
        fallback: BatchReward,
        top_k: int = 1,
        broader_credit: float = 0.0,
        policy: str = "first",
        max_workers: int = 8,
        deadline: float = 120.0,
    ) -> None:
        self.client, self.fallback = client, fallback
        self.top_k, self.broader_credit, self.policy, self.deadline = top_k, broader_credit, policy, deadline
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="judge")
        self.fallbacks = 0
        """Rows scored by the fallback since the reward was built (the metric is per batch)."""

    def __repr__(self) -> str:
        return f"DiagnosisJudgeReward({self.client!r}, top_k={self.top_k}, deadline={self.deadline})"

    def __call__(
        self,
        prompts: Any = None,
        completions: Sequence[Any] | None = None,
        *,
        diagnoses: Sequence[Any] | None = None,
        task: Sequence[Any] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        if completions is None or diagnoses is None:
            raise ValueError(f"reward '{NAME}' needs completions and a 'diagnoses' column")
        n = len(completions)
        if len(diagnoses) != n or (task is not None and len(task) != n):
            raise ValueError(f"reward '{NAME}': columns must hold one value per completion ({n})")
        texts = [completion_text(c) for c in completions]
        values: list[float | None] = [None] * n
        asked: dict[int, tuple[tuple[str, ...], list[str]]] = {}
        matched: list[int] = []  # answers too long to be a name: the matcher scores them, the judge is not asked
        for i, text in enumerate(texts):
            golds = clean_gold(diagnoses[i])
            if (task is not None and task[i] not in (None, DIAGNOSIS)) or not golds:
                continue
            answer = extract_answer(text, self.policy, ())
            predictions = (split_diagnoses(answer)[: self.top_k] or [answer]) if answer else []
            if not predictions:
                values[i] = 0.0
            elif max(map(len, predictions)) > MAX_NAME_CHARS:
                matched.append(i)
            else:
                asked[i] = (golds, predictions)
        unscored = self._judge(asked, values)
        self.fallbacks += len(unscored)
        if unscored:
            log.warning(
                "judge: %d of %d answers unscored, matched by diagnosis_match instead", len(unscored), len(asked)
            )
        rest = sorted(unscored + matched)
        if rest:
            rows = {"diagnoses": [diagnoses[i] for i in rest], "task": [DIAGNOSIS] * len(rest)}
            for i, value in zip(rest, self._fallback([texts[i] for i in rest], rows), strict=True):
                values[i] = value
        if log_metric is not None:  # every call logs it, so that every rank logs the same keys
            log_metric(FALLBACK_RATE, len(unscored) / len(asked) if asked else 0.0)
        return values

    def _judge(self, asked: dict[int, tuple[tuple[str, ...], list[str]]], values: list[float | None]) -> list[int]:
        """Fill ``values`` with the judge's credit where it answers by the deadline; the rows it did not score."""
        if not asked:
            return []
        deadline = time.monotonic() + self.deadline
        futures = {}
        for i, (golds, predictions) in asked.items():
            try:
                futures[self.pool.submit(self.client.judge, golds, predictions, deadline)] = i
            except RuntimeError:  # the pool was shut down (interpreter exit)
                break
        done, pending = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for future in pending:
            future.cancel()  # queued: never sent; running: ends by its own timeout, its verdict still cached
        for future in done:
            try:
                scores = future.result().scores
            except Exception as err:  # noqa: BLE001 - a judge failure of any kind is a fallback, never a crash
                log.warning("judge: request failed: %s: %s", type(err).__name__, err)
                continue
            if scores is not None:
                values[futures[future]] = judge_credit(scores, self.broader_credit)
        return [i for i in asked if values[i] is None]

    def _fallback(self, texts: list[str], rows: dict[str, list[Any]]) -> list[float | None]:
        try:
            return list(self.fallback(None, texts, **rows))
        except Exception as err:  # noqa: BLE001 - the reward never raises on a row's account
            log.warning("judge: fallback failed: %s: %s", type(err).__name__, err)
            return [0.0] * len(texts)


def diagnosis_judge_reward(
    base_url: str,
    model: str,
    api_key_env: str | None = None,
    cache_dir: str | None = None,
    timeout: float = 30.0,
    retries: int = 1,
    backoff: float = 0.5,
    max_workers: int = 8,
    deadline: float = 120.0,
    top_k: int = 1,
    broader_credit: float = 0.0,
    policy: str = "first",
    max_tokens: int = 64,
    structured: bool = False,
    fallback: dict[str, Any] | None = None,
) -> DiagnosisJudgeReward:
    """Registry factory of the ``diagnosis_judge`` reward.

    Args:
        base_url: The judge's OpenAI-compatible API root, e.g. ``http://127.0.0.1:8001/v1`` (``vllm serve``).
        model: The served model's name.
        api_key_env: Name of the environment variable holding the endpoint's key (the key itself is never
            configured, so it never reaches a config file, a checkpoint or a log).
        cache_dir: Directory of the verdict cache (None: no cache).
        timeout, retries, backoff: Per request: seconds, extra attempts, first pause between attempts.
        max_workers: Requests in flight at once.
        deadline: Seconds a batch may wait for the judge; rows not scored by then use the fallback.
        top_k, broader_credit, policy: See :class:`DiagnosisJudgeReward`.
        max_tokens: Budget of the judge's reply.
        structured: Constrain the reply to the score list (a vLLM server; see :class:`~.client.JudgeClient`).
        fallback: ``diagnosis_match`` kwargs (default: the ``diagnosis_fuzzy`` preset's, ``mode: fuzzy``).
    """
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8001/v1, got {base_url!r}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be the served model's name, got {model!r}")
    for label, number in (("timeout", timeout), ("deadline", deadline)):
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number) or number <= 0:
            raise ValueError(f"{label} must be a positive number of seconds, got {number!r}")
    for label, count, least in (("retries", retries, 0), ("max_workers", max_workers, 1)):
        if isinstance(count, bool) or not isinstance(count, int) or count < least:
            raise ValueError(f"{label} must be an integer >= {least}, got {count!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_PREDICTIONS:
        raise ValueError(f"top_k must be an integer in [1, {MAX_PREDICTIONS}], got {top_k!r}")
    if isinstance(broader_credit, bool) or not isinstance(broader_credit, int | float) or not 0 <= broader_credit < 1:
        raise ValueError(f"broader_credit must be a number in [0, 1), got {broader_credit!r}")
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
        raise ValueError(f"backoff must be a number >= 0, got {backoff!r}")
    if not isinstance(structured, bool):
        raise ValueError(f"structured must be true or false, got {structured!r}")
    check_extraction(policy, ())
    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ValueError(f"api_key_env: the environment variable {api_key_env!r} is not set")
    settings = {"mode": "fuzzy", "top_k": top_k, "policy": policy} | dict(fallback or {})
    client = JudgeClient(base_url, model, cache_dir, timeout, retries, backoff, api_key, max_tokens, structured)
    return DiagnosisJudgeReward(
        client, diagnosis_match_reward(**settings), top_k, float(broader_credit), policy, max_workers, float(deadline)
    )
