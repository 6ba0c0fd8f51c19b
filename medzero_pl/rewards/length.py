"""Length shaping: cosine length reward, DAPO soft overlong penalty, n-gram repetition penalty.

Lengths are in characters by default and in tokens with ``unit="tokens"``, which reads the ``completion_ids``
column (TRL passes it to every reward function; a trainer that does not must pass it to use tokens). Characters
keep this package free of tokenizers and make a reward's value independent of the model's vocabulary; the price
is that ``max_length`` must be converted by hand from a token budget (English medical text with a Qwen/Llama
tokenizer runs at roughly 4 characters per token). The DAPO penalty is defined against the generation limit, so
``unit="tokens"`` is the faithful choice for it whenever ``completion_ids`` are available.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from medzero_pl.rewards.batch import BatchReward
from medzero_pl.rewards.grade import make_grader

UNITS = ("chars", "tokens")


def measure(text: str, completion_ids: Any, unit: str) -> int | None:
    """The completion length in ``unit``; ``None`` if tokens are asked for but the row has no usable ids."""
    if unit == "chars":
        return len(text)
    if isinstance(completion_ids, Sequence) and not isinstance(completion_ids, str | bytes):
        return len(completion_ids)
    return None


def cosine_length(
    length: int,
    correct: bool,
    max_length: int,
    correct_short: float = 1.0,
    correct_long: float = 0.5,
    wrong_short: float = -1.0,
    wrong_long: float = -0.5,
) -> float:
    """Cosine-interpolated reward between the value at length 0 ("short") and at ``max_length`` ("long").

    From "Demystifying Long Chain-of-Thought Reasoning in LLMs" (Yeo et al. 2025, eq. 1): a correct answer earns
    more when short (conciseness), a wrong answer is penalised *most* when short (a short wrong answer gave up
    thinking), so ``wrong_short <= wrong_long``. open-r1's script defaults (``cosine_min_value_wrong=0.0``,
    ``cosine_max_value_wrong=-0.5``) give a short wrong answer 0.0 and a long one -0.5, the inverse; the factory
    rejects such settings.
    """
    progress = min(max(length, 0) / max_length, 1.0)
    short, long = (correct_short, correct_long) if correct else (wrong_short, wrong_long)
    return long + 0.5 * (short - long) * (1.0 + math.cos(math.pi * progress))


def soft_overlong(length: int, max_length: int, cache: int) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 up to ``max_length - cache``, then linearly down
    to -1 at ``max_length``, and -1 beyond."""
    if length <= max_length - cache:
        return 0.0
    if length <= max_length:
        return (max_length - cache - length) / cache
    return -1.0


def repetition_penalty(text: str, ngram_size: int = 3, max_penalty: float = -1.0) -> float:
    """``max_penalty`` times the fraction of repeated word n-grams (lower-cased, whitespace-split), as open-r1's
    ``get_repetition_penalty_reward``: 0 for text without repeats or shorter than one n-gram."""
    words = text.lower().split()
    total = len(words) - ngram_size + 1
    if total <= 0:
        return 0.0
    distinct = len(set(zip(*(words[i:] for i in range(ngram_size)), strict=False)))
    return max_penalty * (1.0 - distinct / total) + 0.0  # + 0.0: no negative zero in logs


def _check_length(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_unit(unit: str) -> tuple[str, ...]:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    return ("completion_ids",) if unit == "tokens" else ()


def cosine_length_reward(
    max_length: int,
    unit: str = "chars",
    correct_short: float = 1.0,
    correct_long: float = 0.5,
    wrong_short: float = -1.0,
    wrong_long: float = -0.5,
    mcq_kwargs: Mapping[str, Any] | None = None,
    diagnosis_kwargs: Mapping[str, Any] | None = None,
) -> BatchReward:
    """Registry factory for :func:`cosine_length`; correctness comes from the row's own grader
    (:func:`medzero_pl.rewards.grade.make_grader` with ``mcq_kwargs`` / ``diagnosis_kwargs``; a grade of 1.0 is
    correct). ``None`` on rows neither grader applies to.

    Values must satisfy ``wrong_short <= wrong_long <= correct_long <= correct_short``: every correct answer beats
    every wrong one, and length helps a wrong answer, never a correct one.
    """
    _check_length("max_length", max_length, 1)
    required = _check_unit(unit)
    values = {"correct_short": correct_short, "correct_long": correct_long}
    values |= {"wrong_short": wrong_short, "wrong_long": wrong_long}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    for name, kwargs in (("mcq_kwargs", mcq_kwargs), ("diagnosis_kwargs", diagnosis_kwargs)):
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ValueError(f"{name} must be a mapping of that grader's kwargs, got {kwargs!r}")
    if not wrong_short <= wrong_long <= correct_long <= correct_short:
        raise ValueError(
            "need wrong_short <= wrong_long <= correct_long <= correct_short (short wrong answers are penalised "
            "most; open-r1's default cosine_min_value_wrong=0.0 / cosine_max_value_wrong=-0.5 inverts this), got "
            f"wrong_short={wrong_short}, wrong_long={wrong_long}, correct_long={correct_long}, "
            f"correct_short={correct_short}"
        )
    grade = make_grader(mcq_kwargs, diagnosis_kwargs)

    def item(
        text: str,
        completion_ids: Any = None,
        task: Any = None,
        answer: Any = None,
        options: Any = None,
        diagnoses: Any = None,
    ) -> float | None:
        score = grade(text, task, answer, options, diagnoses)
        length = measure(text, completion_ids, unit)
        if score is None or length is None:
            return None
        return cosine_length(length, score >= 1.0, max_length, correct_short, correct_long, wrong_short, wrong_long)

    return BatchReward("cosine_length", item, required, ("task", "answer", "options", "diagnoses"))


def soft_overlong_reward(max_length: int, cache: int | None = None, unit: str = "chars") -> BatchReward:
    """Registry factory for :func:`soft_overlong`. ``cache`` defaults to a fifth of ``max_length`` (DAPO used
    4,096 of 20,480 tokens)."""
    _check_length("max_length", max_length, 1)
    cache = max_length // 5 if cache is None else cache
    _check_length("cache", cache, 0)
    if cache > max_length:
        raise ValueError(f"cache ({cache}) cannot exceed max_length ({max_length})")
    required = _check_unit(unit)

    def item(text: str, completion_ids: Any = None) -> float | None:
        length = measure(text, completion_ids, unit)
        return None if length is None else soft_overlong(length, max_length, cache)

    return BatchReward("soft_overlong", item, required)


def repetition_penalty_reward(ngram_size: int = 3, max_penalty: float = -1.0) -> BatchReward:
    """Registry factory for :func:`repetition_penalty` (defaults as open-r1's ``repetition_n_grams`` and
    ``repetition_max_penalty``)."""
    _check_length("ngram_size", ngram_size, 1)
    if isinstance(max_penalty, bool) or not isinstance(max_penalty, int | float) or not max_penalty <= 0:
        raise ValueError(f"max_penalty must be <= 0 (it is a penalty), got {max_penalty!r}")

    def item(text: str) -> float:
        return repetition_penalty(text, ngram_size, max_penalty)

    return BatchReward("repetition_penalty", item)
