"""An LLM judge for diagnoses over an OpenAI-compatible HTTP endpoint (a local vLLM server, for instance).

Rubric of RareArena (zhao-zy15/RareArena): each predicted diagnosis scores 2 if it is the gold disease or a
synonym, 1 if it is a broader category that contains it, 0 otherwise. Top-1 accuracy counts cases whose first
prediction scores 2, top-5 those with a 2 among the first five. The offline fuzzy matcher
(:mod:`medzero_pl.rewards.diagnosis`) is the default scorer; the judge is an optional second opinion.

The client sends one chat request per case (temperature 0) and expects a JSON list with one integer per
prediction, e.g. ``[0, 2, 1]``. Parsed verdicts are cached on disk by request content, so re-running a report
costs no calls; nothing else is cached, so a judge that misbehaved once is asked again next time. Timeouts,
connection errors, replies that are not HTTP, 429 and 5xx are retried with exponential backoff. A reply that does
not decode, is not a chat completion, or does not parse into the right number of scores in {0, 1, 2} is
*malformed*: the case is unscored (left out of top-1/top-5 and counted), never silently wrong.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medzero_pl.data.records import Example
from medzero_pl.rewards.diagnosis import split_diagnoses
from medzero_pl.rewards.extract import extract_answer

log = logging.getLogger(__name__)

SYSTEM = (
    "You are a medical expert grading rare-disease diagnoses. For each predicted diagnosis, compare it with the "
    "gold diagnosis and give 2 if it is the same disease or a synonym of it, 1 if it is a broader disease category "
    "that includes the gold diagnosis, 0 otherwise. Reply with only a JSON list of integers, one per prediction, "
    "in order, e.g. [0, 2, 0]."
)
_ARRAY = re.compile(r"\[[^\[\]]*\]")
RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Verdict:
    """``scores`` per prediction, or None when unscored; ``status`` ok | malformed | error | no_answer."""

    scores: tuple[int, ...] | None
    status: str
    cached: bool = False


def judge_prompt(gold: Sequence[str], predictions: Sequence[str]) -> str:
    names = " / ".join(gold)
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(predictions, 1))
    return f"Gold diagnosis: {names}\n\nPredicted diagnoses:\n{listed}"


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


class JudgeClient:
    """Chat-completions client with a disk cache, a timeout per request and retries.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is appended).
        model: Model name sent in the request.
        cache_dir: Where replies are kept (one JSON file per request hash); None disables caching.
        timeout: Seconds per HTTP request.
        retries: Extra attempts after a timeout, a connection error, 429 or 5xx.
        backoff: First wait between attempts in seconds (doubled each time).
        api_key: Sent as ``Authorization: Bearer`` when given.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        cache_dir: str | Path | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 1.0,
        api_key: str | None = None,
        max_tokens: int = 64,
    ) -> None:
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError(f"timeout > 0, retries >= 0, backoff >= 0 expected, got {timeout}, {retries}, {backoff}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.api_key, self.max_tokens = api_key, max_tokens
        self.requests_sent = 0

    def payload(self, gold: Sequence[str], predictions: Sequence[str]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": judge_prompt(gold, predictions)},
            ],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }

    def judge(self, gold: Sequence[str], predictions: Sequence[str]) -> Verdict:
        """Scores for ``predictions`` (at most 5 are sent) against the gold name(s)."""
        predictions = list(predictions)[:5]
        if not predictions:
            return Verdict((), "no_answer")
        payload = self.payload(gold, predictions)
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        cached = self._cached(key, len(predictions))
        if cached is not None:
            return Verdict(cached, "ok", cached=True)
        content = self._post(payload)
        if content is None:
            return Verdict(None, "error")
        scores = parse_scores(content, len(predictions))
        if scores is None:
            log.warning("judge: malformed reply %r", content[:200])
            return Verdict(None, "malformed")
        self._store(key, {"request": payload, "content": content})
        return Verdict(scores, "ok")

    def _cached(self, key: str, n: int) -> tuple[int, ...] | None:
        """The cached verdict's scores; an unreadable or unparsable entry (e.g. an older version's) is a miss."""
        if self.cache_dir is None:
            return None
        try:
            content = json.loads((self.cache_dir / f"{key}.json").read_text())["content"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return parse_scores(content, n) if isinstance(content, str) else None

    def _store(self, key: str, entry: dict[str, Any]) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".{key}.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self.cache_dir / f"{key}.json")  # a killed run leaves no half-written entry

    def _post(self, payload: dict[str, Any]) -> str | None:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.requests_sent += 1
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as err:
                if err.code not in RETRY_STATUS:
                    log.warning("judge: HTTP %d, not retried", err.code)
                    return None
                log.warning("judge: HTTP %d (attempt %d)", err.code, attempt + 1)
                continue
            except (OSError, http.client.HTTPException) as err:  # refused, reset, timed out, not HTTP at all
                log.warning("judge: %s (attempt %d)", err or type(err).__name__, attempt + 1)
                continue
            try:
                return str(json.loads(raw.decode())["choices"][0]["message"]["content"])
            except (ValueError, KeyError, IndexError, TypeError) as err:  # not UTF-8, not JSON, not a completion
                log.warning("judge: reply is not a chat completion: %s", err)
                return ""  # an answer, but not one we can read: malformed (and never cached)
        return None


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
