"""The ``"diagnosis_zero"`` mode: the DiagnosisZero seed's similarity rule, reproduced exactly."""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

_WORD = re.compile(r"\w+")


def diagnosis_zero_similarity(prediction: str, golds: Sequence[str]) -> float:
    """The similarity of the DiagnosisZero seed (wizardlancet/diagnosis_zero, ``verl/utils/reward_score/
    rarearena.py::calculate_similarity``, last version e9da98f): lower-case and strip both sides; 1.0 on an exact
    match; else the max over gold names of ``0.8 * SequenceMatcher(None, pred, gold).ratio() + 0.2 * Jaccard``
    over the ``\\w+`` word sets (0 if either set is empty). Its first version weighted 0.8 / 0.1 Jaccard / 0.1
    word-frequency; the commit "rare_arena reward" changed it to the rule above, which is the one reproduced."""
    prediction = prediction.lower().strip()
    labels = [g.lower().strip() for g in golds]
    if prediction in labels:
        return 1.0
    words = set(_WORD.findall(prediction))
    best = 0.0
    for label in labels:
        sequence_sim = SequenceMatcher(None, prediction, label).ratio()
        best = max(best, 0.8 * sequence_sim + 0.2 * _jaccard(words, label))
    return best


def _jaccard(words: set[str], label: str) -> float:
    label_words = set(_WORD.findall(label))
    return len(words & label_words) / len(words | label_words) if words and label_words else 0


def diagnosis_zero_score(candidate: str, golds: tuple[str, ...]) -> float:
    """The seed's ``compute_score`` for a present answer: 1.0 if similarity > 0.8, else 0.1 (its "format score";
    an empty ``<answer></answer>`` also gets 0.1, as in the seed; no answer at all gets 0, see
    :func:`~.reward.diagnosis_match`).

    Same result as thresholding :func:`diagnosis_zero_similarity`, but ``SequenceMatcher``'s cheap upper bounds
    (``real_quick_ratio``, ``quick_ratio``) skip the quadratic ``ratio()`` when they already prove the score cannot
    exceed 0.8, which keeps megabyte-long answers fast. Exact: ``0.8 * x + 0.2 * j`` is monotone in ``x`` in
    floating point, and each bound is computed as ``2.0 * count / total`` with a count >= the true match count.
    """
    prediction = candidate.lower().strip()
    labels = [g.lower().strip() for g in golds]
    if prediction in labels:
        return 1.0
    words = set(_WORD.findall(prediction))
    for label in labels:
        word_sim = _jaccard(words, label)
        matcher = SequenceMatcher(None, prediction, label)
        for bound in (matcher.real_quick_ratio, matcher.quick_ratio, matcher.ratio):
            if not 0.8 * bound() + 0.2 * word_sim > 0.8:
                break
        else:
            return 1.0
    return 0.1
