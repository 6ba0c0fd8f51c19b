"""Strict (the reward's grader) and lenient (HuatuoGPT-o1 protocol) scorers on known answers."""

from __future__ import annotations

import pytest

from medzero_pl.data.records import Example
from medzero_pl.eval.scorers import huatuo_choice, score

MCQ = Example(
    id="q1",
    source="medqa",
    question="Which drug?",
    options={"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
    answer="D",
)
CASE = Example(id="c1", source="rarearena", question="case", diagnoses=("Fabry disease",))


@pytest.mark.parametrize(
    ("text", "strict", "lenient"),
    [
        ("<think>UTI in pregnancy</think><answer>D</answer>", 1.0, 1.0),
        ("<think>...</think><answer>B</answer>", 0.0, 0.0),
        # HuatuoGPT-o1 style: no tags, "## Final Response" section
        ("## Thinking\n\nPregnant, UTI...\n\n## Final Response\n\nThe answer is D. Nitrofurantoin is safe.", 0.0, 1.0),
        ("Nitrofurantoin is the safest choice in pregnancy.", 0.0, 1.0),  # option text
        ("Reasoning about it...\n\n(D)", 0.0, 1.0),  # a lone letter on the last line
        ("After considering A and B, I pick D.", 0.0, 1.0),  # last lone letter
        ("<think>The answer is A, no wait</think>The answer is D", 0.0, 1.0),  # after </think>
        ("A patient like this needs treatment.", 0.0, 0.0),  # the article "A " is not an answer
    ],
)
def test_strict_and_lenient_on_known_answers(text, strict, lenient):
    assert score("strict", text, MCQ).correct == strict
    assert score("lenient", text, MCQ).correct == lenient


def test_answered_and_prediction_feed_format_rate_and_majority_vote():
    graded = score("strict", "<answer>(b)</answer>", MCQ)
    assert graded.answered and graded.prediction == "B" and graded.correct == 0.0
    missing = score("strict", "I think D", MCQ)
    assert not missing.answered and missing.prediction is None


def test_huatuo_choice_prefers_answer_is_over_other_letters():
    assert huatuo_choice("A and B are wrong; the answer is C", MCQ.options) == "C"
    assert huatuo_choice("nothing here", MCQ.options) is None


def test_diagnosis_top1_and_top5_with_the_offline_matcher():
    top1 = score("strict", "<answer>Fabry's disease</answer>", CASE)
    assert top1.correct == 1.0 and top1.extra["top5"] == 1.0 and top1.prediction == "fabry disease"
    listed = score("strict", "<answer>1. Gaucher disease\n2. Fabry disease</answer>", CASE)
    assert listed.correct == 0.0 and listed.extra["top5"] == 1.0
    untagged = "The most likely diagnosis is Fabry disease"
    assert score("strict", untagged, CASE).correct == 0.0 and score("lenient", untagged, CASE).correct == 1.0


def test_unknown_scorer():
    with pytest.raises(ValueError, match="unknown scorer"):
        score("fuzzy", "x", MCQ)
