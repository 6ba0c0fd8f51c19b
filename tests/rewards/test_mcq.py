"""MCQ accuracy: 1 for naming the gold option (letter or exact text), 0 otherwise, None on non-MCQ rows."""

import pytest

from medzero_pl.rewards.mcq import (
    clean_options,
    mcq_accuracy,
    mcq_accuracy_reward,
    open_medical_r1_accuracy,
    parse_choice,
)

THINK = "<think>\nThe attending asks the resident to hide a complication.\n</think>\n"


def answered(content: str) -> str:
    return f"{THINK}<answer>{content}</answer>"


@pytest.fixture(scope="module")
def ethics(medqa_rows):
    """MedQA test row 0: gold B, 'Tell the attending that he cannot fail to disclose this mistake'."""
    row = medqa_rows[0]
    assert row["answer_idx"] == "B" and row["options"]["B"] == row["answer"]
    return row


@pytest.mark.parametrize(
    "content",
    [
        "B",
        "(B)",
        "B.",
        "[B]",
        "**B**",
        "b",
        "B) Tell the attending that he cannot fail to disclose this mistake",
        "B. Tell the attending",
        "Option B",
        "Option: B",
        "Answer: B",
        "The answer is (B)",
        "B: Tell the attending that he cannot fail to disclose this mistake",
        "tell the attending that he CANNOT fail to   disclose this mistake.",
        "\\boxed{B}",
    ],
)
def test_forms_naming_the_gold_option_are_correct(ethics, content):
    assert mcq_accuracy(answered(content), ethics["answer_idx"], ethics["options"]) == 1.0


@pytest.mark.parametrize(
    "content",
    [
        "A",
        "A or B",
        "B or C",
        "A, B",
        "B/D",
        "A and B",
        "AB",
        "E",  # not an option
        "B) Disclose the error to the patient and put it in the operative report",  # letter B, text of A
        "I think B",
        "Tell the attending",  # a prefix of the option text is not the option text
        "",
    ],
)
def test_wrong_ambiguous_or_contradictory_answers_score_zero(ethics, content):
    assert mcq_accuracy(answered(content), ethics["answer_idx"], ethics["options"]) == 0.0


def test_a_full_width_letter_is_the_letter_as_option_texts_are_width_insensitive(ethics):
    gold, options = ethics["answer_idx"], ethics["options"]  # gold B
    for content in ("Ｂ", "（Ｂ）", "Ｂ．", "Ｏｐｔｉｏｎ Ｂ", "ｂ"):
        assert mcq_accuracy(answered(content), gold, options) == 1.0, content
    assert mcq_accuracy(answered("Ａ"), gold, options) == 0.0
    assert mcq_accuracy(answered("Ａ or Ｂ"), gold, options) == 0.0  # still several letters
    assert mcq_accuracy(THINK + "\nＢ", gold, options, fallbacks=["letter"]) == 1.0
    assert mcq_accuracy(answered("B"), "Ｂ", options) == 1.0  # a full-width gold letter too


def test_an_article_is_not_an_option_letter():
    options = {"A": "Fungal infection", "B": "Viral infection"}
    assert parse_choice("A fungal infection", options) == "A"  # the words are option A's text
    assert parse_choice("A viral infection", options) is None
    assert parse_choice("a) viral infection", options) is None  # marked letter A, but names option B


def test_malformed_completions_score_zero(ethics):
    gold, options = ethics["answer_idx"], ethics["options"]
    assert mcq_accuracy(THINK + "The answer is B.", gold, options) == 0.0  # no tags: no credit in training
    assert mcq_accuracy(THINK + "<answer>B", gold, options) == 0.0  # truncated
    assert mcq_accuracy("", gold, options) == 0.0


def test_evaluation_fallbacks_recover_untagged_answers(ethics):
    gold, options = ethics["answer_idx"], ethics["options"]
    assert mcq_accuracy(THINK + "The answer is B.", gold, options, fallbacks=["answer_is"]) == 1.0
    assert mcq_accuracy(THINK + "\n(B)", gold, options, fallbacks=["letter"]) == 1.0
    text = THINK + "So: tell the attending that he cannot fail to disclose this mistake."
    assert mcq_accuracy(text, gold, options, fallbacks=["option_text"]) == 1.0


def test_the_policy_chooses_among_several_answers(ethics):
    text = THINK + "<answer>A</answer> Wait, no. <answer>B</answer>"
    gold, options = ethics["answer_idx"], ethics["options"]
    assert mcq_accuracy(text, gold, options, policy="first") == 0.0
    assert mcq_accuracy(text, gold, options, policy="last") == 1.0
    assert mcq_accuracy(text, gold, options, policy="reject") == 0.0


def test_mixed_language_text_after_a_correct_answer_still_has_the_correct_answer(ethics):
    text = answered("B") + "\n答案是B。これは正しいです。"
    assert mcq_accuracy(text, ethics["answer_idx"], ethics["options"]) == 1.0


def test_medxpertqa_ten_option_rows(medxpertqa_rows):
    row = next(r for r in medxpertqa_rows if r["id"] == "Text-1002")
    gold, options = row["label"], row["options"]
    assert (gold, options[gold]) == ("J", "Ulnar nerve palsy")
    assert mcq_accuracy(answered("J"), gold, options) == 1.0
    assert mcq_accuracy(answered("(J) Ulnar nerve palsy"), gold, options) == 1.0
    assert mcq_accuracy(answered("ulnar nerve palsy"), gold, options) == 1.0
    assert mcq_accuracy(answered("Radial nerve palsy"), gold, options) == 0.0
    assert mcq_accuracy(answered("K"), gold, options) == 0.0


def test_accuracy_over_real_rows_counts_only_gold_letters(medqa_rows):
    scores = [mcq_accuracy(answered(r["answer_idx"]), r["answer_idx"], r["options"]) for r in medqa_rows]
    wrong = [next(k for k in r["options"] if k != r["answer_idx"]) for r in medqa_rows]
    assert set(scores) == {1.0}
    assert {
        mcq_accuracy(answered(w), r["answer_idx"], r["options"]) for w, r in zip(wrong, medqa_rows, strict=True)
    } == {0.0}


def test_rows_of_another_task_or_without_gold_are_not_applicable(ethics):
    text = answered("B")
    assert mcq_accuracy(text, None, {}, task="diagnosis") is None
    assert mcq_accuracy(text, "B", ethics["options"], task="diagnosis") is None
    assert mcq_accuracy(text, None, ethics["options"]) is None
    assert mcq_accuracy(text, "Z", ethics["options"]) is None  # gold not among the options


def test_options_from_a_datasets_struct_column_drop_missing_letters():
    # MedQA (A-D) and MedXpertQA (A-J) rows in one datasets column: absent options come back as None
    options = {"A": "x", "B": "y", "C": "z", "D": "w", "E": None, "J": None}
    assert clean_options(options) == {"A": "x", "B": "y", "C": "z", "D": "w"}
    assert mcq_accuracy(answered("D"), "D", options) == 1.0
    assert mcq_accuracy(answered("J"), "D", options) == 0.0


def test_the_batch_reward_follows_the_trl_convention(ethics):
    reward = mcq_accuracy_reward()
    completions = [
        [{"role": "assistant", "content": answered("B")}],
        [{"role": "assistant", "content": answered("C")}],
        [{"role": "assistant", "content": None}],
        answered("Fabry disease"),
    ]
    columns = {
        "task": ["mcq", "mcq", "mcq", "diagnosis"],
        "answer": ["B", "B", "B", None],
        "options": [ethics["options"]] * 3 + [{}],
        "diagnoses": [[], [], [], ["Fabry disease"]],
        "trainer_state": object(),  # unknown, non-column keys are ignored
    }
    assert reward(prompts=["p"] * 4, completions=completions, **columns) == [1.0, 0.0, 0.0, None]
    assert reward.__name__ == "mcq_accuracy"


def test_a_missing_gold_column_is_a_configuration_error():
    with pytest.raises(ValueError, match="mcq_accuracy.*answer"):
        mcq_accuracy_reward()(prompts=["p"], completions=["<answer>B</answer>"], options=[{"B": "x"}])


class TestOpenMedicalR1Accuracy:
    """Reproduces Qsingle/open-medical-r1 ``verify``: 2.0 exact letter, 1.0 answer starting with the gold text."""

    def test_exact_letter_or_parenthesised_letter_scores_two(self, ethics):
        for content in ("B", " (B) "):
            assert open_medical_r1_accuracy(answered(content), "B", ethics["options"]) == 2.0

    def test_an_answer_starting_with_the_gold_text_scores_one_even_when_it_hedges(self, ethics):
        gold_text = ethics["options"]["B"]
        assert open_medical_r1_accuracy(answered(gold_text.upper()), "B", ethics["options"]) == 1.0
        hedge = f"{gold_text}, or report the physician to the ethics committee"
        assert open_medical_r1_accuracy(answered(hedge), "B", ethics["options"]) == 1.0

    def test_other_letter_forms_score_zero(self, ethics):
        for content in ("B.", "b", "Option B", "B) Tell"):
            assert open_medical_r1_accuracy(answered(content), "B", ethics["options"]) == 0.0

    def test_the_span_is_greedy_from_the_first_open_to_the_last_close(self, ethics):
        text = THINK + "<answer>B</answer> hmm <answer>B</answer>"
        assert open_medical_r1_accuracy(text, "B", ethics["options"]) == 0.0  # content "B</answer> hmm <answer>B"
        assert open_medical_r1_accuracy(THINK + "no tags B", "B", ethics["options"]) == 0.0

    def test_it_is_not_applicable_to_diagnosis_rows(self):
        assert open_medical_r1_accuracy(answered("Fabry disease"), None, {}, task="diagnosis") is None
