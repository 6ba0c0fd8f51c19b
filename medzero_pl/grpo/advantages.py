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

from collections.abc import Callable
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
