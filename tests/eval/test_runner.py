"""The evaluation runner: aggregates on scripted completions, and a tiny model on 20 real questions per benchmark."""

from __future__ import annotations

import pytest
import torch

from medzero_pl.data.records import Example
from medzero_pl.eval.benchmarks import BENCHMARKS, Task, build_tasks, prompt_template
from medzero_pl.eval.config import EvalConfig
from medzero_pl.eval.runner import evaluate, flat_metrics
from medzero_pl.rollout.base import Rollouts
from tests.tiny import tiny_tokenizer


class ScriptedEngine:
    """Returns the given completion texts in order, k per prompt; records the sampling it was asked for."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)
        self.calls = []

    def generate(self, prompt_ids, n, sampling):
        self.calls.append((len(prompt_ids), n, sampling))
        texts = [self.texts.pop(0) for _ in range(len(prompt_ids) * n)]
        reasons = ["length" if t.endswith("...") else "stop" for t in texts]
        return Rollouts([[5] * (i + 1) for i in range(len(texts))], texts, reasons)


def mcq(i: int, answer: str) -> Example:
    return Example(id=f"q{i}", source="t", question=f"w{i}", options={"A": "w3", "B": "w4", "C": "w5"}, answer=answer)


def pubmed_task(items):
    template = prompt_template("r1_zero_base")
    return Task(BENCHMARKS["pubmedqa"], items, template, "r1_zero_base")


def test_sampled_evaluation_by_hand():
    items = [mcq(0, "A"), mcq(1, "B")]
    texts = [
        # item 0 (gold A): correct, correct, wrong, no tags (lenient finds "A")
        "<answer>A</answer>",
        "<answer>A</answer>",
        "<answer>B</answer>",
        "The answer is A...",
        # item 1 (gold B): one correct, three unanswered by strict
        "<answer>B</answer>",
        "no idea",
        "no idea",
        "no idea...",
    ]
    engine = ScriptedEngine(texts)
    settings = EvalConfig(samples=4, temperature=1.0, max_new_tokens=7, batch_size=2)
    result = evaluate(engine, tiny_tokenizer(), [pubmed_task(items)], settings)["pubmedqa"]
    assert engine.calls[0][:2] == (2, 4) and engine.calls[0][2].max_new_tokens == 7
    strict, lenient = result["scorers"]["strict"], result["scorers"]["lenient"]
    assert strict["accuracy"] == pytest.approx((2 / 4 + 1 / 4) / 2)  # mean@4
    assert strict["format_rate"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert strict["pass@4"] == 1.0  # both items have a correct sample
    assert strict["maj@4"] == 1.0  # item 0: A (2) vs B (1); item 1: B is the only vote
    assert lenient["accuracy"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert result["items"] == 2 and result["samples_per_item"] == 4
    assert result["mean_length"] == pytest.approx(sum(range(1, 9)) / 8)  # the engine's ids grow 1..8
    assert result["truncated_rate"] == pytest.approx(2 / 8)
    # PubMedQA macro-F1 over the majority votes: A->A, B->B; class C absent -> F1 0
    assert strict["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)
    flat = flat_metrics({"pubmedqa": result})
    assert flat["eval/pubmedqa/strict/pass@4"] == 1.0 and "eval/pubmedqa/mean_length" in flat
    # Answers A, A, B, - and B, -, -, -: A and B are given on 2 of 8 samples each; the golds are A x4 and B x4.
    assert strict["top_letter_share"] == pytest.approx(2 / 8) and lenient["top_letter_share"] == pytest.approx(3 / 8)
    assert flat["eval/pubmedqa/gold_top_letter_share"] == pytest.approx(4 / 8)
    assert result["copied_reasoning_rate"] == 0.0 and result["mean_reasoning_length"] == 0.0  # no <think> block


def test_placeholder_reasoning_and_one_letter_for_every_question_are_reported():
    items = [mcq(0, "A"), mcq(1, "B")]
    placeholder = "reasoning process here </think> <answer>C</answer>"  # r1_zero_base opens <think> in the prompt
    engine = ScriptedEngine([placeholder, "the options are w3 and w4 </think> <answer>C</answer>"])
    result = evaluate(engine, tiny_tokenizer(), [pubmed_task(items)], EvalConfig())["pubmedqa"]
    assert result["copied_reasoning_rate"] == 0.5 and result["mean_reasoning_length"] > 0
    assert result["scorers"]["strict"]["top_letter_share"] == 1.0 and result["gold_top_letter_share"] == 0.5


def test_settings_that_cannot_work_are_refused_before_anything_is_generated():
    engine, task = ScriptedEngine([]), pubmed_task([mcq(0, "A")])
    with pytest.raises(ValueError, match="greedy samples are identical"):
        evaluate(engine, tiny_tokenizer(), [task], EvalConfig(samples=4, temperature=0.0))
    with pytest.raises(ValueError, match="unknown scorer"):
        evaluate(engine, tiny_tokenizer(), [task], EvalConfig(scorers=["strict", "loose"]))
    assert engine.calls == []


def test_ranks_split_the_items():
    items = [mcq(i, "A") for i in range(5)]
    engine = ScriptedEngine(["<answer>A</answer>"] * 5)
    result = evaluate(engine, tiny_tokenizer(), [pubmed_task(items)], EvalConfig(), rank=1, world_size=2)
    assert [r["id"] for r in result["pubmedqa"]["records"]] == ["q1", "q3"]


def test_a_tiny_model_on_20_real_questions_of_every_benchmark(toy, shared_data, eval_paths):
    from medzero_pl.model.loading import load_causal_lm, load_tokenizer
    from medzero_pl.rollout.hf import HFRolloutEngine

    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(toy["model"]))
    engine = HFRolloutEngine(load_causal_lm(str(toy["model"])), tokenizer)
    tasks = build_tasks(list(BENCHMARKS), paths=eval_paths, data_root=shared_data, limit=20)
    settings = EvalConfig(max_new_tokens=4, max_prompt_length=128, batch_size=20)
    results = evaluate(engine, tokenizer, tasks, settings)
    expected = {name: 20 for name in BENCHMARKS} | {"gpqa_medical": 2, "rarearena": 16}
    assert {name: r["items"] for name, r in results.items()} == expected
    for result in results.values():
        assert set(result["scorers"]) == {"strict", "lenient"}
        assert 0 < result["mean_length"] <= 4
        for values in result["scorers"].values():
            assert 0 <= values["accuracy"] <= 1 and 0 <= values["format_rate"] <= 1
    assert "macro_f1" in results["pubmedqa"]["scorers"]["strict"]
    assert "top5" in results["rarearena"]["scorers"]["lenient"]


def test_well_formed_rate_follows_whether_the_template_opened_the_reasoning():
    items = [mcq(0, "A"), mcq(1, "B")]
    texts = ["x</think><answer>A</answer>", "<think>x</think><answer>B</answer>"]
    opened = evaluate(ScriptedEngine(texts), tiny_tokenizer(), [pubmed_task(items)], EvalConfig())["pubmedqa"]
    assert opened["well_formed_rate"] == 0.5  # r1_zero_base ends the prompt with <think>: a second one is malformed
    assert opened["scorers"]["strict"]["format_rate"] == 1.0  # both answers sit inside <answer> tags
    closed_template = Task(BENCHMARKS["pubmedqa"], items, prompt_template("open_medical_r1"), "open_medical_r1")
    closed = evaluate(ScriptedEngine(texts), tiny_tokenizer(), [closed_template], EvalConfig())["pubmedqa"]
    assert closed["well_formed_rate"] == 0.5  # now only the completion that opens <think> itself is well-formed
    assert flat_metrics({"pubmedqa": closed})["eval/pubmedqa/well_formed_rate"] == 0.5


def test_prompts_longer_than_the_limit_are_counted_and_warned_about(caplog):
    items = [mcq(0, "A"), mcq(1, "B")]
    engine = ScriptedEngine(["<answer>A</answer>", "<answer>B</answer>"])
    settings = EvalConfig(max_new_tokens=4, max_prompt_length=8)
    with caplog.at_level("WARNING", logger="medzero_pl.eval.runner"):
        result = evaluate(engine, tiny_tokenizer(), [pubmed_task(items)], settings)["pubmedqa"]
    assert result["prompts_cut"] == 2
    assert "2 of 2 prompts are longer than max_prompt_length=8" in caplog.text
