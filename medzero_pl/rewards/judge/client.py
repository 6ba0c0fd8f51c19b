"""The judge's transport: the ``openai`` client against an OpenAI-compatible endpoint, a disk cache, retries.

One client serves evaluation (``python -m medzero_pl.eval --judge-url``) and the ``diagnosis_judge`` reward. The
``openai`` package (installed with vLLM; ``pip install openai`` otherwise) is imported when a client is built, so
importing the rewards package never needs it.

Parsed verdicts are cached on disk under :func:`~.rubric.cache_key` (model, rubric version, gold, predictions), so
re-running a report or re-scoring an answer costs no call; nothing else is cached, so a judge that misbehaved once
is asked again next time. Timeouts, connection errors, replies that are not HTTP, 429 and 5xx are retried with
exponential backoff (the ``openai`` client's own retries are off, so a caller's deadline bounds them). A reply that is
not a chat completion or does not parse into the right number of scores is *malformed*: unscored, never silently
wrong. The API key is only handed to the ``openai`` client, never written to the cache or a log. Failures are logged
at debug level, one line per attempt; callers report the unscored cases (a count per batch or per benchmark).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medzero_pl.rewards.judge.rubric import (
    MAX_PREDICTIONS,
    cache_key,
    judge_messages,
    parse_scores,
    score_list_regex,
)

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Verdict:
    """``scores`` per prediction, or None when unscored; ``status`` ok | malformed | error | no_answer."""

    scores: tuple[int, ...] | None
    status: str
    cached: bool = False


class JudgeClient:
    """Chat-completions client with a disk cache, a timeout per request and retries; thread-safe.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: Model name sent in the request (and part of the cache key).
        cache_dir: Where verdicts are kept (one JSON file per key); None disables caching.
        timeout: Seconds per HTTP request.
        retries: Extra attempts after a timeout, a connection error, 408, 409, 429 or 5xx.
        backoff: First wait between attempts in seconds (doubled each time).
        api_key: The endpoint's key (a local vLLM server needs none).
        max_tokens: Completion budget of the judge's reply.
        structured: Ask the server to constrain the reply to the score list (vLLM's ``structured_outputs``; a small
            judge then always replies in the rubric's form; other servers may refuse the field).
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
        structured: bool = False,
    ) -> None:
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError(f"timeout > 0, retries >= 0, backoff >= 0 expected, got {timeout}, {retries}, {backoff}")
        import openai  # installed with vLLM; imported here so that the rewards package does not need it

        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=0)
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_tokens, self.structured = max_tokens, structured
        self.requests_sent = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"JudgeClient({str(self._client.base_url)!r}, {self.model!r})"

    def judge(self, gold: Sequence[str], predictions: Sequence[str], deadline: float | None = None) -> Verdict:
        """Scores for ``predictions`` (at most 5 are sent) against the gold name(s).

        Args:
            deadline: A ``time.monotonic()`` after which no new attempt starts (a started one ends by its timeout).
        """
        predictions = list(predictions)[:MAX_PREDICTIONS]
        if not predictions:
            return Verdict((), "no_answer")
        key = cache_key(self.model, gold, predictions)
        cached = self._cached(key, len(predictions))
        if cached is not None:
            return Verdict(cached, "ok", cached=True)
        content = self._ask(judge_messages(gold, predictions), len(predictions), deadline)
        if content is None:
            return Verdict(None, "error")
        scores = parse_scores(content, len(predictions))
        if scores is None:
            log.debug("judge: malformed reply %r", content[:200])
            return Verdict(None, "malformed")
        self._store(key, {"model": self.model, "gold": list(gold), "predictions": predictions, "content": content})
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
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_dir / f".{key}.json.tmp{os.getpid()}.{threading.get_ident()}"
            tmp.write_text(json.dumps(entry))
            os.replace(tmp, self.cache_dir / f"{key}.json")  # a killed run leaves no half-written entry
        except OSError as err:  # a full disk loses a cache entry, not the verdict
            log.warning("judge: cannot cache a verdict: %s", err)

    def _ask(self, messages: list[dict[str, str]], n: int, deadline: float | None) -> str | None:
        """The reply's text; ``""`` for a reply that is not a chat completion; None after the last failed attempt."""
        openai = self._openai
        extra = {"structured_outputs": {"regex": score_list_regex(n)}} if self.structured else None
        for attempt in range(self.retries + 1):
            if attempt:
                pause = self.backoff * 2 ** (attempt - 1)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    return None
                time.sleep(pause)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            with self._lock:
                self.requests_sent += 1
            try:
                reply = self._client.chat.completions.create(
                    model=self.model, messages=messages, temperature=0, max_tokens=self.max_tokens, extra_body=extra
                )
            except openai.APIStatusError as err:
                if err.status_code not in RETRY_STATUS:
                    log.debug("judge: HTTP %d, not retried", err.status_code)
                    return None
                log.debug("judge: HTTP %d (attempt %d)", err.status_code, attempt + 1)
                continue
            except openai.APIConnectionError as err:  # refused, reset, timed out, not HTTP at all
                log.debug("judge: %s (attempt %d)", type(err).__name__, attempt + 1)
                continue
            except (openai.APIError, ValueError) as err:  # a 200 whose body does not decode
                log.debug("judge: reply is not a chat completion: %s", type(err).__name__)
                return ""
            try:
                content = reply.choices[0].message.content
            except (AttributeError, IndexError, TypeError) as err:
                log.debug("judge: reply is not a chat completion: %s", type(err).__name__)
                return ""  # an answer, but not one we can read: malformed (and never cached)
            return content if isinstance(content, str) else ""
        return None
