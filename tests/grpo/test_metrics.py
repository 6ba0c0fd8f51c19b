"""The step's reward, throughput and timing scalars, by hand."""

import pytest
import torch

from medzero_pl.grpo.metrics import step_metrics


def test_step_metrics_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5])  # two groups of G = 2
    metrics = step_metrics(
        rewards,
        2,
        zero_std=torch.tensor([False, True]),
        completion_lengths=torch.tensor([3, 5, 4, 4]),
        per_function={"accuracy": [1.0, 0.0, None, None], "unused": [None] * 4},
        seconds={"generate": 1.5, "score": 0.25, "train": 2.25},
    )
    assert metrics["reward"].item() == pytest.approx(0.5)
    assert metrics["reward_std"].item() == pytest.approx((2**0.5 / 2 + 0.0) / 2)  # mean of the groups' stds
    assert metrics["frac_reward_zero_std"].item() == 0.5
    assert metrics["step_time"].item() == pytest.approx(4.0)
    assert metrics["tokens_per_second"].item() == pytest.approx(16 / 4.0)
    assert metrics["timing/generate"].item() == pytest.approx(1.5) and metrics["timing/train"].item() == 2.25
    assert metrics["rewards/accuracy/mean"].item() == 0.5
    assert "rewards/unused/mean" not in metrics
