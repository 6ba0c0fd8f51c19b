"""Find the model's final answer in a completion: the content of ``<answer>...</answer>``.

Only the completion is searched, never the prompt. The DiagnosisZero seed (verl) scored ``prompt + response`` and
took "the third ``<answer>`` match" because its prompt already contained two example tags; scoring the completion
alone makes "first" mean "the model's first answer" whatever the template says.

Pairing follows the semantics of the non-greedy regex ``<answer>(.*?)</answer>`` that TRL / open-r1 / verl reward
functions use (an ``<answer>`` opens, the next ``</answer>`` closes, whatever lies between is the content), but is
computed with ``str.find`` in one linear pass: the regex is quadratic on inputs such as ``"<answer>" * 100_000``.

Fallbacks (off by default, meant for evaluating models that ignore the format, never for training, where they would
pay the policy for skipping the format) are tried in the order given, only when no tagged answer exists:

* ``"answer_is"``: ``The answer is X`` / ``Final answer: X`` / ``Answer: X`` (last occurrence, rest of the line),
* ``"boxed"``: the last ``\\boxed{X}`` (braces balanced),
* ``"letter"``: the last non-empty line is a lone option letter such as ``B``, ``(B)`` or ``B.``,
* ``"option_text"``: the last non-empty line contains exactly one of the options' texts.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Callable, Mapping, Sequence

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

POLICIES = ("first", "last", "reject")
"""What to do when a completion holds several complete answers: take the first, the last, or none (score 0)."""


def answer_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the content of every complete ``<answer>...</answer>`` pair, in order (linear time)."""
    spans = []
    pos = 0
    while True:
        start = text.find(ANSWER_OPEN, pos)
        if start < 0:
            return spans
        start += len(ANSWER_OPEN)
        end = text.find(ANSWER_CLOSE, start)
        if end < 0:
            return spans
        spans.append((start, end))
        pos = end + len(ANSWER_CLOSE)


def tagged_answer(text: str, policy: str = "first") -> str | None:
    """The stripped content of the chosen ``<answer>`` block, or ``None`` if there is none (or several, under
    ``policy="reject"``). An empty block gives ``""``: the model did answer, with nothing."""
    return _choose(text, answer_spans(text), policy)


def _choose(text: str, spans: list[tuple[int, int]], policy: str) -> str | None:
    if not spans or (policy == "reject" and len(spans) > 1):
        return None
    start, end = spans[-1] if policy == "last" else spans[0]
    return text[start:end].strip()


def text_after_answer(text: str) -> str:
    """Everything after the last ``</answer>`` (``""`` if there is none).

    This is where the seed runs saw language mixing: an English answer followed by Chinese or Japanese text.
    """
    end = text.rfind(ANSWER_CLOSE)
    return "" if end < 0 else text[end + len(ANSWER_CLOSE) :]


def after_think(text: str) -> str:
    """The text after the last ``</think>`` (the whole text if there is none): where a final answer is stated."""
    end = text.rfind(THINK_CLOSE)
    return text if end < 0 else text[end + len(THINK_CLOSE) :]


_ANSWER_IS = re.compile(
    r"(?:\bthe\s+(?:correct\s+|final\s+|best\s+|right\s+|most\s+likely\s+)?(?:answer|diagnosis)\s+is\b"
    r"|\bfinal\s+(?:answer|diagnosis)\b(?:\s+is\b)?|\b(?:answer|diagnosis)\s*:)"
    r"[ \t:*]*([^\n]{1,200})",
    re.IGNORECASE,
)
_LONE_LETTER = re.compile(r"[\s*_`\"'(\[]*[A-Za-z][\s*_`\"')\].:]*")


def _answer_is(text: str, options: Mapping[str, str]) -> str | None:
    last = deque(_ANSWER_IS.finditer(text), maxlen=1)
    return last[0].group(1).strip() if last else None


def _boxed(text: str, options: Mapping[str, str]) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, min(len(text), begin + 1000)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i].strip()
            depth -= 1
    return None


def _last_line(text: str) -> str:
    tail = after_think(text).rstrip()
    return tail[tail.rfind("\n") + 1 :].strip()


def _letter(text: str, options: Mapping[str, str]) -> str | None:
    line = unicodedata.normalize("NFKC", _last_line(text))  # a full-width "Ｂ" is "B", as in mcq.parse_choice
    return line if len(line) <= 12 and _LONE_LETTER.fullmatch(line) else None


def _option_text(text: str, options: Mapping[str, str]) -> str | None:
    line = " ".join(_last_line(text).casefold().split())
    hits = {t for t in options.values() if (key := " ".join(t.casefold().split())) and key in line}
    return hits.pop() if len(hits) == 1 else None


FALLBACKS: dict[str, Callable[[str, Mapping[str, str]], str | None]] = {
    "answer_is": _answer_is,
    "boxed": _boxed,
    "letter": _letter,
    "option_text": _option_text,
}


def check_extraction(policy: str, fallbacks: Sequence[str]) -> tuple[str, ...]:
    """Validate ``policy`` and ``fallbacks`` at build time; return the fallbacks as a tuple."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if isinstance(fallbacks, str):
        raise ValueError(f"fallbacks must be a list of names from {sorted(FALLBACKS)}, got the string {fallbacks!r}")
    unknown = [f for f in fallbacks if f not in FALLBACKS]
    if unknown:
        raise ValueError(f"unknown fallback(s) {unknown}; valid: {sorted(FALLBACKS)}")
    return tuple(fallbacks)


def extract_answer(
    text: str, policy: str = "first", fallbacks: Sequence[str] = (), options: Mapping[str, str] | None = None
) -> str | None:
    """The model's final answer: the tagged answer, else the first fallback that finds one, else ``None``.

    Fallbacks run only when the completion has no complete ``<answer>`` block at all; several blocks under
    ``policy="reject"`` stay rejected.
    """
    spans = answer_spans(text)
    if spans:
        return _choose(text, spans, policy)
    for name in fallbacks:
        answer = FALLBACKS[name](text, options or {})
        if answer is not None:
            return answer
    return None


def think_block(text: str, opened_in_prompt: bool = False) -> str | None:
    """The content of the completion's first ``<think>...</think>`` block, or ``None`` if it has no complete one.

    With ``opened_in_prompt`` (the prompt ends with ``<think>``) the completion starts inside the block, so its
    content runs from the start to the first ``</think>``.
    """
    start = 0 if opened_in_prompt and not text.lstrip().startswith(THINK_OPEN) else text.find(THINK_OPEN)
    if start < 0:
        return None
    if text.startswith(THINK_OPEN, start):
        start += len(THINK_OPEN)
    end = text.find(THINK_CLOSE, start)
    return None if end < 0 else text[start:end]


def copied_from_prompt(reasoning: str, prompt: str) -> bool:
    """Whether a non-empty reasoning is a piece of the prompt, case and whitespace aside: the template's placeholder
    (``reasoning``, ``reasoning process here``) or a copied part of the question, written instead of reasoning."""
    text = " ".join(reasoning.casefold().split())
    return bool(text) and text in " ".join(prompt.casefold().split())
