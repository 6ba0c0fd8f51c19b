"""Evaluation metrics as pure functions of per-sample results (no torch, no model).

For an item answered with ``n`` samples of which ``c`` are correct:

* mean@k: the mean correctness over the k samples (greedy decoding is k = 1 and gives plain accuracy);
* pass@k: the unbiased estimator of Chen et al. 2021 (Codex, eq. 1), ``1 - C(n - c, k) / C(n, k)``: the chance
  that at least one of k samples drawn without replacement from the n is correct;
* maj@k: the majority answer of the k samples (ties go to the answer seen first; unanswered samples do not vote)
  is correct.

PubMedQA's official metric besides accuracy is the macro-F1 over yes / no / maybe (``macro_f1``).

A policy that collapsed to one answer letter scores the share of that letter among the gold answers; ``top_share``
of the predicted letters, next to that of the gold letters, shows it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from math import comb


def mean_at_k(correct: Sequence[Sequence[float]]) -> float:
    """Mean over items of the mean over each item's samples."""
    if not correct:
        raise ValueError("mean@k of no items")
    return sum(sum(c) / len(c) for c in correct) / len(correct)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item with ``n`` samples, ``c`` correct: ``1 - C(n - c, k) / C(n, k)``."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority(answers: Sequence[Hashable | None]) -> Hashable | None:
    """The most frequent non-None answer; ties go to the one that appeared first; None if nothing was answered."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    best = max(votes.values())
    return next(a for a in answers if a is not None and votes[a] == best)


def maj_at_k(answers: Sequence[Sequence[Hashable | None]], golds: Sequence[Hashable]) -> float:
    """Share of items whose majority answer equals the gold answer."""
    if len(answers) != len(golds) or not golds:
        raise ValueError(f"maj@k needs one gold per item, got {len(answers)} items and {len(golds)} golds")
    return sum(majority(a) == g for a, g in zip(answers, golds, strict=True)) / len(golds)


def macro_f1(predictions: Sequence[Hashable | None], golds: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Unweighted mean over ``labels`` of each label's F1 (a label with no true or predicted item scores 0).

    A ``None`` prediction (no answer) is wrong for every label: it lowers the gold label's recall.
    """
    if len(predictions) != len(golds):
        raise ValueError("macro-F1 needs one prediction per gold label")
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predictions, golds, strict=True))
        fp = sum(p == label and g != label for p, g in zip(predictions, golds, strict=True))
        fn = sum(p != label and g == label for p, g in zip(predictions, golds, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


def top_share(values: Sequence[Hashable | None]) -> tuple[Hashable | None, float]:
    """The most frequent non-None value (ties: the one seen first) and its share of all values, None counted in the
    denominator (an unanswered question is a question): ``(None, 0.0)`` when nothing was answered."""
    top = majority(values)
    return top, (sum(v == top for v in values) / len(values) if top is not None else 0.0)
