"""Scorers: turn one completion and its gold fields into (correct, answered, prediction).

Two scorers run side by side and every number is labelled with its scorer:

``strict``
    The training reward's own grader (:mod:`medzero_pl.rewards.mcq`, :mod:`medzero_pl.rewards.diagnosis` with
    their default settings): the answer must be inside ``<answer>...</answer>``. One grader for reward and eval.
``lenient``
    What a model that ignores the tags gets under the HuatuoGPT-o1 evaluation protocol (``evaluation/eval.py``
    ``match_choice``), and never less than ``strict``: the tagged answer first; else, on the final part of the
    text (after ``## Final Response``, else after the last ``</think>``), the reward's ``answer_is`` / ``boxed`` /
    ``letter`` / ``option_text`` fallbacks; else HuatuoGPT-o1's stages: the last "answer is X", the last lone
    option letter (an article "A " is not a letter), the option whose text occurs last. Departures from
    HuatuoGPT-o1: its final stage (the option most similar to the whole text, which always answers) is left out,
    so ``format_rate`` still means something, and the *last* match is scored, where HuatuoGPT-o1 reports the better
    of first-match and last-match accuracy over the whole benchmark (a choice made after seeing the gold answers).

For diagnosis cases both use :func:`~medzero_pl.rewards.diagnosis.diagnosis_match` (the offline fuzzy matcher)
on the top-1 name; ``extra["top5"]`` scores the best of the first five listed names (RareArena's top-5).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from medzero_pl.data.records import Example
from medzero_pl.rewards.diagnosis import diagnosis_match_reward, normalize_name, split_diagnoses
from medzero_pl.rewards.extract import THINK_CLOSE, extract_answer
from medzero_pl.rewards.mcq import clean_options, parse_choice

LENIENT_FALLBACKS = ("answer_is", "boxed", "letter", "option_text")


@dataclass(frozen=True)
class Score:
    """One completion's grade: ``correct`` in [0, 1]; ``answered`` if the scorer found an answer at all;
    ``prediction`` a hashable key for majority voting (an option letter or a normalised name)."""

    correct: float
    answered: bool
    prediction: str | None
    extra: dict[str, float] = field(default_factory=dict)


Scorer = Callable[[str, Example], Score]


def _mcq(text: str, example: Example, fallbacks: tuple[str, ...]) -> str | None:
    options = clean_options(example.options)
    extracted = extract_answer(text, "first", fallbacks, options)
    return parse_choice(extracted, options) if extracted is not None else None


def strict_mcq(text: str, example: Example) -> Score:
    letter = _mcq(text, example, ())
    return Score(float(letter == example.answer), letter is not None, letter)


_FINAL = ("## Final Response\n\n", THINK_CLOSE)
_ANSWER_IS_LETTER = re.compile(r"answer is\s*?\(?([A-Z])\b")
_LONE = r"(?:[\u4e00-\u9fff]|is |\*|\W|^)(?![aA] )([{letters}])(?=\W|[\u4e00-\u9fff]|$)"


def final_region(text: str) -> str:
    """The text after HuatuoGPT-o1's ``## Final Response`` heading, else after the last ``</think>``, else all."""
    for marker in _FINAL:
        if marker in text:
            return text.split(marker)[-1]
    return text


def huatuo_choice(text: str, options: Mapping[str, str]) -> str | None:
    """The option letter HuatuoGPT-o1's ``match_choice`` would read (last match), without its similarity fallback."""
    text = final_region(text)
    found = [m.group(1) for m in _ANSWER_IS_LETTER.finditer(text) if m.group(1) in options]
    if found:
        return found[-1]
    letters = "".join(options)
    if letters:
        found = re.findall(_LONE.format(letters=re.escape(letters)), text, re.S)
        if found:
            return found[-1]
    lowered = text.lower()
    positions = {k: lowered.rfind(v.lower()) for k, v in options.items() if v and v.lower() in lowered}
    return max(positions, key=positions.__getitem__) if positions else None


def lenient_mcq(text: str, example: Example) -> Score:
    options = clean_options(example.options)
    letter = (
        _mcq(text, example, ()) or _mcq(final_region(text), example, LENIENT_FALLBACKS) or huatuo_choice(text, options)
    )
    return Score(float(letter == example.answer), letter is not None, letter)


@lru_cache(maxsize=4)
def _diagnosis_grader(top_k: int, fallbacks: tuple[str, ...]) -> Callable[..., float | None]:
    return diagnosis_match_reward(top_k=top_k, fallbacks=fallbacks).item


def _diagnosis(text: str, example: Example, fallbacks: tuple[str, ...]) -> Score:
    answer = extract_answer(text, "first", fallbacks)
    names = split_diagnoses(answer) if answer else []
    top1 = _diagnosis_grader(1, fallbacks)(text, list(example.diagnoses)) or 0.0
    top5 = _diagnosis_grader(5, fallbacks)(text, list(example.diagnoses)) or 0.0
    prediction = normalize_name(names[0]) if names else None
    return Score(top1, bool(names), prediction or None, {"top5": top5})


def strict_diagnosis(text: str, example: Example) -> Score:
    return _diagnosis(text, example, ())


def lenient_diagnosis(text: str, example: Example) -> Score:
    return _diagnosis(text, example, ("answer_is", "boxed"))


SCORERS: dict[str, dict[str, Scorer]] = {
    "strict": {"mcq": strict_mcq, "diagnosis": strict_diagnosis},
    "lenient": {"mcq": lenient_mcq, "diagnosis": lenient_diagnosis},
}
"""Scorer name -> task -> function."""


def score(scorer: str, text: str, example: Example) -> Score:
    """Grade one completion with the named scorer for the example's task."""
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; known: {sorted(SCORERS)}")
    return SCORERS[scorer][example.task](text, example)


def gold_key(example: Example) -> Any:
    """The gold answer in the form ``Score.prediction`` takes (a letter, or the normalised first gold name)."""
    return example.answer if example.options else normalize_name(example.diagnoses[0])
