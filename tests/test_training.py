"""End-to-end GRPO on a tiny random model: the gradient points the right way, and resume is exact."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import pytest
import torch
from lightning.pytorch import Callback

from medzero_pl.config import compose
from medzero_pl.fit import build, main
from medzero_pl.grpo import normalize_then_sum, reward_matrix
from medzero_pl.model.loading import load_causal_lm
from medzero_pl.rollout.base import Rollouts
from tests.fake_judge import FakeServer
from tests.strategies.grpo_run import ScriptedEngine
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
        {"model.dtype": "bfloat16", "trainer.precision": "bf16-mixed", "grpo.beta": 0.04},
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


class RecordOutputs(Callback):
    def __init__(self) -> None:
        self.outputs: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, *args) -> None:
        self.outputs.append(outputs)


def test_gdpo_advantages_come_from_each_rewards_own_scores(toy, tmp_path):
    rewards = "[{name: 'tests.toy_task:letter_share'}, {name: 'tests.toy_task:opens_with_letter', weight: 0.5}]"
    settings = {"trainer.max_steps": 1, "rewards": rewards, "grpo.multi_objective_aggregation": "normalize_then_sum"}
    trainer, module, datamodule = build(compose(toy_overrides(toy, tmp_path, **settings)))
    recorder = RecordOutputs()
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule)
    (out,) = recorder.outputs
    scores = reward_matrix(list(out["rewards"].values()), len(out["reward"]))
    expected = normalize_then_sum(scores, torch.tensor([1.0, 0.5]), out["num_generations"])
    torch.testing.assert_close(torch.tensor(out["advantages"]), expected.advantages)
    assert torch.tensor(out["advantages"]).abs().sum() > 0  # the batch had a signal, so the check is not vacuous


class SamplerSaysCertain:
    """Wraps an engine so that its rollouts carry sampler log-probs of 0 (probability 1) for every token."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def generate(self, prompt_ids, n, sampling):
        rollouts = self.engine.generate(prompt_ids, n, sampling)
        return replace(rollouts, logprobs=[[0.0] * len(c) for c in rollouts.completion_ids])

    def __getattr__(self, name):
        return getattr(self.engine, name)


@pytest.mark.parametrize(
    ("mode", "masked_frac"), [("token_mask", 1.0), ("sequence_mask", 1.0), ("token", 0.0), ("sequence", 0.0)]
)
def test_a_floor_drops_or_lifts_the_tokens_the_sampler_was_surer_of(toy, tmp_path, monkeypatch, mode, masked_frac):
    # The tiny model gives each token ~1/80, so exp(p - q) < the floor 0.5 everywhere: the masking modes drop every
    # token (the policy cannot move), the truncating ones weight every token by 0.5 (it trains).
    import medzero_pl.module

    build_engine = medzero_pl.module.build_engine
    monkeypatch.setattr(medzero_pl.module, "build_engine", lambda *a, **k: SamplerSaysCertain(build_engine(*a, **k)))
    settings = {"trainer.max_steps": 1, "grpo.off_policy_correction": mode, "grpo.off_policy_floor": 0.5}
    trainer, module, datamodule = build(compose(toy_overrides(toy, tmp_path, **settings)))
    module.configure_model()
    before = {k: v.clone() for k, v in module.policy.state_dict().items()}
    trainer.fit(module, datamodule=datamodule)
    assert trainer.callback_metrics["sampling/masked_frac"] == masked_frac
    moved = any(not torch.equal(v, before[k]) for k, v in module.policy.state_dict().items())
    assert moved == (masked_frac == 0)


class ScriptedRollouts(Callback):
    """Completions that depend only on (prompt, sample): runs that differ in precision train on the same rollouts."""

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.engine = ScriptedEngine(pl_module.tokenizer, pl_module.grpo.max_completion_length)


def _one_step_update(toy, run_dir, **settings) -> tuple[dict[str, torch.Tensor], object]:
    """The change one optimizer step at lr 1e-6 makes to every policy weight, and the trained module."""
    initial = load_causal_lm(str(toy["model"])).state_dict()
    cfg = compose(toy_overrides(toy, run_dir, **{"trainer.max_steps": 1, "optim.lr": 1e-6}, **settings))
    trainer, module, datamodule = build(cfg)
    trainer.callbacks.append(ScriptedRollouts())
    trainer.fit(module, datamodule=datamodule)
    return {k: v.float() - initial[k] for k, v in module.policy.state_dict().items()}, module


def test_bf16_mixed_keeps_float32_weights_so_an_update_below_bf16_spacing_lands_as_in_float32(toy, tmp_path):
    """At lr 1e-6 Adam moves each weight by about 1e-6; bf16 weights of ~0.02 are 1.2e-4 apart, so without a float32
    policy the update rounds away. The bf16 run computes in bf16 (autocast), so its update differs a little."""
    full, _ = _one_step_update(toy, tmp_path / "fp32")
    mixed, module = _one_step_update(
        toy, tmp_path / "mixed", **{"model.dtype": "bfloat16", "trainer.precision": "bf16-mixed"}
    )
    assert all(p.dtype == torch.float32 for p in module.policy.parameters())
    full_update = torch.cat([v.flatten() for v in full.values()])
    mixed_update = torch.cat([mixed[k].flatten() for k in full])
    assert full_update.abs().max() < 1e-5  # the update is far below bf16's spacing at these weights
    cosine = torch.nn.functional.cosine_similarity(mixed_update, full_update, dim=0)
    assert cosine > 0.98 and 0.95 < mixed_update.norm() / full_update.norm() < 1.05, (cosine, mixed_update.norm())


class RecordSampling(RecordRewards):
    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__(stop_after)
        self.draws: list[float] = []
        self.positions: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.draws.append(trainer.callback_metrics["dynamic_sampling/draws"].item())
        self.positions.append(pl_module.data_position)
        super().on_train_batch_end(trainer, pl_module, *args)


@pytest.mark.slow
def test_dynamic_sampling_draws_more_prompts_and_resumes_at_the_same_data_position(toy, tmp_path):
    # The sparse reward (does the completion open with the gold letter?) leaves most groups of the random model
    # without a spread, so steps draw extra batches; a resume must continue the stream after them.
    common = {
        "trainer.max_steps": 4,
        "trainer.checkpoint_every_n_steps": 1,
        "rewards": "[{name: 'tests.toy_task:letter_share'}, {name: 'tests.toy_task:opens_with_letter'}]",
        "grpo.dynamic_sampling.enable": "true",
        "grpo.dynamic_sampling.metric": "opens_with_letter",
        "grpo.dynamic_sampling.max_extra_draws": 2,
    }

    def run_recorded(run_dir, stop_after=None, **extra):
        cfg = compose(toy_overrides(toy, run_dir, **common, **extra))
        trainer, module, datamodule = build(cfg)
        recorder = RecordSampling(stop_after)
        trainer.callbacks.append(recorder)
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume)
        return recorder, {k: v.clone() for k, v in module.policy.state_dict().items()}

    straight, straight_weights = run_recorded(tmp_path / "straight")
    assert max(straight.draws) > 1  # some step drew extra batches
    assert straight.positions[-1] == sum(straight.draws) > 4  # the stream moved past one batch per step
    first, _ = run_recorded(tmp_path / "resumed", stop_after=2)
    second, resumed_weights = run_recorded(tmp_path / "resumed", resume="auto")
    assert first.positions + second.positions == straight.positions
    assert first.rewards + second.rewards == straight.rewards
    for name, tensor in straight_weights.items():
        assert torch.equal(tensor, resumed_weights[name]), name
    with next((tmp_path / "straight").rglob("metrics.csv")).open() as f:
        rows = list(csv.DictReader(f))
    logged = {key for row in rows for key, value in row.items() if value}
    assert {
        "dynamic_sampling/groups_drawn",
        "dynamic_sampling/groups_kept",
        "dynamic_sampling/all_correct",
        "dynamic_sampling/all_wrong",
    } <= logged


class ScriptedAnswers(Callback):
    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.engine = AnswersDiseases(pl_module.tokenizer)


class AnswersDiseases:
    """An engine whose completions answer, in the strict format, with one of a few disease names in turn."""

    owns_weights = False
    NAMES = ("Fabry disease", "Pompe disease", "Wilson disease", "Kawasaki disease")

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def generate(self, prompt_ids, n, sampling):
        texts = [
            f"<think>.</think><answer>{self.NAMES[j % len(self.NAMES)]}</answer>" for _ in prompt_ids for j in range(n)
        ]
        ids = [self.tokenizer(t, add_special_tokens=False).input_ids + [self.tokenizer.eos_token_id] for t in texts]
        return Rollouts(completion_ids=ids, texts=texts, finish_reasons=["stop"] * len(texts))

    def update_weights(self, named_tensors) -> None:
        """No weights: the completions are scripted."""

    def sleep(self) -> None:
        """Nothing to free."""


def test_grpo_steps_on_rdc_cases_with_the_judge_reward_and_its_fallback(toy, tmp_path, shared_data):
    def judge(body):  # 2 for the gold disease, else 0; garbage for every "Wilson disease"
        gold, listed = body["messages"][1]["content"].split("\n\nPredicted diagnoses:\n1. ")
        if listed.startswith("Wilson"):
            return "not a verdict"
        return "[2]" if listed.split()[0] in gold else "[0]"

    with FakeServer(default=judge) as server:
        judge_kwargs = f"{{base_url: '{server.url}', model: judge, cache_dir: '{tmp_path / 'judge'}', max_workers: 2}}"
        overrides = [
            f"model.name_or_path={toy['model']}",
            "data=demo_diagnosis",
            f"data.sources=[{{path: '{shared_data / 'rarearena' / 'RDC_synthetic.jsonl'}', format: rarearena}}]",
            f"rewards=[{{name: diagnosis_judge, kwargs: {judge_kwargs}}}, {{name: strict_format, weight: 0.2}}]",
            "rollout.engine=hf",
            "data.max_prompt_length=1024",
            "grpo.max_completion_length=64",
            "grpo.num_generations=4",
            "trainer.max_steps=3",
            "trainer.enable_progress_bar=false",
            "logging.wandb=disabled",
            f"run_dir={tmp_path / 'run'}",
        ]
        trainer, module, datamodule = build(compose(overrides))
        trainer.callbacks.append(ScriptedAnswers())  # the tiny random model writes no answer to judge
        trainer.fit(module, datamodule=datamodule)
    rows = list(csv.DictReader((tmp_path / "run" / "csv" / "version_0" / "metrics.csv").open()))
    steps = [r for r in rows if r.get("rewards/diagnosis_judge/fallback_rate")]
    assert len(steps) == 3 and server.requests
    rates = [float(r["rewards/diagnosis_judge/fallback_rate"]) for r in steps]
    assert rates == [0.25] * 3  # one answer in four is "Wilson disease", left unscored and matched instead
    assert all(float(r["rewards/strict_format/mean"]) == 1.0 for r in steps)
    means = [float(r["rewards/diagnosis_judge/mean"]) for r in steps]
    assert all(0 <= m <= 1 for m in means) and all(math.isfinite(float(r["loss"])) for r in steps), means
