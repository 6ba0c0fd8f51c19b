"""Format rewards: exactly <think>...</think><answer>...</answer>, strictly or graded 0.25 per well-placed tag."""

import pytest

from medzero_pl.rewards.format import (
    format_steps,
    format_steps_reward,
    strict_format,
    strict_format_reward,
    tag_count_format,
)

GOOD = "<think>\nAcid maltase deficiency fits.\n</think>\n<answer>Pompe disease</answer>"


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "  \n" + GOOD + "\n\n",  # leading and trailing whitespace
        "<think>x</think><answer>B</answer>",  # no whitespace needed
        "<think></think> <answer>B</answer>",  # an empty reasoning block is still the format
    ],
)
def test_well_formed_completions_score_one(text):
    assert strict_format(text) == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "<answer>B</answer>",  # no reasoning block
        "<think>x</think>",  # no answer
        "<think>x</think><answer></answer>",  # empty answer
        "<think>x</think><answer>  </answer>",
        "<think>x</think> so <answer>B</answer>",  # text between the blocks
        GOOD + " The answer is B.",  # text after the answer
        GOOD + "\n答案是庞贝病。",  # the seed's language-mixing symptom
        "Sure! " + GOOD,  # text before the reasoning
        "<answer>B</answer><think>x</think>",  # wrong order
        "<think>x</think><answer>A</answer><answer>B</answer>",  # two answers
        "<think><think>x</think></think><answer>B</answer>",  # nested tags
        "<think>x<answer>B</think></answer>",  # interleaved
        "<think>x</think><answer>B",  # truncated
        "",
    ],
)
def test_malformed_completions_score_zero(text):
    assert strict_format(text) == 0.0


def test_with_think_opened_in_the_prompt_the_completion_must_not_open_it_again():
    # the r1_zero_base template ends the prompt with "<think>": the completion starts inside the reasoning
    assert strict_format("The findings suggest...</think> <answer>B</answer>", think_opened_in_prompt=True) == 1.0
    assert strict_format(GOOD, think_opened_in_prompt=True) == 0.0
    assert strict_format("The findings suggest...</think> <answer>B</answer>") == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, 1.0),
        (GOOD + " trailing words", 0.75),  # </answer> not last
        ("<think>x</think> B", 0.5),  # <think> and </think> only
        ("Sure. <think>x</think><answer>B</answer>", 0.75),  # <think> not at the start
        ("<answer>B</answer>", 0.5),  # no reasoning tags: <answer> and </answer> count ("after" unchecked)
        ("<answer>B</answer><think>x</think>", 0.25),  # only </think> (after <think>) is in place
        ("<think>x</think><answer>A</answer><answer>B</answer>", 0.5),
        ("no tags at all", 0.0),
    ],
)
def test_tag_count_gives_a_quarter_per_well_placed_tag(text, expected):
    assert tag_count_format(text) == expected


def test_tag_count_with_think_opened_in_the_prompt_credits_the_absent_open_tag():
    assert tag_count_format("reasoning</think><answer>B</answer>", think_opened_in_prompt=True) == 1.0
    assert tag_count_format(GOOD, think_opened_in_prompt=True) == 0.75


def test_the_factory_rejects_non_boolean_flags():
    with pytest.raises(ValueError, match="think_opened_in_prompt"):
        strict_format_reward(think_opened_in_prompt="yes")


OPTIONS = {"A": "Aspirin", "B": "Heparin"}


@pytest.mark.parametrize(
    ("text", "think_opened", "expected"),
    [
        ("x</think><answer>B</answer>", True, 1.0),
        ("<think>x</think>\n<answer>Heparin</answer>\n", False, 1.0),  # option text, whitespace after
        ("x</think><answer>C</answer>", True, 0.75),  # C is not an option: no credit for the answer
        ("x<answer>B</answer>", True, 0.5),  # reasoning never closed: a lone answer block still earns
        ("x</think>", True, 0.25),  # only the reasoning closed
        ("x</think><answer>B</answer> Antwort B", True, 0.75),  # text after the answer
        ("<answer>B</answer>x</think>", True, 0.5),  # answer before the reasoning ends
        ("x</think><answer>A</answer><answer>B</answer>", True, 0.25),  # two answer blocks
        ("<think>x</think><answer>B</answer>", True, 0.75),  # reasoning opened again after the prompt did
        ("The answer is B", True, 0.0),
    ],
)
def test_format_steps_credits_each_part_on_its_own(text, think_opened, expected):
    assert format_steps(text, OPTIONS, think_opened_in_prompt=think_opened) == expected


def test_format_steps_is_one_exactly_for_strict_format_with_a_valid_answer():
    for text in ["x</think><answer>B</answer>", "x</think><answer>B</answer>!", "x</think><answer>Z</answer>"]:
        full = format_steps(text, OPTIONS, think_opened_in_prompt=True) == 1.0
        assert full == (strict_format(text, think_opened_in_prompt=True) == 1.0 and "Z" not in text)


def test_format_steps_without_options_accepts_any_non_blank_answer():
    reward = format_steps_reward(think_opened_in_prompt=True)
    assert reward(None, ["x</think><answer>Gaucher disease</answer>", "x</think><answer> </answer>"]) == [1.0, 0.75]
