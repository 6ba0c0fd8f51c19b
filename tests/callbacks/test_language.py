"""Language-mixing statistics on hand-built completions (the seeds' English answer followed by CJK text)."""

from __future__ import annotations

import pytest

from medzero_pl.callbacks.language import LanguageMixing, language_mixing, mixed_regions
from medzero_pl.rewards.language import dominant_script, script_counts
from tests.callbacks.helpers import step_outputs

ENGLISH = "<think>Low alpha-galactosidase activity.</think><answer>Fabry disease</answer>"
CHINESE_AFTER = "<think>Low enzyme activity.</think><answer>Fabry disease</answer>这是法布里病"
JAPANESE_AFTER = "<think>Angiokeratoma and pain.</think><answer>B</answer>答えはBです。ファブリー病"
CHINESE_THINK = "<think>Let me think 这个病人 has pain.</think><answer>A</answer>"
ALL_CHINESE = "<think>患者有疼痛。</think><answer>法布里病</answer>"
GREEK = "<think>α-galactosidase is low</think><answer>C</answer>"


def test_script_counts_and_dominant_script():
    assert script_counts("Fabry 病") == {"latin": 5, "han": 1}
    assert script_counts("答えはB") == {"latin": 1, "han": 1, "hiragana": 2}
    assert script_counts("123 !") == {}
    assert dominant_script("Fabry disease 这是") == "latin"
    assert dominant_script("α β γ") is None  # Greek alone is allowed, not a script of its own here


def test_regions_of_each_shape():
    assert mixed_regions(ENGLISH) == dict.fromkeys(("completion", "think", "answer", "after_answer"), False)
    assert mixed_regions(CHINESE_AFTER) == {"completion": True, "think": False, "answer": False, "after_answer": True}
    assert mixed_regions(JAPANESE_AFTER)["after_answer"] is True
    assert mixed_regions(CHINESE_THINK) == {"completion": True, "think": True, "answer": False, "after_answer": False}
    assert not any(mixed_regions(ALL_CHINESE).values())  # consistently Chinese is not a switch
    assert not any(mixed_regions(GREEK).values())
    assert not any(
        mixed_regions("<think>患者はファブリー病です。</think><answer>ファブリー病</answer>").values()
    )  # kana+Han
    assert mixed_regions(ALL_CHINESE, expected="en")["answer"] is True  # unless English was expected


def test_missing_answer_has_no_answer_or_after_answer_region():
    flags = mixed_regions("<think>thinking 然后")
    assert flags["completion"] is True and not flags["think"] and not flags["answer"] and not flags["after_answer"]


def test_step_statistics_and_the_mixed_vs_unmixed_comparison():
    outputs = step_outputs(
        [ENGLISH, CHINESE_AFTER, JAPANESE_AFTER, CHINESE_THINK],
        rewards={"mcq_accuracy": [0.0, 1.0, 1.0, None], "strict_format": [1.0, 0.0, 0.0, 1.0]},
        reward=[1.0, 1.0, 1.0, 1.5],
    )
    stats = language_mixing(outputs)
    assert stats["language/mixed_ratio"] == 0.75
    assert stats["language/after_answer_mixed_ratio"] == 0.5
    assert stats["language/think_mixed_ratio"] == 0.25
    assert stats["language/answer_mixed_ratio"] == 0.0
    assert stats["language/reward_mixed"] == pytest.approx(3.5 / 3)
    assert stats["language/reward_unmixed"] == 1.0
    assert stats["language/accuracy_mixed"] == 1.0  # the None row is not graded
    assert stats["language/accuracy_unmixed"] == 0.0


def test_a_group_with_no_member_is_not_reported():
    stats = language_mixing(step_outputs([ENGLISH, ENGLISH]))
    assert stats["language/mixed_ratio"] == 0 and "language/reward_mixed" not in stats


def test_unknown_expected_script_fails_at_construction():
    with pytest.raises(ValueError, match="unknown script"):
        LanguageMixing(expected="klingon")
