"""A short GRPO run of every objective on the toy task: the loss stays finite and the reward rises."""

from __future__ import annotations

import pytest
import torch

from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.grpo import POLICY_LOSSES
from tests.test_training import RecordRewards
from tests.toy_task import toy_overrides

pytestmark = pytest.mark.slow  # 20 GRPO steps each, 6-12 s per run on 2 busy cores (12 runs: 2 min 10 s)

STEPS = 20
MU2 = {"grpo.num_iterations": 2}  # a second pass per batch, so the ratio moves off 1 and the objectives differ
RUNS = {
    "vanilla-dual_clip": {"grpo.policy_loss_kwargs": "{delta: 3.0}"} | MU2,
    "gspo": {"grpo.importance_sampling_level": "sequence", "grpo.loss_type": "grpo"} | MU2,
    "luspo": {"grpo.importance_sampling_level": "sequence", "grpo.loss_type": "luspo"} | MU2,
    "cispo": {"grpo.policy_loss": "cispo", "grpo.epsilon_high": 5.0} | MU2,
    "sapo": {"grpo.policy_loss": "sapo", "grpo.loss_type": "grpo"} | MU2,
    "vespo": {"grpo.policy_loss": "vespo"} | MU2,
    "gpg": {"grpo.policy_loss": "gpg"},
    "clip_cov": {"grpo.policy_loss": "clip_cov", "grpo.policy_loss_kwargs": "{clip_cov_ratio: 0.02}"} | MU2,
    "kl_cov": {"grpo.policy_loss": "kl_cov", "grpo.policy_loss_kwargs": "{kl_cov_ratio: 0.02}"} | MU2,
    "kl-k2-bias_corrected-top_entropy": {
        "grpo.beta": 0.04,
        "grpo.kl_loss_type": "k2",
        "grpo.use_bias_correction_kl": "true",
        "grpo.top_entropy_quantile": 0.5,
    }
    | MU2,
    "gdpo": {
        "rewards": "[{name: 'tests.toy_task:letter_share'}, {name: 'tests.toy_task:opens_with_letter', weight: 0.5}]",
        "grpo.multi_objective_aggregation": "normalize_then_sum",
    },
}


def test_every_objective_has_a_run_here():
    ran = {settings.get("grpo.policy_loss", "vanilla") for settings in RUNS.values()}
    assert ran == set(POLICY_LOSSES)


@pytest.mark.parametrize("settings", RUNS.values(), ids=RUNS.keys())
def test_a_short_run_trains_with_finite_loss_and_rising_reward(toy, tmp_path, settings):
    cfg = compose(toy_overrides(toy, tmp_path, **{"trainer.max_steps": STEPS}, **settings))
    trainer, module, datamodule = build(cfg)
    recorder = RecordRewards()
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.callback_metrics
    assert all(torch.isfinite(v).all() for v in metrics.values()), metrics
    first, last = recorder.rewards[:5], recorder.rewards[-5:]  # chance is ~0.01 (1 of ~80 characters)
    assert sum(last) / 5 > sum(first) / 5 + 0.05, recorder.rewards
