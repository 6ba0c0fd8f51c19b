"""Group-relative advantages: each completion's reward minus the mean reward of its prompt's group.

GRPO (Shao et al. 2024, DeepSeekMath) then divides by the group's std; Dr. GRPO (Liu et al. 2025) drops that
division because it up-weights prompts that are nearly always (un)solved; TRL's `scale_rewards="batch"` divides by
the std of the whole batch instead (centring stays per group). The three are `ADVANTAGE_SCALES`, matching TRL's
`_generate_and_score_completions` (`sum_then_normalize`): Bessel-corrected std, `+ 1e-4`, NaN rewards (unscorable
completions) left out of mean and std and given advantage 0.

Departures from TRL:
- A group whose rewards are all equal gets advantage exactly 0 under every scale. TRL computes `r - mean`, which can
  be a few ulp off zero, and divides it by `0 + 1e-4`.
- `zero_std` is per group, true iff all scorable rewards in the group are equal (or fewer than 2 are scorable). TRL
  flags `isclose(std, 0)` per sample and, under `scale="batch"`, uses the batch std, so `frac_reward_zero_std` is then
  0 or 1; ours always counts groups without a learning signal.
- `batch` uses the std of the rewards passed in: under DDP, gather all ranks' rewards first (TRL does).
"""

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class GroupAdvantages(NamedTuple):
    advantages: Tensor
    """`(P * G,)` advantages, prompt-major like the rewards."""
    zero_std: Tensor
    """`(P,)` bool, true for groups whose rewards are all equal (no learning signal); mean it to log
    `frac_reward_zero_std`."""


def nanstd(x: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Bessel-corrected std ignoring NaN; NaN when fewer than 2 values are present (TRL's `nanstd`)."""
    mean = x.nanmean(dim=dim, keepdim=True)
    count = (~x.isnan()).sum(dim=dim, keepdim=keepdim)
    return ((x - mean) ** 2).nansum(dim=dim, keepdim=keepdim).div(count - 1).sqrt()


def scale_by_group_std(grouped: Tensor, eps: float) -> Tensor:
    """GRPO: divide by each group's std.  `(P, G) -> (P, 1)`."""
    return nanstd(grouped, dim=1, keepdim=True) + eps


def scale_by_batch_std(grouped: Tensor, eps: float) -> Tensor:
    """TRL `scale_rewards="batch"`: divide by the std of every reward in the batch.  `(P, G) -> (1, 1)`."""
    return nanstd(grouped.reshape(1, -1), dim=1, keepdim=True) + eps


def no_scale(grouped: Tensor, eps: float) -> Tensor:
    """Dr. GRPO: keep the raw reward differences.  `(P, G) -> (1, 1)`."""
    return grouped.new_ones(1, 1)


ADVANTAGE_SCALES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "group": scale_by_group_std,
    "batch": scale_by_batch_std,
    "none": no_scale,
}


def group_advantages(rewards: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> GroupAdvantages:
    """Advantages `(r - group mean) / ADVANTAGE_SCALES[scale]` for prompt-major rewards.

    Args:
        rewards: `(P * G,)` rewards; index `i * G + j` is sample `j` of prompt `i`. NaN marks an unscorable sample.
        group_size: `G`, completions per prompt (at least 2: one sample has no baseline).
        scale: a key of `ADVANTAGE_SCALES`.
        eps: added to the std before dividing.

    Returns:
        `GroupAdvantages(advantages (P * G,), zero_std (P,))`.
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; valid: {', '.join(ADVANTAGE_SCALES)}")
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 to have a baseline, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (P * G,) with G={group_size}, got shape {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size)  # (P, G)
    if not grouped.is_floating_point():
        grouped = grouped.float()
    mean = grouped.nanmean(dim=1, keepdim=True)  # (P, 1)
    filled = torch.where(grouped.isnan(), mean, grouped)  # (P, G), NaN -> mean cannot break a tie
    zero_std = ~(filled.amax(dim=1) > filled.amin(dim=1))  # (P,), also true for all-NaN groups
    advantages = (grouped - mean) / ADVANTAGE_SCALES[scale](grouped, eps)  # (P, G)
    advantages = advantages.masked_fill(zero_std[:, None] | advantages.isnan(), 0.0)
    return GroupAdvantages(advantages.reshape(-1), zero_std)


def reward_matrix(per_reward: Sequence[Sequence[float | None]], n: int) -> Tensor:
    """`(N, K)` float64 scores of K rewards over N completions, NaN where a reward does not apply (None).

    float64, so a weighted sum matches `RewardSet`'s Python total before the one rounding to float32.
    """
    scores = torch.full((n, len(per_reward)), float("nan"), dtype=torch.float64)
    for k, values in enumerate(per_reward):
        scores[:, k] = torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float64)
    return scores


def sum_then_normalize(
    scores: Tensor, weights: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> GroupAdvantages:
    """GRPO on the weighted sum: `group_advantages(sum_k w_k r_k)`, rewards that do not apply counting 0.

    TRL 1.16 `multi_objective_aggregation="sum_then_normalize"` (its default). Departure: a completion no reward
    applies to totals 0, as `RewardSet` logs it; TRL leaves it out of its group's baseline (NaN) with advantage 0.
    `(N, K), (K,) -> GroupAdvantages`.
    """
    totals = (scores.double() * weights.double()).nansum(dim=1)  # (N,)
    return group_advantages(totals.float(), group_size, scale, eps)


def normalize_then_sum(
    scores: Tensor, weights: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> GroupAdvantages:
    """GDPO (Group reward-Decoupled normalisation Policy Optimisation, arXiv 2601.05242): normalise each reward
    within its group, sum with the weights, then standardise the sum over the batch, so a reward with a small spread
    (format, once learnt) is not drowned by one with a large spread (accuracy):

        s_i = sum_k w_k (r_ik - mean_group r_k) / (std_group r_k + eps)
        A_i = (s_i - mean_batch s) / (std_batch s + eps)

    Anchor: TRL 1.16 `_generate_and_score_completions`, `multi_objective_aggregation="normalize_then_sum"`: Bessel
    stds, NaN (reward not applicable) left out of means and stds and adding nothing to `s_i`; a completion no reward
    applies to is left out of the batch statistics with advantage 0. `scale` is not used (TRL ignores
    `scale_rewards` here too). Departures, as `group_advantages`: a reward constant within a group contributes
    exactly 0 to its `s_i`, and a group in which every reward is constant (`zero_std`) gets advantage exactly 0.
    Under DDP, gather every rank's scores first (TRL does). `(N, K), (K,) -> GroupAdvantages`.
    """
    if scores.dim() != 2 or scores.shape[1] != weights.numel() or weights.numel() == 0:
        raise ValueError(
            f"scores must be (N, K) with K={weights.numel()} >= 1 rewards, got shape {tuple(scores.shape)}"
        )
    scores = scores.float()
    per_reward = [group_advantages(scores[:, k], group_size, "group", eps) for k in range(scores.shape[1])]
    normalised = torch.stack([a.advantages for a in per_reward], dim=1)  # (N, K), 0 where NaN
    summed = (normalised * weights.to(normalised)).sum(dim=1)  # (N,)
    summed = summed.masked_fill(scores.isnan().all(dim=1), math.nan)  # unscorable: out of the batch statistics
    advantages = (summed - summed.nanmean()) / (nanstd(summed, dim=0) + eps)  # (N,)
    zero_std = torch.stack([a.zero_std for a in per_reward]).all(dim=0)  # (P,)
    advantages = advantages.masked_fill(zero_std.repeat_interleave(group_size) | advantages.isnan(), 0.0)
    return GroupAdvantages(advantages, zero_std)


MULTI_REWARD_ADVANTAGES: dict[str, Callable[..., GroupAdvantages]] = {
    "sum_then_normalize": sum_then_normalize,
    "normalize_then_sum": normalize_then_sum,
}
