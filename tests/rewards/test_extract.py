"""The answer is the content of the completion's own <answer> block; fallbacks exist for evaluation only."""

import pytest

from medzero_pl.rewards.extract import (
    answer_spans,
    check_extraction,
    copied_from_prompt,
    extract_answer,
    tagged_answer,
    text_after_answer,
)

THINK = "<think>\nThe patient has angiokeratomas and whorled corneal opacities.\n</think>\n"


def test_the_answer_is_the_stripped_content_of_the_answer_block():
    assert extract_answer(THINK + "<answer>  Fabry disease \n</answer>") == "Fabry disease"


def test_an_empty_answer_block_is_an_empty_answer_not_a_missing_one():
    assert extract_answer(THINK + "<answer></answer>") == ""
    assert extract_answer(THINK + "The diagnosis is Fabry disease.") is None


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("first", "A"), ("last", "C"), ("reject", None)],
)
def test_the_policy_decides_which_of_several_answers_counts(policy, expected):
    text = THINK + "<answer>A</answer> On reflection <answer>B</answer> final: <answer>C</answer>"
    assert extract_answer(text, policy) == expected


def test_a_single_answer_is_taken_under_every_policy():
    for policy in ("first", "last", "reject"):
        assert tagged_answer("<answer>B</answer>", policy) == "B"


def test_pairing_follows_the_non_greedy_regex_used_by_trl_and_verl():
    # an <answer> opens, the next </answer> closes, whatever lies between is the content
    assert extract_answer("<answer>A<answer>B</answer>") == "A<answer>B"
    assert extract_answer("</answer><answer>B</answer></answer>") == "B"
    assert answer_spans("<answer>B") == []  # unclosed (truncated) answers do not count


def test_fallbacks_are_off_by_default_and_only_used_without_tags():
    text = THINK + "The answer is (B)."
    assert extract_answer(text) is None
    assert extract_answer(text, fallbacks=["answer_is"]) == "(B)."
    assert extract_answer(THINK + "<answer>C</answer> The answer is B", fallbacks=["answer_is"]) == "C"
    several = "<answer>C</answer><answer>D</answer> The answer is B"
    assert extract_answer(several, "reject", fallbacks=["answer_is"]) is None


@pytest.mark.parametrize(
    ("fallback", "text", "expected"),
    [
        ("answer_is", "Reasoning... Final answer: D", "D"),
        ("answer_is", "So the most likely diagnosis is Wilson disease", "Wilson disease"),
        ("boxed", "Thus \\boxed{\\text{C}} is right", "\\text{C}"),
        ("letter", "</think>\n\n(B)\n", "(B)"),
        ("letter", "I pick option B because of the rash", None),
        ("option_text", "It must be generation of free radicals.", "Generation of free radicals"),
    ],
)
def test_each_fallback_reads_its_pattern(fallback, text, expected):
    options = {"A": "Inhibition of proteasome", "C": "Generation of free radicals", "D": "Cross-linking of DNA"}
    assert extract_answer(text, fallbacks=[fallback], options=options) == expected


def test_fallbacks_are_tried_in_the_given_order():
    text = "\\boxed{A}\nThe answer is B"
    assert extract_answer(text, fallbacks=["boxed", "answer_is"]) == "A"
    assert extract_answer(text, fallbacks=["answer_is", "boxed"]) == "B"


def test_text_after_answer_is_what_follows_the_last_closing_tag():
    assert text_after_answer("<answer>Fabry disease</answer>这是法布里病。") == "这是法布里病。"
    assert text_after_answer("<answer>A</answer> x <answer>B</answer>\n") == "\n"
    assert text_after_answer("no tags") == ""


def test_bad_policies_and_fallbacks_are_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match="first"):
        check_extraction("middle", [])
    with pytest.raises(ValueError, match="answer_is"):
        check_extraction("first", ["latex"])
    with pytest.raises(ValueError, match="list"):
        check_extraction("first", "boxed")


def test_a_reasoning_that_is_a_piece_of_the_prompt_is_copied():
    prompt = "Answer like this:\n<think>\nreasoning\n</think>\n<answer>B</answer>\nWhich drug?"
    assert copied_from_prompt("reasoning\n", prompt)
    assert copied_from_prompt("  REASONING ", prompt)  # case and whitespace aside
    assert copied_from_prompt("Which   drug?", prompt)  # a copied part of the question
    assert not copied_from_prompt("The drug inhibits the proteasome.", prompt)
    assert not copied_from_prompt("  \n", prompt)  # an empty reasoning is counted apart (empty_think)
