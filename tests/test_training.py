"""End-to-end GRPO on a tiny random model: the gradient points the right way, and resume is exact."""

from __future__ import annotations

import csv

import pytest
import torch
from lightning.pytorch import Callback

from medzero_pl.config import compose
from medzero_pl.fit import build, main
from tests.toy_task import toy_overrides


class RecordRewards(Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        self.rewards: list[float] = []
        self.stop_after = stop_after

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.rewards.append(trainer.callback_metrics["reward"].item())
        if self.stop_after is not None and len(self.rewards) >= self.stop_after:
            trainer.should_stop = True  # an interruption after this step


def run(overrides: list[str], stop_after: int | None = None) -> tuple[RecordRewards, dict[str, torch.Tensor]]:
    cfg = compose(overrides)
    trainer, module, datamodule = build(cfg)
    recorder = RecordRewards(stop_after)
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume)
    return recorder, {k: v.clone() for k, v in module.policy.state_dict().items()}


def test_reward_rises_on_a_verifiable_toy_task(toy, tmp_path):
    recorder, _ = run(toy_overrides(toy, tmp_path, **{"trainer.max_steps": 30}))
    first, last = recorder.rewards[:5], recorder.rewards[-5:]
    assert sum(last) / 5 > sum(first) / 5 + 0.2, recorder.rewards


@pytest.mark.parametrize("mu", [1, 2])
def test_two_steps_plus_resume_plus_two_equals_four_straight(toy, tmp_path, mu):
    common = {"trainer.max_steps": 4, "trainer.checkpoint_every_n_steps": 1, "grpo.num_iterations": mu}
    straight, straight_weights = run(toy_overrides(toy, tmp_path / "straight", **common))
    first, _ = run(toy_overrides(toy, tmp_path / "resumed", **common), stop_after=2)
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()
    second, resumed_weights = run(toy_overrides(toy, tmp_path / "resumed", **common, resume="auto"))
    assert first.rewards + second.rewards == straight.rewards
    assert straight_weights.keys() == resumed_weights.keys()
    for name, tensor in straight_weights.items():
        assert torch.equal(tensor, resumed_weights[name]), name


def test_a_reward_returning_the_wrong_number_of_values_fails_before_training(toy, tmp_path):
    overrides = toy_overrides(toy, tmp_path, rewards="[{name: 'tests.toy_task:one_value_only'}]")
    with pytest.raises(ValueError, match="one_value_only"):
        run(overrides)
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_fit_writes_config_metrics_and_checkpoint(toy, tmp_path):
    assert main(toy_overrides(toy, tmp_path, **{"trainer.max_steps": 2})) == 0
    assert {"config.yaml", "cli_config.yaml", "checkpoints", "csv"} <= {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in (
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "clip_ratio/region_mean",
        "entropy",
        "tokens_per_second",
        "step_time",
        "timing/generate",
        "lr",
        "rewards/letter_share/mean",
    ):
        assert name in header, name


def test_a_resumed_run_keeps_the_metrics_of_the_steps_before(toy, tmp_path):
    assert main(toy_overrides(toy, tmp_path, **{"trainer.max_steps": 2})) == 0
    assert main(toy_overrides(toy, tmp_path, **{"trainer.max_steps": 3, "resume": "auto"})) == 0
    steps = [
        {row["step"] for row in csv.DictReader((tmp_path / "csv" / f"version_{v}" / "metrics.csv").open())}
        for v in (0, 1)
    ]
    assert steps == [{"0", "1"}, {"2"}]  # 2 steps, then the resumed step, in a file of its own


@pytest.mark.parametrize(
    "settings",
    [
        {"grpo.loss_type": "grpo"},
        {"grpo.loss_type": "bnpo"},
        {"grpo.loss_type": "dr_grpo", "grpo.scale_rewards": "none"},
        {"grpo.loss_type": "dapo", "grpo.scale_rewards": "batch"},
        {"grpo.beta": 0.04},
        {"grpo.mask_truncated_completions": "true", "grpo.entropy_coef": 0.01},
        {"model.dtype": "bfloat16"},
        {"grpo.micro_batch_size": 4, "grpo.num_iterations": 2, "optim.scheduler": "cosine", "optim.warmup_steps": 1},
    ],
    ids=lambda s: ",".join(f"{k.split('.')[-1]}={v}" for k, v in s.items()),
)
def test_every_objective_variant_trains_with_finite_metrics(toy, tmp_path, settings):
    cfg = compose(toy_overrides(toy, tmp_path, **{"trainer.max_steps": 2}, **settings))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.callback_metrics
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert ("kl" in metrics) == (cfg.grpo.beta > 0)
    assert (module.reference is not None) == (cfg.grpo.beta > 0)
    assert trainer.global_step == 2 * cfg.grpo.num_iterations


def test_the_diagnosis_recipe_trains_with_the_diagnosis_zero_prompt_and_reward(toy, tmp_path):
    overrides = [
        f"model.name_or_path={toy['model']}",
        "data=demo_diagnosis",
        "prompt=diagnosis_zero",
        "rewards=diagnosis",
        "rollout.engine=hf",  # the tiny model is below what vLLM's CPU attention supports
        "data.max_prompt_length=256",
        "grpo.max_completion_length=8",
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        "logging.wandb=disabled",
        f"run_dir={tmp_path}",
    ]
    cfg = compose(overrides)
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    assert datamodule.train_items[0]["task"] == "diagnosis" and datamodule.train_items[0]["diagnoses"]
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "rewards/diagnosis_match/mean" in header
    assert "val/rewards/diagnosis_match/mean" in trainer.callback_metrics  # the validation at the end of fit
