"""mean@k, unbiased pass@k, maj@k and macro-F1 against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassF1Score

from medzero_pl.eval.metrics import macro_f1, maj_at_k, majority, mean_at_k, pass_at_k, top_share


def test_mean_at_k():
    assert mean_at_k([[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]]) == pytest.approx((0.5 + 1 + 0) / 3)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 0, 1, 0.0),
        (4, 1, 1, 0.25),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (4, 3, 2, 1.0),  # fewer wrong samples than k: always passes
        (10, 10, 5, 1.0),
    ],
)
def test_pass_at_k_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_1_is_the_share_correct():
    assert all(pass_at_k(8, c, 1) == pytest.approx(c / 8) for c in range(9))


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_ignores_unanswered_and_breaks_ties_by_first_seen():
    assert majority(["B", None, "A", "B", None, None]) == "B"
    assert majority(["A", "B", "B", "A"]) == "A"
    assert majority([None, None]) is None


def test_maj_at_k():
    answers = [["A", "A", "B"], ["C", "D", "D"], [None, None, "B"], [None, None, None]]
    assert maj_at_k(answers, ["A", "C", "B", "A"]) == 0.5


def test_macro_f1_by_hand_and_as_torchmetrics_computes_it():
    golds = ["A", "A", "B", "C", "C", "C"]
    preds = ["A", "B", "B", "C", None, "A"]
    # A: tp 1 fp 1 fn 1 -> 0.5; B: tp 1 fp 1 fn 0 -> 2/3; C: tp 1 fp 0 fn 2 -> 0.5
    assert macro_f1(preds, golds, ["A", "B", "C"]) == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    index = {"A": 0, "B": 1, "C": 2, None: 3}
    metric = MulticlassF1Score(4, average=None)
    metric.update(torch.tensor([index[p] for p in preds]), torch.tensor([index[g] for g in golds]))
    assert metric.compute()[:3].mean().item() == pytest.approx(macro_f1(preds, golds, ["A", "B", "C"]))


def test_top_share_counts_unanswered_items_in_the_denominator():
    assert top_share(["C", "C", "A", None]) == ("C", 0.5)
    assert top_share(["A", "B", "B", "A"]) == ("A", 0.5)  # a tie goes to the value seen first
    assert top_share([None, None]) == (None, 0.0)
    assert top_share([]) == (None, 0.0)
