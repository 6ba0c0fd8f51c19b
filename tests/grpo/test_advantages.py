import math

import pytest
import torch

from medzero_pl.grpo import ADVANTAGE_SCALES, group_advantages

# 3 prompts x G=3, prompt-major. Group means 1, 4, 3; Bessel stds 1, 0, sqrt(3).
REWARDS = torch.tensor([0.0, 1.0, 2.0, 4.0, 4.0, 4.0, 2.0, 5.0, 2.0])
CENTRED = [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0, 2.0, -1.0]
EPS = 1e-4


def test_group_scale_hand_computed():
    out = group_advantages(REWARDS, group_size=3, scale="group")
    s3 = math.sqrt(3) + EPS
    expected = [-1 / (1 + EPS), 0.0, 1 / (1 + EPS), 0.0, 0.0, 0.0, -1 / s3, 2 / s3, -1 / s3]
    torch.testing.assert_close(out.advantages, torch.tensor(expected))
    assert out.zero_std.tolist() == [False, True, False]


def test_batch_scale_hand_computed():
    # Batch mean 24/9; squared deviations sum to 198/9 = 22; Bessel variance 22 / 8 = 2.75. Centring stays per group.
    out = group_advantages(REWARDS, group_size=3, scale="batch")
    std = math.sqrt(2.75) + EPS
    torch.testing.assert_close(out.advantages, torch.tensor([c / std for c in CENTRED]))
    assert out.zero_std.tolist() == [False, True, False]


def test_none_scale_is_centred_rewards():
    out = group_advantages(REWARDS, group_size=3, scale="none")
    torch.testing.assert_close(out.advantages, torch.tensor(CENTRED))
    assert out.zero_std.tolist() == [False, True, False]


@pytest.mark.parametrize("scale", list(ADVANTAGE_SCALES))
def test_zero_variance_group_is_exactly_zero(scale):
    # In float32, mean([0.9] * 3) != 0.9: naive centring leaves ~6e-8, which / (0 + 1e-4) would be ~6e-4.
    rewards = torch.tensor([0.9, 0.9, 0.9, 0.7, 0.7, 0.7, 0.0, 1.0, 0.0])
    assert (rewards[:3] - rewards[:3].mean()).abs().max() > 0
    out = group_advantages(rewards, group_size=3, scale=scale)
    assert out.advantages[:6].eq(0).all()
    assert out.zero_std.tolist() == [True, True, False]


def test_prompt_major_ordering_and_shapes():
    # Prompt i's samples are rewards[i * G : (i + 1) * G]; interleaving would mix groups [0, 10] and [1, 11].
    out = group_advantages(torch.tensor([0.0, 1.0, 10.0, 11.0]), group_size=2, scale="none")
    assert out.advantages.shape == (4,) and out.zero_std.shape == (2,)
    assert out.advantages.tolist() == [-0.5, 0.5, -0.5, 0.5]


def test_nan_rewards_are_left_out_and_get_zero():
    # Group [1, nan, 0]: mean 0.5, std of [1, 0] = sqrt(0.5). Group [nan, 2, 2]: one value -> zero std.
    out = group_advantages(torch.tensor([1.0, float("nan"), 0.0, float("nan"), 2.0, 2.0]), group_size=3)
    s = math.sqrt(0.5) + EPS
    torch.testing.assert_close(out.advantages, torch.tensor([0.5 / s, 0.0, -0.5 / s, 0.0, 0.0, 0.0]))
    assert out.zero_std.tolist() == [False, True]


def test_integer_rewards_are_promoted():
    out = group_advantages(torch.tensor([0, 1, 1, 1]), group_size=2, scale="none")
    assert out.advantages.dtype == torch.float32
    assert out.advantages.tolist() == [-0.5, 0.5, 0.0, 0.0]


@pytest.mark.parametrize("group_size", [0, 1])
def test_group_smaller_than_two_raises(group_size):
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(torch.zeros(4), group_size=group_size)


def test_bad_shapes_and_scale_raise():
    with pytest.raises(ValueError, match="P \\* G"):
        group_advantages(torch.zeros(5), group_size=2)
    with pytest.raises(ValueError, match="P \\* G"):
        group_advantages(torch.zeros(2, 2), group_size=2)
    with pytest.raises(ValueError, match="valid: group, batch, none"):
        group_advantages(torch.zeros(4), group_size=2, scale="std")
