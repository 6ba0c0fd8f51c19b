"""`rollout.*` settings: the engine is chosen by config, and settings vLLM cannot honour fail before a run starts."""

from __future__ import annotations

import pytest

from medzero_pl.config import ConfigError, compose
from medzero_pl.module import GRPOModule
from medzero_pl.rollout import ENGINES, HFRolloutEngine, RolloutConfig
from tests.toy_task import toy_overrides


def test_the_schema_defaults_to_hf_the_demo_run_to_vllm_and_the_module_builds_hf(toy, tmp_path):
    assert RolloutConfig().engine == "hf"
    assert compose([]).rollout.engine == "vllm"  # conf/config.yaml: measured faster for the demo's GRPO step
    cfg = compose(toy_overrides(toy, tmp_path))
    assert cfg.rollout.engine == "hf"
    module = GRPOModule(cfg.model, cfg.grpo, cfg.optim, cfg.rewards, rollout=cfg.rollout)
    module.configure_model()
    assert isinstance(module.engine, HFRolloutEngine)
    assert module.hparams["rollout"]["engine"] == "hf"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"rollout.engine": "sglang"}, "rollout.engine='sglang'"),
        ({"grpo.off_policy_correction": "token_truncate"}, "grpo.off_policy_correction='token_truncate'"),
        ({"grpo.off_policy_cap": 0.5}, "grpo.off_policy_cap=0.5"),
        ({"grpo.off_policy_floor": 1.5}, "grpo.off_policy_floor=1.5: expected 0 <= floor <= 1"),
        ({"rollout.engine": "vllm", "rollout.max_model_len": 64}, "rollout.max_model_len=64 < data.max_prompt_length"),
        ({"rollout.engine": "vllm", "grpo.temperature": 2.5}, "temperatures up to 2"),
        ({"rollout.engine": "vllm", "rollout.gpu_memory_utilization": 1.5}, "rollout.gpu_memory_utilization=1.5"),
        ({"rollout.engine": "vllm", "rollout.block_size": 0}, "rollout.block_size=0"),
        ({"rollout.engine": "vllm", "rollout.tensor_parallel_size": 2}, "rollout.tensor_parallel_size=2: expected 1"),
    ],
)
def test_rollout_settings_that_cannot_work_are_rejected(toy, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        compose(toy_overrides(toy, tmp_path, **override))


@pytest.mark.parametrize("name", ["off_policy_correction", "off_policy_cap"])
def test_the_importance_sampling_keys_moved_to_grpo_and_the_old_key_names_the_new_one(toy, tmp_path, name):
    with pytest.raises(ConfigError, match=rf"'rollout\.{name}' is now 'grpo\.{name}'"):
        compose(toy_overrides(toy, tmp_path, **{f"rollout.{name}": "token"}))


def test_every_registered_engine_is_a_choice_of_the_config_and_unknown_ones_name_the_choices(toy, tmp_path):
    for name in ENGINES:
        assert compose(toy_overrides(toy, tmp_path, **{"rollout.engine": name})).rollout.engine == name
    with pytest.raises(ConfigError, match="rollout.engine='sglang': expected one of " + " \\| ".join(ENGINES)):
        compose(toy_overrides(toy, tmp_path, **{"rollout.engine": "sglang"}))


def test_the_hf_engine_accepts_weight_updates_and_sleep_as_no_ops(toy, tmp_path):
    cfg = compose(toy_overrides(toy, tmp_path))
    module = GRPOModule(cfg.model, cfg.grpo, cfg.optim, cfg.rewards)
    module.configure_model()
    before = {n: p.clone() for n, p in module.policy.named_parameters()}
    module.engine.sleep()
    module.engine.update_weights((n, p * 0) for n, p in module.policy.named_parameters())
    assert module.engine.has_weights
    assert all(p.equal(before[n]) for n, p in module.policy.named_parameters())


def test_a_missing_vllm_is_a_user_error_that_names_the_fix(monkeypatch):
    import importlib.util

    from medzero_pl.rollout import EngineUnavailable, build_engine

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "vllm" else real_find_spec(name))
    with pytest.raises(EngineUnavailable, match="rollout.engine=hf"):
        build_engine(compose([]).rollout, policy=None, tokenizer=None, model_path="unused")


def test_under_bf16_mixed_the_policy_is_float32_and_the_reference_and_vllm_engine_take_model_dtype(
    toy, tmp_path, monkeypatch
):
    import torch
    from lightning.pytorch import Trainer

    from medzero_pl.rollout import vllm

    engines = []
    monkeypatch.setattr(
        vllm.VLLMEngine, "__init__", lambda self, path, eos, settings, placement, dtype, seed: engines.append(dtype)
    )
    overrides = {"model.dtype": "bfloat16", "trainer.precision": "bf16-mixed", "grpo.beta": 0.04}
    cfg = compose(toy_overrides(toy, tmp_path, **overrides, **{"rollout.engine": "vllm"}))
    module = GRPOModule(cfg.model, cfg.grpo, cfg.optim, cfg.rewards, rollout=cfg.rollout)
    module.trainer = Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
    module.configure_model()
    assert {p.dtype for p in module.policy.parameters()} == {torch.float32}  # what AdamW steps
    assert {p.dtype for p in module.reference.parameters()} == {torch.bfloat16}
    assert engines == ["bfloat16"]
