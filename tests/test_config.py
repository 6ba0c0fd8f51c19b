"""The config is composed from conf/, validated up front, and explains every mistake by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medzero_pl.config import CONF_DIR, ConfigError, compose
from medzero_pl.fit import main

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_default_config_is_the_embedded_demo():
    cfg = compose([])
    assert cfg.model.name_or_path == "smollm2-135m-instruct"
    assert cfg.data.sources and cfg.data.sources[0].path.startswith("medzero_pl:")
    assert cfg.rewards, "the default run needs rewards"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.run_dir == "runs/default"


def test_dotted_overrides_and_group_choices_apply():
    cfg = compose(["grpo.beta=0.04", "grpo.num_generations=8", "prompt=diagnosis_zero", "run_dir=/tmp/x"])
    assert cfg.grpo.beta == 0.04 and cfg.grpo.num_generations == 8
    assert cfg.run_dir == "/tmp/x"
    assert "diagnos" in (cfg.prompt.user + (cfg.prompt.system or "")).lower()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    cfg = compose([f"experiment={name}"])
    assert cfg.experiment == name
    assert cfg.run_dir == f"runs/{name}"


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_an_experiment_given_as_a_file_names_its_run_by_the_files_stem(where, tmp_path, monkeypatch):
    file = tmp_path / "elsewhere" / "my_ablation.yaml"
    file.parent.mkdir()
    file.write_text((CONF_DIR / "experiment" / "cpu_format.yaml").read_text())
    (tmp_path / "elsewhere" / "work").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere" / "work")
    choice = str(file) if where == "absolute" else "../my_ablation.yaml"
    assert compose([f"experiment={choice}"]).run_dir == "runs/my_ablation"


def test_rarearena_experiment_carries_the_seed_settings():
    cfg = compose(["experiment=rarearena_1.5b"])
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-1.5B-Instruct"
    assert (cfg.optim.lr, cfg.grpo.num_generations, cfg.data.prompts_per_step) == (3e-7, 16, 8)
    assert (cfg.grpo.beta, cfg.grpo.entropy_coef, cfg.grpo.max_completion_length) == (0.001, 0.001, 1024)


def test_medical_r1_zero_experiment_carries_the_seed_settings():
    cfg = compose(["experiment=medqa_usmle"])
    assert cfg.model.name_or_path == "FreedomIntelligence/HuatuoGPT-o1-7B"
    assert (cfg.optim.lr, cfg.optim.scheduler, cfg.grpo.num_generations) == (2e-5, "cosine", 3)
    assert cfg.grpo.max_completion_length == 8192 and cfg.trainer.devices == 4


def test_unknown_key_names_the_key_and_the_closest_valid_names():
    with pytest.raises(ConfigError) as err:
        compose(["grpo.num_generation=3"])
    message = str(err.value)
    assert "grpo.num_generation'" in message
    assert "grpo.num_generations" in message


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(ConfigError, match="unknown key 'sed'.*seed"):
        compose(["sed=3"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="grpo.num_generations"):
        compose(["grpo.num_generations=many"])


def test_unknown_group_choice_lists_what_exists():
    with pytest.raises(ConfigError, match=r"data=dataset9.*dataset1"):
        compose(["data=dataset9"])


def test_override_without_equals_sign_is_explained():
    with pytest.raises(ConfigError, match="expected key=value"):
        compose(["grpo.beta"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grpo.num_generations=1", "at least 2"),
        ("grpo.loss_type=ppo", "grpo.loss_type='ppo'"),
        ("grpo.scale_rewards=rank", "grpo.scale_rewards"),
        ("grpo.micro_batch_size=3", "does not divide the generation batch"),
        ("data.curriculum=random", "data.curriculum"),
    ],
)
def test_bad_settings_fail_at_start_up(override, message):
    with pytest.raises(ConfigError, match=message):
        compose([override])


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as err:
        compose(["grpo.num_generations=1", "grpo.epsilon_high=-1", "data.val_fraction=1.5"])
    assert "at least 2" in str(err.value) and "grpo.epsilon_high" in str(err.value) and "val_fraction" in str(err.value)
    with pytest.raises(ConfigError) as err:  # the schema's own refusals, every bad override at once
        compose(["grpo.loss_type=ppo", "grpo.num_generations=many", "grpo.num_generation=3"])
    assert "ppo" in str(err.value) and "many" in str(err.value) and "grpo.num_generation'" in str(err.value)


def test_a_choice_field_names_its_key_and_its_allowed_values_on_one_line():
    with pytest.raises(ConfigError) as err:
        compose(["grpo.loss_type=ppo"])
    assert str(err.value) == (
        "override 'grpo.loss_type=ppo': grpo.loss_type='ppo': expected one of grpo | bnpo | dr_grpo | dapo | luspo"
    )
    with pytest.raises(ConfigError, match=r"logging.wandb='maybe': expected one of auto \| online"):
        compose(["logging.wandb=maybe"])
    with pytest.raises(ConfigError, match=r"trainer.precision='bf15-mixed': expected one of .*bf16-mixed"):
        compose(["trainer.precision=bf15-mixed"])


def test_print_config_prints_the_resolved_yaml_and_exits(capsys):
    assert main(["print_config=true", "grpo.beta=0.5"]) == 0
    out = capsys.readouterr().out
    assert "beta: 0.5" in out and "name_or_path: smollm2-135m-instruct" in out


def test_help_lists_every_field_with_its_meaning(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "grpo.num_generations=4" in out and "a group" in out.lower()
    assert "One of: grpo | bnpo | dr_grpo | dapo | luspo." in out  # a choice field's values come from its registry


def test_bad_override_exits_with_a_message_not_a_traceback(capsys):
    assert main(["grpo.num_generation=3"]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()


def test_yaml_group_file_can_be_given_by_path(tmp_path: Path):
    custom = tmp_path / "mymodel.yaml"
    custom.write_text("name_or_path: /models/mine\ndtype: bfloat16\n")
    cfg = compose([f"model={custom}", "trainer.precision=bf16-mixed"])
    assert (cfg.model.name_or_path, cfg.model.dtype) == ("/models/mine", "bfloat16")


def test_unknown_key_inside_a_yaml_file_names_the_file(tmp_path: Path):
    custom = tmp_path / "bad.yaml"
    custom.write_text("name_or_path: x\nd_type: bfloat16\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*model.d_type.*model.dtype"):
        compose([f"model={custom}"])


def test_format_reward_must_agree_with_a_prompt_that_opens_the_think_block():
    with pytest.raises(ConfigError, match=r"strict_format.*think_opened_in_prompt=true"):
        compose(["prompt=r1_zero_base", "rewards=mcq"])
    cfg = compose(["prompt=r1_zero_base", "rewards=mcq", "rewards.1.kwargs.think_opened_in_prompt=true"])
    assert cfg.rewards[1].kwargs["think_opened_in_prompt"] is True


def test_unknown_key_inside_a_list_element_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"data.sources.0.fromat.*data.sources.0.format"):
        compose(["data.sources.0.fromat=medqa"])


def test_kl_clamp_is_off_by_default_on_in_the_verl_reproductions_and_positive_when_set():
    assert compose([]).grpo.kl_clamp is None  # TRL's k3
    for size in ("1.5b", "3b", "7b"):
        assert compose([f"experiment=rarearena_{size}"]).grpo.kl_clamp == 10.0  # verl's low_var_kl
    for bad in ("0", "-1.0"):
        with pytest.raises(ConfigError, match="grpo.kl_clamp"):
            compose([f"grpo.kl_clamp={bad}"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["grpo.policy_loss=gspo"], "grpo.policy_loss='gspo': expected one of vanilla | cispo | sapo | vespo | gpg"),
        (["grpo.loss_type=cispo"], "TRL's loss_type=cispo is grpo.policy_loss=cispo grpo.loss_type=dapo"),
        (["grpo.loss_type=sapo"], "TRL's loss_type=sapo is grpo.policy_loss=sapo grpo.loss_type=grpo"),
        (["grpo.policy_loss=cispo"], "grpo.policy_loss=cispo: epsilon_high=0.28 is cispo's cap"),
        (["grpo.policy_loss_kwargs={delta: 0.5}"], "grpo.policy_loss=vanilla: delta=0.5: expected > 1"),
        (["grpo.policy_loss_kwargs={sapo_temperature_pos: 2}"], "not settings of policy_loss 'vanilla'; valid: delta"),
        (["grpo.policy_loss=gpg", "grpo.importance_sampling_level=sequence"], "policy_loss=gpg has no sequence-level"),
        (["grpo.importance_sampling_level=batch"], "grpo.importance_sampling_level='batch'"),
        (["grpo.kl_loss_type=low_var_kl"], "verl's low_var_kl is k3 with grpo.kl_clamp=10"),
        (["grpo.kl_loss_type=k1", "grpo.kl_clamp=10"], "grpo.kl_clamp=10.0: expected null with grpo.kl_loss_type=k1"),
        (["grpo.top_entropy_quantile=1.5"], "grpo.top_entropy_quantile=1.5: expected 0 <= value <= 1"),
        (["grpo.multi_objective_aggregation=gdpo"], "grpo.multi_objective_aggregation='gdpo'"),
        (
            ["grpo.multi_objective_aggregation=normalize_then_sum", "grpo.scale_rewards=none"],
            "grpo.scale_rewards='none': expected group",
        ),
    ],
)
def test_objective_settings_that_cannot_work_are_rejected_by_name(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose(overrides)


def test_the_objective_settings_of_trl_and_verl_compose():
    cfg = compose(
        [
            "grpo.policy_loss=sapo",
            "grpo.loss_type=grpo",
            "grpo.importance_sampling_level=sequence",
            "grpo.policy_loss_kwargs={sapo_temperature_neg: 1.2}",
            "grpo.kl_loss_type=k2",
            "grpo.use_bias_correction_kl=true",
            "grpo.top_entropy_quantile=0.2",
            "grpo.multi_objective_aggregation=normalize_then_sum",
        ]
    )
    assert cfg.grpo.policy_loss_kwargs == {"sapo_temperature_neg": 1.2}
    assert compose(["grpo.policy_loss=cispo", "grpo.epsilon_high=5.0"]).grpo.policy_loss == "cispo"
    defaults = compose([]).grpo  # today's objective: TRL's clipped surrogate, k3, no corrections
    assert (defaults.policy_loss, defaults.importance_sampling_level, defaults.kl_loss_type) == (
        "vanilla",
        "token",
        "k3",
    )
    assert not defaults.use_bias_correction_kl and defaults.top_entropy_quantile == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.precision=bf16-true"],
            "trainer.precision=bf16-true with trainer.strategy=auto: .*trainer.precision=bf16-mixed",
        ),
        (["trainer.precision=16-true", "trainer.strategy=ddp"], "trainer.precision=16-true with trainer.strategy=ddp"),
        (
            ["model.dtype=bfloat16"],
            "model.dtype=bfloat16 with trainer.precision=32-true: .*trainer.precision=bf16-mixed",
        ),
        (["trainer.precision=bf16mixed"], "trainer.precision='bf16mixed': expected one of .*bf16-mixed"),
    ],
)
def test_weights_stepped_in_half_precision_without_a_float32_copy_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        compose(overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.dtype=bfloat16", "trainer.precision=bf16-mixed"],  # float32 policy, bf16 reference and engine
        ["model.dtype=bfloat16", "trainer.precision=bf16-true", "trainer.strategy=deepspeed_stage3"],
        ["model.dtype=bfloat16", "trainer.precision=bf16-mixed", "trainer.strategy=deepspeed_stage_3"],
        ["trainer.precision=64-true"],
    ],
)
def test_precisions_that_keep_float32_weights_for_the_optimizer_are_accepted(overrides):
    compose(overrides)


def test_dynamic_sampling_settings_compose_and_a_negative_cap_is_refused():
    cfg = compose(["grpo.dynamic_sampling.enable=true", "grpo.dynamic_sampling.max_extra_draws=2"])
    assert cfg.grpo.dynamic_sampling.enable and cfg.grpo.dynamic_sampling.max_extra_draws == 2
    assert not compose([]).grpo.dynamic_sampling.enable  # off by default
    with pytest.raises(ConfigError, match=r"grpo.dynamic_sampling.max_extra_draws=-1: expected >= 0"):
        compose(["grpo.dynamic_sampling.max_extra_draws=-1"])
