"""Dynamic sampling (DAPO, Yu et al. 2025): keep only groups whose rewards differ, and draw more prompts until P such
groups are found or a cap on extra draws is reached.

A group whose completions all score the same has advantage exactly 0 (see `advantages.py`): generating it costs, but
training on it teaches nothing (beyond a KL or entropy term). This file holds the accounting as pure functions on
tensors and numbers; the loop that draws, generates and scores is `medzero_pl.rollout.dynamic`.

Anchors: verl `algorithm.filter_groups` (`enable`, `metric`, `max_num_gen_batches`) in `recipe/dapo/dapo_ray_trainer.py`
keeps groups whose metric std is > 0 and truncates the kept groups to the training batch size. Departures: the cap
counts extra draws (verl counts every generation batch, the first included); when the cap is reached with fewer
than P groups this trains on those (verl raises an error), and on the first draw's groups when none differ; with
several ranks every rank keeps the same number of groups, the smallest any rank found (capped at its share of P).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def spread_groups(values: Tensor, group_size: int) -> Tensor:
    """`(P * G,)` prompt-major values -> `(P,)` bool, true for groups whose values are not all equal.

    NaN (a reward that does not apply) is left out, as in `group_advantages`: a group with fewer than two values
    present has no spread.
    """
    if values.dim() != 1 or values.numel() % group_size:
        raise ValueError(f"values must be (P * G,) with G={group_size}, got shape {tuple(values.shape)}")
    grouped = values.double().view(-1, group_size)  # (P, G)
    present = ~grouped.isnan()
    high = grouped.masked_fill(~present, -torch.inf).amax(dim=1)
    low = grouped.masked_fill(~present, torch.inf).amin(dim=1)
    return (present.sum(dim=1) >= 2) & (high > low)


@dataclass(frozen=True)
class GroupCounts:
    """What one draw (or a whole step) found, in groups."""

    drawn: int = 0
    kept: int = 0
    """Groups with a spread (informative)."""
    all_correct: int = 0
    """Groups without a spread whose common value is at least `correct_at`."""
    all_wrong: int = 0
    """Groups without a spread below `correct_at` (or with no value at all)."""

    def __add__(self, other: GroupCounts) -> GroupCounts:
        return GroupCounts(
            self.drawn + other.drawn,
            self.kept + other.kept,
            self.all_correct + other.all_correct,
            self.all_wrong + other.all_wrong,
        )

    def as_tensor(self) -> Tensor:
        """`(4,)` int64, for a sum over ranks."""
        return torch.tensor([self.drawn, self.kept, self.all_correct, self.all_wrong], dtype=torch.int64)

    @classmethod
    def from_tensor(cls, counts: Tensor) -> GroupCounts:
        return cls(*(int(c) for c in counts.tolist()))


def count_groups(values: Tensor, group_size: int, correct_at: float) -> tuple[Tensor, GroupCounts]:
    """The informative groups `(P,)` of one draw and its counts; groups without a spread are all-correct when their
    common value is at least `correct_at`, else all-wrong."""
    informative = spread_groups(values, group_size)
    common = values.double().view(-1, group_size).nan_to_num(nan=-torch.inf).amax(dim=1)  # (P,), NaN: wrong
    correct = ~informative & (common >= correct_at)
    counts = GroupCounts(
        drawn=informative.numel(),
        kept=int(informative.sum()),
        all_correct=int(correct.sum()),
        all_wrong=int((~informative & ~correct).sum()),
    )
    return informative, counts


def needs_more(fewest_kept: int, target: int, extra_draws: int, max_extra_draws: int) -> bool:
    """Draw again while some rank holds fewer than its `target` informative groups and the cap allows.

    `fewest_kept` must be the same number on every rank (the minimum over ranks), so that all ranks draw equally
    often and no collective waits for a rank that stopped.
    """
    return fewest_kept < target and extra_draws < max_extra_draws


def groups_to_keep(fewest_kept: int, target: int) -> int:
    """Groups every rank trains on: its share of P, or fewer when some rank found fewer (the same on all ranks)."""
    return min(fewest_kept, target)


def kept_indices(informative: Tensor, keep: int) -> Tensor:
    """The first `keep` informative groups, in draw order, as indices into `informative` `(P_total,)`."""
    chosen = informative.nonzero().flatten()
    if chosen.numel() < keep:
        raise ValueError(f"asked to keep {keep} groups of {chosen.numel()} informative ones")
    return chosen[:keep]


def completion_rows(groups: Tensor, group_size: int) -> Tensor:
    """Group indices `(k,)` -> the indices of their completions `(k * G,)`, prompt-major."""
    return (groups[:, None] * group_size + torch.arange(group_size)).flatten()


class CapWatch:
    """Counts consecutive steps that reached the cap of extra draws and says when that has become the rule."""

    def __init__(self, warn_after: int) -> None:
        self.warn_after = warn_after
        self.consecutive = 0

    def update(self, cap_hit: bool, counts: GroupCounts) -> str | None:
        """A warning on the `warn_after`-th consecutive capped step (and every `warn_after` after), else None."""
        self.consecutive = self.consecutive + 1 if cap_hit else 0
        if not cap_hit or self.warn_after < 1 or self.consecutive % self.warn_after:
            return None
        side = "too easy" if counts.all_correct >= counts.all_wrong else "too hard"
        return (
            f"dynamic sampling reached grpo.dynamic_sampling.max_extra_draws on {self.consecutive} steps in a row "
            f"(last step: {counts.kept} of {counts.drawn} groups informative, {counts.all_correct} all correct, "
            f"{counts.all_wrong} all wrong): the data looks {side} for this policy; measure each question's pass "
            "rate (python -m medzero_pl.difficulty) and train on a band with data.pass_rate_range"
        )
