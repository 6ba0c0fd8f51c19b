"""Length shaping: cosine length reward (short-and-wrong penalised most), DAPO soft overlong, repetition."""

import math

import pytest

from medzero_pl.rewards.length import (
    cosine_length,
    cosine_length_reward,
    repetition_penalty,
    soft_overlong,
    soft_overlong_reward,
)

OPTIONS = {"A": "Inhibition of proteasome", "B": "Hyperstabilization of microtubules", "D": "Cross-linking of DNA"}


def completion(answer: str, reasoning_chars: int) -> str:
    return "<think>" + "x" * reasoning_chars + "</think><answer>" + answer + "</answer>"


class TestCosine:
    def test_endpoints_and_midpoint(self):
        # value = long + 0.5 * (short - long) * (1 + cos(pi * L / max)), capped at L = max
        assert cosine_length(0, True, 1000) == 1.0  # correct_short
        assert cosine_length(1000, True, 1000) == 0.5  # correct_long
        assert cosine_length(5000, True, 1000) == 0.5
        assert cosine_length(500, True, 1000) == pytest.approx(0.75)  # cos(pi / 2) = 0
        assert cosine_length(0, False, 1000) == -1.0  # wrong_short: penalised most
        assert cosine_length(1000, False, 1000) == -0.5  # wrong_long
        # L = 250: 1 + cos(pi / 4) = 1.707107; correct 0.5 + 0.25 * 1.707107 = 0.926777
        assert cosine_length(250, True, 1000) == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 4)))

    def test_length_helps_wrong_answers_and_hurts_correct_ones(self):
        lengths = [0, 100, 400, 800, 1000]
        correct = [cosine_length(n, True, 1000) for n in lengths]
        wrong = [cosine_length(n, False, 1000) for n in lengths]
        assert correct == sorted(correct, reverse=True) and wrong == sorted(wrong)
        assert min(correct) > max(wrong)

    def test_the_reward_grades_the_row_with_its_own_grader(self):
        reward = cosine_length_reward(max_length=1000)
        rows = [  # (completion, task, answer, options, diagnoses)
            (completion("D", 0), "mcq", "D", OPTIONS, []),
            (completion("A", 0), "mcq", "D", OPTIONS, []),
            (completion("Fabry disease", 0), "diagnosis", None, {}, ["Fabry disease"]),
            (completion("x", 0), "diagnosis", None, {}, []),
        ]
        completions, task, answer, options, diagnoses = map(list, zip(*rows, strict=True))
        values = reward(None, completions, task=task, answer=answer, options=options, diagnoses=diagnoses)
        lengths = [len(c) for c in completions]
        assert values[0] == pytest.approx(cosine_length(lengths[0], True, 1000))
        assert values[1] == pytest.approx(cosine_length(lengths[1], False, 1000))
        assert values[2] == pytest.approx(cosine_length(lengths[2], True, 1000))
        assert values[3] is None  # a diagnosis row without gold names cannot be graded

    def test_token_lengths_come_from_completion_ids(self):
        reward = cosine_length_reward(max_length=100, unit="tokens")
        values = reward(
            prompts=None,
            completions=[completion("D", 5000)] * 2,
            completion_ids=[[7] * 50, None],
            task=["mcq", "mcq"],
            answer=["D", "D"],
            options=[OPTIONS, OPTIONS],
        )
        assert values == [pytest.approx(0.75), None]
        with pytest.raises(ValueError, match="completion_ids"):
            reward(prompts=None, completions=["x"], task=["mcq"], answer=["D"], options=[OPTIONS])

    def test_open_r1s_inverted_wrong_values_are_rejected(self):
        # open-r1 script defaults: cosine_min_value_wrong=0.0, cosine_max_value_wrong=-0.5, i.e. short wrong 0.0
        with pytest.raises(ValueError, match="penalised most"):
            cosine_length_reward(max_length=1000, wrong_short=0.0, wrong_long=-0.5)
        with pytest.raises(ValueError, match="correct_short"):
            cosine_length_reward(max_length=1000, correct_short=0.5, correct_long=1.0)
        with pytest.raises(ValueError, match="max_length"):
            cosine_length_reward(max_length=0)


class TestSoftOverlong:
    @pytest.mark.parametrize(
        ("length", "expected"),
        [(0, 0.0), (80, 0.0), (85, -0.25), (90, -0.5), (100, -1.0), (101, -1.0)],  # max 100, cache 20
    )
    def test_dapo_penalty(self, length, expected):
        assert soft_overlong(length, 100, 20) == pytest.approx(expected)

    def test_characters_by_default_and_a_fifth_of_the_budget_as_cache(self):
        reward = soft_overlong_reward(max_length=100)  # cache 20
        assert reward(prompts=None, completions=["x" * 90, "x" * 10]) == [pytest.approx(-0.5), 0.0]

    def test_a_zero_cache_is_a_hard_limit(self):
        assert soft_overlong(100, 100, 0) == 0.0 and soft_overlong(101, 100, 0) == -1.0

    def test_bad_settings_are_rejected(self):
        with pytest.raises(ValueError, match="cache"):
            soft_overlong_reward(max_length=100, cache=200)
        with pytest.raises(ValueError, match="unit"):
            soft_overlong_reward(max_length=100, unit="words")


class TestRepetition:
    def test_no_repeats_no_penalty(self):
        assert repetition_penalty("the patient has a fever and a rash") == 0.0
        assert repetition_penalty("too short") == 0.0

    def test_penalty_is_the_fraction_of_repeated_ngrams(self):
        # 12 words, 10 trigrams, of which "a b c", "b c a", "c a b" are distinct: 1 - 3 / 10 = 0.7
        assert repetition_penalty("a b c " * 4) == pytest.approx(-0.7)
        assert repetition_penalty("a b c " * 4, max_penalty=-0.5) == pytest.approx(-0.35)
