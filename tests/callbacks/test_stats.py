"""Length and format statistics on hand-built completions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medzero_pl.callbacks.stats import CompletionStats, completion_stats, format_flags
from tests.callbacks.helpers import step_outputs

GOOD = "<think>The patient has X.</think><answer>B</answer>"
MIXED = "<think>reasoning</think><answer>B</answer>这是法布里病"
EMPTY_THINK = "<think>  </think><answer>C</answer>"
NO_ANSWER = "<think>I am not sure and keep thinking"


def test_format_flags_of_each_shape():
    assert format_flags(GOOD) == {"think": True, "empty_think": False, "answer": True, "after_answer": False}
    assert format_flags(MIXED)["after_answer"] is True
    assert format_flags(EMPTY_THINK) == {"think": True, "empty_think": True, "answer": True, "after_answer": False}
    assert format_flags(NO_ANSWER) == {"think": False, "empty_think": False, "answer": False, "after_answer": False}
    assert format_flags("<answer>B</answer>\n  ")["after_answer"] is False  # whitespace is not text


def test_a_prompt_ending_with_think_opens_the_block():
    assert format_flags("reasoning</think><answer>A</answer>", prompt="Q\n<think>")["think"] is True
    assert format_flags("reasoning</think><answer>A</answer>", prompt="Q")["think"] is False


def test_completion_stats_by_hand():
    outputs = step_outputs(
        [GOOD, MIXED, EMPTY_THINK, NO_ANSWER], lengths=[10, 20, 30, 100], truncated=[False, False, False, True]
    )
    stats = completion_stats(outputs)
    assert stats["completions/mean_length"] == 40
    assert stats["completions/min_length"] == 10 and stats["completions/max_length"] == 100
    assert stats["completions/median_length"] == 25
    assert stats["completions/p95_length"] == pytest.approx(30 + 0.85 * 70)  # numpy's linear interpolation
    assert stats["completions/mean_terminated_length"] == 20 and stats["completions/max_terminated_length"] == 30
    assert stats["completions/mean_truncated_length"] == 100
    assert stats["completions/clipped_ratio"] == 0.25
    assert stats["prompts/mean_length"] == 10
    assert stats["completions/think_ratio"] == 0.75
    assert stats["completions/empty_think_ratio"] == 0.25
    assert stats["completions/answer_ratio"] == 0.75
    assert stats["completions/after_answer_ratio"] == 0.25


def test_no_truncated_length_when_nothing_was_cut():
    stats = completion_stats(step_outputs([GOOD, GOOD]))
    assert "completions/mean_truncated_length" not in stats and stats["completions/clipped_ratio"] == 0


def test_warns_once_when_truncation_passes_the_threshold_and_again_after_it_clears():
    callback = CompletionStats(truncated_warning=0.5)
    cut = completion_stats(step_outputs([NO_ANSWER] * 3 + [GOOD], truncated=[True, True, True, False]))
    fine = completion_stats(step_outputs([GOOD] * 4))
    with pytest.warns(UserWarning, match="75% of completions hit the token budget"):
        assert len(callback.check(cut, 1)) == 1
    assert callback.check(cut, 2) == []
    assert callback.check(fine, 3) == []
    with pytest.warns(UserWarning):
        assert len(callback.check(cut, 4)) == 1


def test_warns_when_the_think_share_collapses_and_remembers_the_peak_across_resume():
    callback = CompletionStats(think_collapse=0.2)
    callback.check(completion_stats(step_outputs([GOOD] * 4)), 1)  # think share 1.0
    resumed = CompletionStats(think_collapse=0.2)
    resumed.load_state_dict(callback.state_dict())
    assert resumed.check(completion_stats(step_outputs([GOOD, "<answer>A</answer>"])), 2) == []  # 0.5 >= 0.2
    with pytest.warns(UserWarning, match="dropping its reasoning"):
        assert resumed.check(completion_stats(step_outputs(["<answer>A</answer>"] * 4)), 3)


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="thresholds"):
        CompletionStats(truncated_warning=1.5)


def test_a_warning_names_the_grpo_step_not_the_optimizer_step():
    module = SimpleNamespace(grpo_step=3, log=lambda *args, **kwargs: None)
    trainer = SimpleNamespace(global_step=6)  # grpo.num_iterations = 2: two optimizer steps per GRPO step
    outputs = step_outputs([NO_ANSWER] * 2, truncated=[True, True])
    with pytest.warns(UserWarning, match=r"^step 3: 100% of completions hit the token budget"):
        CompletionStats().on_train_batch_end(trainer, module, outputs, None, 0)


PLACEHOLDER_PROMPT = "Answer like this:\n<think>\nreasoning\n</think>\n<answer>B</answer>\nQ?\n<think>\n"
MCQ_COLUMNS = {"answer": ["A", "B", "C", "D"], "options": [{k: k.lower() for k in "ABCD"}] * 4, "task": ["mcq"] * 4}


def test_reasoning_and_answer_lengths_are_measured_apart():
    outputs = step_outputs(["<think>one two three</think><answer>B</answer>", "<answer>the letter C</answer>"])
    stats = completion_stats(outputs)
    assert stats["completions/mean_reasoning_length"] == 1.5  # (3 + 0) / 2 words
    assert stats["completions/mean_answer_length"] == 2  # (1 + 3) / 2
    assert completion_stats(outputs, count_tokens=len)["completions/mean_answer_length"] == 6.5  # (1 + 12) / 2


def test_a_reasoning_copied_from_the_prompt_is_counted():
    completions = ["reasoning\n</think>\n<answer>C</answer>", "The murmur suggests B.\n</think>\n<answer>B</answer>"]
    stats = completion_stats(step_outputs(completions, prompts=[PLACEHOLDER_PROMPT] * 2))
    assert stats["completions/copied_reasoning_ratio"] == 0.5
    callback = CompletionStats(copied_warning=0.4)
    with pytest.warns(UserWarning, match="piece of the prompt"):
        assert len(callback.check(stats, 1)) == 1


def test_the_share_of_the_most_frequent_answer_letter_is_set_against_the_gold_letters():
    constant = ["<think>x</think><answer>C</answer>"] * 4
    stats = completion_stats(step_outputs(constant, columns=MCQ_COLUMNS))
    assert stats["answers/top_letter_share"] == 1.0 and stats["answers/gold_top_letter_share"] == 0.25
    with pytest.warns(UserWarning, match="collapsing onto one letter"):
        assert CompletionStats().check(stats, 1)
    right = [f"<think>x</think><answer>{gold}</answer>" for gold in "ABCD"]
    assert completion_stats(step_outputs(right, columns=MCQ_COLUMNS))["answers/top_letter_share"] == 0.25
    # A policy that answers every question right is not collapsed, however skewed the gold letters are.
    skewed = MCQ_COLUMNS | {"answer": ["C", "C", "C", "D"]}
    right_on_skewed = [f"<think>x</think><answer>{gold}</answer>" for gold in "CCCD"]
    assert CompletionStats().check(completion_stats(step_outputs(right_on_skewed, columns=skewed)), 1) == []
    unanswered = completion_stats(step_outputs(["no tags"] * 4, columns=MCQ_COLUMNS))
    assert unanswered["answers/top_letter_share"] == 0.0
    assert "answers/top_letter_share" not in completion_stats(step_outputs(constant))  # no MCQ rows


def test_warns_when_the_reasoning_shrinks_below_a_fraction_of_its_start_and_remembers_the_start_across_resume():
    long = "<think>" + "word " * 20 + "</think><answer>A</answer>"
    callback = CompletionStats(reasoning_collapse=0.5)
    assert callback.check(completion_stats(step_outputs([long] * 2)), 1) == []  # the start: 20
    resumed = CompletionStats(reasoning_collapse=0.5)
    resumed.load_state_dict(callback.state_dict())
    half = "<think>" + "word " * 11 + "</think><answer>A</answer>"
    assert resumed.check(completion_stats(step_outputs([half] * 2)), 2) == []
    with pytest.warns(UserWarning, match="reasoning length fell to 1.0 tokens from 20.0"):
        assert resumed.check(completion_stats(step_outputs(["<think>reasoning</think><answer>A</answer>"])), 3)
    older = CompletionStats()
    older.load_state_dict({"best_think": 1.0})  # saved before the reasoning alert: the next step is the start
    assert older.check(completion_stats(step_outputs([half])), 4) == []
