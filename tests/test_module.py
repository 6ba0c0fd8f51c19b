"""Small pure helpers of the GRPO module, and its step counter."""

from __future__ import annotations

import pytest

from medzero_pl.errors import ConfigError
from medzero_pl.grpo.config import DynamicSamplingConfig, GRPOConfig
from medzero_pl.model.loading import ModelConfig
from medzero_pl.module import RNG_KEY, GRPOModule
from medzero_pl.rewards import RewardSpec
from medzero_pl.rollout.base import repeat_each


def test_repeat_each_lays_out_a_generation_batch_prompt_major():
    assert repeat_each(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]


def test_the_grpo_step_is_saved_in_checkpoints_and_read_from_older_ones_too(toy):
    module = GRPOModule(ModelConfig(name_or_path=str(toy["model"])))
    module.grpo_step = 7
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = GRPOModule(ModelConfig(name_or_path=str(toy["model"])))
    restored.on_load_checkpoint(checkpoint)
    assert restored.grpo_step == 7
    older = {key: value for key, value in checkpoint[RNG_KEY].items() if key != "grpo_step"} | {"batches_trained": 5}
    restored.on_load_checkpoint({RNG_KEY: older})  # saved before the counter was called grpo_step
    assert restored.grpo_step == 5


def test_the_data_position_is_saved_and_an_older_checkpoint_resumes_it_at_the_grpo_step(toy):
    module = GRPOModule(ModelConfig(name_or_path=str(toy["model"])))
    module.grpo_step, module.data_position = 3, 8  # dynamic sampling drew 5 extra batches
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = GRPOModule(ModelConfig(name_or_path=str(toy["model"])))
    restored.on_load_checkpoint(checkpoint)
    assert (restored.grpo_step, restored.data_position) == (3, 8)
    older = {key: value for key, value in checkpoint[RNG_KEY].items() if key != "data_position"}
    restored.on_load_checkpoint({RNG_KEY: older})  # saved before dynamic sampling: one batch per step
    assert restored.data_position == 3


def test_a_dynamic_sampling_metric_that_names_no_reward_is_refused(toy):
    grpo = GRPOConfig(dynamic_sampling=DynamicSamplingConfig(enable=True, metric="acuracy"))
    rewards = [RewardSpec("tests.toy_task:letter_share")]
    with pytest.raises(ConfigError, match=r"grpo.dynamic_sampling.metric='acuracy'.*letter_share"):
        GRPOModule(ModelConfig(name_or_path=str(toy["model"])), grpo, rewards=rewards)
