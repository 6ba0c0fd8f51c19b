"""Multiple-choice accuracy: 1 if the extracted answer names the gold option, else 0 (``None`` on other tasks).

Example (MedQA-USMLE, ``phrases_no_exclude_test.jsonl``; options A-D, gold ``answer_idx``)::

    {"question": "A 67-year-old man with transitional cell carcinoma of the bladder ... most likely due to which
     of the following actions?", "options": {"A": "Inhibition of proteasome", "B": "Hyperstabilization of
     microtubules", "C": "Generation of free radicals", "D": "Cross-linking of DNA"}, "answer_idx": "D"}

Official scoring of MedQA / MedMCQA / MedXpertQA is accuracy: the predicted option letter equals the gold one
(MedQA ``answer_idx``, MedXpertQA ``label``). Graded here as correct:
``D``, ``(D)``, ``D.``, ``D) Cross-linking of DNA``, ``Option D``, ``D: ...``, ``Answer: D``, the full-width ``Ｄ``
(letters and option texts are NFKC-normalised alike) and the exact option text ``cross-linking  of DNA`` (case and
whitespace ignored). An answer naming several letters (``A or D``,
``A, D``, ``A/D``, ``A and D``) is wrong even if one of them is right: otherwise hedging pays.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from medzero_pl.rewards.batch import BatchReward
from medzero_pl.rewards.extract import ANSWER_CLOSE, ANSWER_OPEN, check_extraction, extract_answer

MCQ = "mcq"
_MAX_ANSWER_CHARS = 2000  # no letter or option text is longer; bounds the work on pathological answers
_PREFIX = re.compile(
    r"(?:the\s+)?(?:correct\s+|final\s+|best\s+|right\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*",
    re.IGNORECASE,
)
_LETTER = re.compile(r"\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|([A-Za-z])(?![A-Za-z0-9'’\-])")
_SEVERAL = re.compile(r"\s*(?:,|/|&|\+|\band/or\b|\bor\b|\band\b)\s*[(\[]?\s*[A-Za-z](?![A-Za-z0-9])", re.IGNORECASE)
_WRAPPERS = " \t\r\n*_`\"'"
_SEPARATORS = ".:),-\u2013\u2014"


def _key(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of an option text, ignoring end punctuation."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split()).strip(" .;:!")


def clean_options(options: Any) -> dict[str, str]:
    """``{LETTER: text}`` from whatever the column holds; non-text entries are dropped.

    A Hugging Face ``datasets`` column of option dicts is a struct with the union of all keys, so MedQA rows (A-D)
    mixed with MedXpertQA rows (A-J) arrive with ``None`` for the options they do not have.
    """
    if not isinstance(options, Mapping):
        return {}
    return {k.strip().upper(): v for k, v in options.items() if isinstance(k, str) and isinstance(v, str) and v}


def gold_letter(answer: Any, options: Mapping[str, str]) -> str | None:
    """The gold letter, upper-cased, or ``None`` if the row has no usable gold answer."""
    if not isinstance(answer, str):
        return None
    letter = unicodedata.normalize("NFKC", answer).strip().upper()
    if len(letter) != 1 or not letter.isalpha():
        return None
    return letter if not options or letter in options else None


def parse_choice(answer: str, options: Mapping[str, str]) -> str | None:
    """The single option letter an answer names, or ``None`` (no letter, several letters, or contradictory).

    ``options`` maps upper-case letters to texts; if empty, any letter A-Z is accepted but no text can match.
    """
    s = unicodedata.normalize("NFKC", answer).strip(_WRAPPERS)  # full-width "Ｃ" / "（Ｃ）" are "C" / "(C)"
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1].strip(_WRAPPERS)
    if not s or len(s) > _MAX_ANSWER_CHARS:
        return None
    by_text = [letter for letter, text in options.items() if _key(text) == _key(s)]
    if len(by_text) == 1:
        return by_text[0]
    prefix = _PREFIX.match(s)
    rest = s[prefix.end() :] if prefix else s
    found = _LETTER.match(rest)
    if not found:
        return None
    raw = found.group(1) or found.group(2) or found.group(3)
    bracketed = found.group(3) is None
    rest = rest[found.end() :]
    letter = raw.upper()
    if (options and letter not in options) or (not options and not "A" <= letter <= "Z"):
        return None
    if _SEVERAL.match(rest):
        return None
    tail = rest.strip(_WRAPPERS)
    if not tail.strip(_SEPARATORS):
        return letter  # the whole answer is the letter, e.g. "B", "(b)", "B."
    separator = tail[:1]
    marked = bracketed or prefix is not None or separator in _SEPARATORS
    text = _key(tail.lstrip(_SEPARATORS + " "))
    if not marked:
        # "A fungal infection": an article, not option A, unless the words are option A's text
        return letter if raw.isupper() and text == _key(options.get(letter, "")) else None
    names_other = any(_key(t) == text for other, t in options.items() if other != letter)
    return None if names_other and text != _key(options.get(letter, "")) else letter


def _gold(answer: Any, options: Any, task: Any) -> tuple[dict[str, str], str | None]:
    """The row's cleaned options and gold letter; no gold letter when the row is not a gradable MCQ."""
    opts = clean_options(options)
    return opts, (gold_letter(answer, opts) if task is None or task == MCQ else None)


def mcq_accuracy(
    text: str,
    answer: Any,
    options: Any = None,
    task: Any = None,
    *,
    policy: str = "first",
    fallbacks: Sequence[str] = (),
) -> float | None:
    """1.0 if the completion's answer names the gold option, 0.0 if not, ``None`` if the row is not an MCQ."""
    opts, gold = _gold(answer, options, task)
    if gold is None:
        return None
    extracted = extract_answer(text, policy, fallbacks, opts)
    return float(extracted is not None and parse_choice(extracted, opts) == gold)


def open_medical_r1_accuracy(text: str, answer: Any, options: Any = None, task: Any = None) -> float | None:
    """The accuracy reward of open-medical-r1 (Qsingle/open-medical-r1 ``src/open_r1/rewards.py::verify``).

    Its rule: take the text between the first ``<answer>`` and the *last* ``</answer>`` (a greedy regex), strip it;
    2.0 if it equals the gold letter or ``(letter)`` exactly (case-sensitive); else 1.0 if it *starts with* the gold
    option's text (case-insensitive); else 0.0.

    Kept to reproduce that project, not as the default, because:

    * the scale is 2 for a letter and 1 for the option's text, so the relative weight of any format reward changes
      with the way the model phrases an answer, and ``B.`` or ``Option B`` earn 0 while ``(B)`` earns 2;
    * the prefix test pays hedges: ``"Cross-linking of DNA or generation of free radicals"`` gets 1.0;
    * the greedy span joins several answers into one (``<answer>A</answer> ... <answer>B</answer>``).

    Deviation: an empty gold option text earns no prefix credit (the original regex would match every answer). In
    the original, the ``option`` column held the gold option's text for MedQA rows but the whole options dict for
    MedXpertQA rows, so those rows could only ever score 2.0 or 0.0; here it is always ``options[answer]``.
    """
    opts, gold = _gold(answer, options, task)
    if gold is None:
        return None
    start = text.find(ANSWER_OPEN)
    end = text.rfind(ANSWER_CLOSE)
    if start < 0 or end < start + len(ANSWER_OPEN):
        return 0.0
    content = text[start + len(ANSWER_OPEN) : end].strip()
    if content in (gold, f"({gold})"):
        return 2.0
    option = opts.get(gold, "")
    return 1.0 if option and re.match(re.escape(option), content, re.IGNORECASE) else 0.0


def mcq_accuracy_reward(policy: str = "first", fallbacks: Sequence[str] = ()) -> BatchReward:
    """Registry factory for :func:`mcq_accuracy`.

    Args:
        policy: Several ``<answer>`` blocks: score the ``"first"``, the ``"last"``, or ``"reject"`` (0).
        fallbacks: Evaluation only: ``"answer_is"``, ``"boxed"``, ``"letter"``, ``"option_text"`` (see
            :mod:`medzero_pl.rewards.extract`). Leave empty for training.
    """
    fallbacks = check_extraction(policy, fallbacks)

    def item(text: str, answer: Any, options: Any = None, task: Any = None) -> float | None:
        return mcq_accuracy(text, answer, options, task, policy=policy, fallbacks=fallbacks)

    return BatchReward("mcq_accuracy", item, required=("answer",), optional=("options", "task"))


def open_medical_r1_accuracy_reward() -> BatchReward:
    """Registry factory for :func:`open_medical_r1_accuracy` (no options: it reproduces a fixed rule)."""
    return BatchReward(
        "open_medical_r1_accuracy", open_medical_r1_accuracy, required=("answer",), optional=("options", "task")
    )
