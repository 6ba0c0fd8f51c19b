"""The dynamic-sampling loop: draw, generate and score batches of prompts until every rank holds its share of
informative groups (groups whose rewards differ) or the cap on extra draws is reached.

The accounting is pure (`medzero_pl.grpo.dynamic_sampling`); this file only calls what it is given: `draw` (the next
batch of the data stream), `rollout` (generate and score one batch) and `gather` (every rank's counts), so it knows
no model, engine, trainer or data loader. All ranks decide from the same gathered numbers, so they draw the same
number of batches (their data streams stay in step, and no collective waits for a rank that stopped) and keep the
same number of groups (every rank runs the same number of forward and backward passes, as ZeRO-3 needs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from medzero_pl.grpo.dynamic_sampling import (
    GroupCounts,
    completion_rows,
    count_groups,
    groups_to_keep,
    kept_indices,
    needs_more,
)
from medzero_pl.rewards.registry import RewardOutput
from medzero_pl.rollout.base import Rollouts

Batch = dict[str, list[Any]]


@dataclass
class ScoredGroups:
    """Scored completions of some groups, prompt-major: `rows` holds one entry per completion (the prompt's
    `prompt_ids`, `prompts` and gold columns repeated G times)."""

    rows: Batch
    rollouts: Rollouts
    scored: RewardOutput

    def select(self, completions: Sequence[int]) -> ScoredGroups:
        """These completions only, in the given order."""
        pick = list(completions)
        logprobs = self.rollouts.logprobs
        return ScoredGroups(
            rows={key: [values[i] for i in pick] for key, values in self.rows.items()},
            rollouts=Rollouts(
                completion_ids=[self.rollouts.completion_ids[i] for i in pick],
                texts=[self.rollouts.texts[i] for i in pick],
                finish_reasons=[self.rollouts.finish_reasons[i] for i in pick],
                logprobs=None if logprobs is None else [logprobs[i] for i in pick],
            ),
            scored=RewardOutput(
                total=[self.scored.total[i] for i in pick],
                per_function={name: [values[i] for i in pick] for name, values in self.scored.per_function.items()},
                metrics=dict(self.scored.metrics),  # what the scoring calls logged, not per completion
            ),
        )

    @staticmethod
    def concat(parts: Sequence[ScoredGroups]) -> ScoredGroups:
        """One after the other, in order."""
        first = parts[0]
        with_logprobs = all(p.rollouts.logprobs is not None for p in parts)
        return ScoredGroups(
            rows={key: [v for p in parts for v in p.rows[key]] for key in first.rows},
            rollouts=Rollouts(
                completion_ids=[c for p in parts for c in p.rollouts.completion_ids],
                texts=[t for p in parts for t in p.rollouts.texts],
                finish_reasons=[r for p in parts for r in p.rollouts.finish_reasons],
                logprobs=[lp for p in parts for lp in p.rollouts.logprobs] if with_logprobs else None,
            ),
            scored=RewardOutput(
                total=[t for p in parts for t in p.scored.total],
                per_function={
                    name: [v for p in parts for v in p.scored.per_function[name]] for name in first.scored.per_function
                },
                metrics=mean_metrics([p.scored.metrics for p in parts]),
            ),
        )


@dataclass
class SampledGroups:
    """What a step trains on, and what it took to find it."""

    groups: ScoredGroups
    """The kept groups of this rank."""
    counts: GroupCounts
    """Summed over every rank and draw."""
    draws: int
    """Batches drawn, the first included (the same on every rank)."""
    cap_hit: bool
    """The cap stopped the search before every rank had its share of informative groups."""


def mean_metrics(logged: Sequence[dict[str, float]]) -> dict[str, float]:
    """What several scoring calls logged, the mean where a name was logged by several (as `RewardSet` does)."""
    names = dict.fromkeys(name for metrics in logged for name in metrics)
    return {name: sum(m[name] for m in logged if name in m) / sum(name in m for m in logged) for name in names}


def metric_values(scored: RewardOutput, metric: str) -> Tensor:
    """`(N,)` float64: the weighted total (`metric="total"`) or one reward's values, NaN where it does not apply."""
    values = scored.total if metric == "total" else scored.per_function[metric]
    return torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float64)


def sample_informative_groups(
    first: Batch,
    draw: Callable[[], Batch],
    rollout: Callable[[Batch, int], ScoredGroups],
    gather: Callable[[Tensor], Tensor],
    *,
    group_size: int,
    metric: str,
    max_extra_draws: int,
    correct_at: float,
) -> SampledGroups:
    """Keep this rank's share of informative groups, drawing extra batches while any rank lacks some.

    Args:
        first: This rank's share of the step's batch (its number of prompts is the share of groups to keep).
        draw: The next batch of the data stream (this rank's share).
        rollout: `(batch, draw index) -> ScoredGroups` of its prompts.
        gather: `(n,)` int64 -> `(world_size, n)`, every rank's tensor (a collective: called once per draw).
        group_size: G.
        metric: `total` or a reward name (see `metric_values`).
        max_extra_draws: The cap on batches drawn after `first`.
        correct_at: Threshold of the all-correct count (`count_groups`).
    """
    target = len(first["prompt_ids"])
    parts: list[ScoredGroups] = []
    flags: list[Tensor] = []
    counts, kept, batch = GroupCounts(), 0, first
    while True:
        part = rollout(batch, len(parts))
        informative, found = count_groups(metric_values(part.scored, metric), group_size, correct_at)
        parts.append(part)
        flags.append(informative)
        kept += found.kept
        everyone = gather(torch.cat([found.as_tensor(), torch.tensor([kept])])).reshape(-1, 5)  # (W, 5)
        counts = counts + GroupCounts.from_tensor(everyone[:, :4].sum(dim=0))
        fewest_kept = int(everyone[:, 4].min())
        if not needs_more(fewest_kept, target, len(parts) - 1, max_extra_draws):
            break
        batch = draw()
    keep = groups_to_keep(fewest_kept, target)
    drawn = ScoredGroups.concat(parts)
    # Nothing to learn from on some rank: every rank trains on its first draw, as without dynamic sampling.
    groups = torch.arange(target) if keep == 0 else kept_indices(torch.cat(flags), keep)
    return SampledGroups(
        groups=drawn.select(completion_rows(groups, group_size).tolist()),
        counts=counts,
        draws=len(parts),
        cap_hit=fewest_kept < target,
    )
