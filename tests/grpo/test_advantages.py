import math

import pytest
import torch

from medzero_pl.grpo import (
    ADVANTAGE_SCALES,
    MULTI_REWARD_ADVANTAGES,
    group_advantages,
    normalize_then_sum,
    reward_matrix,
    sum_then_normalize,
)
from medzero_pl.rewards import RewardSet

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


NAN = float("nan")


def test_reward_matrix_puts_one_column_per_reward_and_nan_where_it_does_not_apply():
    scores = reward_matrix([[1.0, None, 0.5], [None, None, 0.2]], 3)
    assert scores.shape == (3, 2) and scores.dtype == torch.float64
    torch.testing.assert_close(
        scores, torch.tensor([[1.0, NAN], [NAN, NAN], [0.5, 0.2]], dtype=torch.float64), equal_nan=True
    )
    assert reward_matrix([], 3).shape == (3, 0)


@pytest.mark.parametrize("scale", list(ADVANTAGE_SCALES))
def test_sum_then_normalize_is_grpo_on_the_totals_the_reward_set_reports(scale):
    # The module's path from per-reward scores must give exactly the advantages of RewardSet's totals.
    g = torch.Generator().manual_seed(0)
    columns = [[round(v, 6) for v in torch.rand(12, generator=g).tolist()] for _ in range(3)]
    columns[1][3] = columns[2][3] = columns[0][3] = None  # no reward applies: total 0
    columns[2][5] = None
    weights = [1.0, 0.2, 0.35]
    functions = [lambda prompts, completions, c=c, **_: c for c in columns]
    totals = RewardSet(["a", "b", "c"], functions, weights)(None, [""] * 12).total
    expected = group_advantages(torch.tensor(totals, dtype=torch.float32), 4, scale)
    out = sum_then_normalize(reward_matrix(columns, 12), torch.tensor(weights, dtype=torch.float64), 4, scale)
    assert torch.equal(out.advantages, expected.advantages) and torch.equal(out.zero_std, expected.zero_std)
    assert MULTI_REWARD_ADVANTAGES["sum_then_normalize"] is sum_then_normalize


def test_gdpo_normalises_each_reward_in_its_group_then_the_weighted_sum_over_the_batch():
    # G = 2. Accuracy (weight 1): [1, 0] and [0, 0]; format (weight 0.5): [1, 1] and [1, 0]. A two-value group's
    # Bessel std is 0.5 * sqrt(2), so a differing reward normalises to +-a, a = 0.5 / (0.5 sqrt 2 + eps); a constant
    # one to 0. Sums s = [a, -a, a/2, -a/2]: batch mean 0, Bessel std a sqrt(5/6).
    scores = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    out = normalize_then_sum(scores, torch.tensor([1.0, 0.5]), 2)
    a = 0.5 / (0.5 * math.sqrt(2) + EPS)
    s = torch.tensor([a, -a, a / 2, -a / 2])
    torch.testing.assert_close(out.advantages, s / (a * math.sqrt(5 / 6) + EPS))
    assert out.zero_std.tolist() == [False, False]
    # GRPO on the weighted sum would see totals [1.5, 0.5, 0.5, 0]: the group with only a format difference gets
    # the same advantages as the group with an accuracy difference, twice its weight.
    summed = sum_then_normalize(scores, torch.tensor([1.0, 0.5]), 2)
    torch.testing.assert_close(summed.advantages[:2], summed.advantages[2:], atol=1e-3, rtol=0)  # up to eps


def test_gdpo_leaves_out_rewards_that_do_not_apply_and_gives_unscorable_and_flat_groups_zero():
    # Prompt 0: accuracy [1, 0], format not applicable -> s = [a, -a]. Prompt 1: no reward applies to its first
    # completion (left out of the batch statistics), format applies to the second alone (a single value: no signal).
    scores = torch.tensor([[1.0, NAN], [0.0, NAN], [NAN, NAN], [NAN, 1.0]])
    out = normalize_then_sum(scores, torch.tensor([1.0, 0.5]), 2)
    a = 0.5 / (0.5 * math.sqrt(2) + EPS)
    # Batch statistics over s = [a, -a, 0]: mean 0, Bessel std a.
    torch.testing.assert_close(out.advantages, torch.tensor([a / (a + EPS), -a / (a + EPS), 0.0, 0.0]))
    assert out.zero_std.tolist() == [False, True]


def test_gdpo_gives_a_group_whose_every_reward_is_constant_exactly_zero():
    # The unscorable row's absence leaves the batch mean of s off zero; the flat group must not inherit it.
    scores = torch.tensor([[1.0, 0.2], [0.0, 0.2], [0.0, 0.7], [NAN, NAN], [0.3, 1.0], [0.3, 1.0]])
    out = normalize_then_sum(scores, torch.tensor([1.0, 0.5]), 3)
    assert out.zero_std.tolist() == [False, True] and out.advantages[3:].eq(0).all()


def test_gdpo_needs_one_column_per_weight():
    with pytest.raises(ValueError, match="K=2 >= 1 rewards"):
        normalize_then_sum(torch.zeros(4, 3), torch.ones(2), 2)
