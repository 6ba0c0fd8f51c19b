"""Each experiment states the hyperparameters of the seed it reproduces; this table is where they come from."""

from __future__ import annotations

import pytest

from medzero_pl.config import compose

TRL_EARLY_2025 = "TRL GRPOTrainer/GRPOConfig <= 0.15 and transformers TrainingArguments defaults"
VERL_EARLY_2025 = "verl ppo_trainer.yaml / dp_actor defaults, as used by the seed's run_medzero_*.sh"

MEDICAL_R1_ZERO = {
    # key: (value, source)
    "model.name_or_path": ("FreedomIntelligence/HuatuoGPT-o1-7B", "seed: HuatuoGPT-o1-7B"),
    "grpo.num_generations": (3, "seed: G=3"),
    "grpo.max_completion_length": (8192, "seed: completions up to 8192 tokens"),
    "optim.lr": (2e-5, "seed: lr 2e-5"),
    "optim.scheduler": ("cosine", "seed: cosine decay"),
    "trainer.devices": (4, "seed: 4 GPUs"),
    "grpo.temperature": (0.9, TRL_EARLY_2025),
    "grpo.beta": (0.04, TRL_EARLY_2025),
    "grpo.loss_type": ("grpo", TRL_EARLY_2025),
    "grpo.scale_rewards": ("group", TRL_EARLY_2025),
    "grpo.epsilon_low": (0.2, TRL_EARLY_2025),
    "grpo.epsilon_high": (0.2, TRL_EARLY_2025),
    "grpo.num_iterations": (1, TRL_EARLY_2025),
    "grpo.entropy_coef": (0.0, TRL_EARLY_2025),
    "optim.betas": ([0.9, 0.999], TRL_EARLY_2025),
    "optim.weight_decay": (0.0, TRL_EARLY_2025),
    "optim.warmup_steps": (0, TRL_EARLY_2025),
    "optim.min_lr_ratio": (0.0, TRL_EARLY_2025),
    "optim.grad_clip": (1.0, TRL_EARLY_2025),
}
DIAGNOSIS_ZERO = {
    "grpo.num_generations": (16, "run_medzero_*.sh: rollout.n=16"),
    "data.prompts_per_step": (8, "run_medzero_*.sh: data.train_batch_size=8"),
    "data.max_prompt_length": (1024, "run_medzero_*.sh: data.max_prompt_length=1024"),
    "grpo.max_completion_length": (1024, "run_medzero_*.sh: data.max_response_length=1024"),
    "optim.lr": (3e-7, "run_medzero_*.sh: actor.optim.lr=3e-7"),
    "grpo.beta": (0.001, "run_medzero_*.sh: kl_loss_coef=0.001 (low_var_kl = k3)"),
    "grpo.entropy_coef": (0.001, VERL_EARLY_2025),
    "grpo.kl_clamp": (10.0, "verl low_var_kl clamps k3 to [-10, 10]"),
    "grpo.epsilon_low": (0.2, VERL_EARLY_2025),
    "grpo.epsilon_high": (0.2, VERL_EARLY_2025),
    "grpo.temperature": (1.0, VERL_EARLY_2025),
    "grpo.top_p": (1.0, VERL_EARLY_2025),
    "grpo.top_k": (0, VERL_EARLY_2025),
    "grpo.num_iterations": (1, VERL_EARLY_2025),
    "grpo.loss_type": ("bnpo", VERL_EARLY_2025),
    "optim.scheduler": ("constant", VERL_EARLY_2025),
    "optim.warmup_steps": (0, VERL_EARLY_2025),
    "optim.betas": ([0.9, 0.999], VERL_EARLY_2025),
    "optim.weight_decay": (0.01, VERL_EARLY_2025),
    "optim.grad_clip": (1.0, VERL_EARLY_2025),
    "trainer.val_check_interval": (10, "run_medzero_*.sh: trainer.test_freq=10"),
    "trainer.checkpoint_every_n_steps": (50, "run_medzero_*.sh: trainer.save_freq=50"),
}
SEEDS = {
    **{name: MEDICAL_R1_ZERO for name in ("medqa_usmle", "xpert_usmle", "medxpert")},
    **{name: DIAGNOSIS_ZERO for name in ("rarearena_1.5b", "rarearena_3b", "rarearena_7b")},
}


def resolved(cfg, key: str):
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, list | tuple) else value


@pytest.mark.parametrize("experiment", sorted(SEEDS))
def test_experiment_states_the_seeds_hyperparameters(experiment):
    cfg = compose([f"experiment={experiment}"])
    wrong = {
        key: f"{resolved(cfg, key)!r}, seed {value!r} ({source})"
        for key, (value, source) in SEEDS[experiment].items()
        if resolved(cfg, key) != value
    }
    assert not wrong, wrong


@pytest.mark.parametrize("seed", ["medqa_usmle", "medxpert", "xpert_usmle", "rarearena_7b"])
def test_a_lora_variant_is_its_seed_with_adapters_a_10x_lr_and_its_stated_gpus(seed):
    from dataclasses import asdict

    full, lora = asdict(compose([f"experiment={seed}"])), asdict(compose([f"experiment={seed}_lora"]))
    assert lora["model"].pop("lora") == {**full["model"].pop("lora"), "r": 16, "alpha": 32.0}
    assert lora["optim"].pop("lr") == pytest.approx(10 * full["optim"].pop("lr"))
    assert lora["trainer"].pop("devices") == 4
    full["trainer"].pop("devices")
    assert lora["rollout"].pop("gpu_memory_utilization") == 0.5  # planned for A100-40s; the seed is set for A100-80s
    full["rollout"].pop("gpu_memory_utilization")
    for key in ("experiment", "run_dir"):
        full.pop(key), lora.pop(key)
    assert lora == full
