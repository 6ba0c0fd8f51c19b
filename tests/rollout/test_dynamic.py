"""The dynamic-sampling loop with scripted rollouts: refill accounting, and ranks that agree (threads stand in for
ranks, with a gather that waits for both as a collective does)."""

from __future__ import annotations

import threading

import torch

from medzero_pl.grpo.dynamic_sampling import GroupCounts
from medzero_pl.rewards.registry import RewardOutput
from medzero_pl.rollout.base import Rollouts, repeat_each
from medzero_pl.rollout.dynamic import ScoredGroups, metric_values, sample_informative_groups

G = 2


def batch_of(names: list[str]) -> dict[str, list]:
    """Prompts named by their outcome: 'mix' (rewards 0, 1), 'right' (1, 1), 'wrong' (0, 0)."""
    return {"prompt_ids": [[i] for i in range(len(names))], "prompts": names, "id": list(names)}


def scripted_rollout(batch: dict[str, list], draw: int) -> ScoredGroups:
    rows = {key: repeat_each(values, G) for key, values in batch.items()}
    scores = {"mix": [0.0, 1.0], "right": [1.0, 1.0], "wrong": [0.0, 0.0]}
    total = [v for name in batch["prompts"] for v in scores[name.split("#")[0]]]
    texts = [f"{name}/{draw}/{j}" for name in batch["prompts"] for j in range(G)]
    rollouts = Rollouts([[1]] * len(texts), texts, ["stop"] * len(texts))
    logged = {"judge/fallback_rate": float(draw)}  # what a reward logs per scoring call
    return ScoredGroups(rows, rollouts, RewardOutput(total, {"accuracy": list(total)}, logged))


def stream(*batches: list[str]):
    drawn = []

    def draw():
        batch = batches[len(drawn)]
        drawn.append(batch)
        return batch_of(batch)

    return draw, drawn


def one_rank(counts: torch.Tensor) -> torch.Tensor:
    return counts[None]


def run(first, draw, gather=one_rank, cap=3, metric="total"):
    return sample_informative_groups(
        batch_of(first),
        draw,
        scripted_rollout,
        gather,
        group_size=G,
        metric=metric,
        max_extra_draws=cap,
        correct_at=1.0,
    )


def test_uninformative_groups_are_replaced_by_later_draws_and_extra_informative_ones_are_left_out():
    draw, drawn = stream(["wrong", "mix#2", "right"], ["mix#3", "mix#4", "mix#5"])
    result = run(["mix#1", "right", "wrong"], draw)
    assert len(drawn) == 2 and result.draws == 3
    assert result.groups.rows["prompts"] == repeat_each(["mix#1", "mix#2", "mix#3"], G)
    assert result.groups.rollouts.texts == [
        "mix#1/0/0",
        "mix#1/0/1",
        "mix#2/1/0",
        "mix#2/1/1",
        "mix#3/2/0",
        "mix#3/2/1",
    ]
    assert result.groups.scored.total == [0.0, 1.0] * 3
    assert result.counts == GroupCounts(drawn=9, kept=5, all_correct=2, all_wrong=2)
    assert not result.cap_hit
    assert result.groups.scored.metrics == {"judge/fallback_rate": 1.0}  # the mean over the three scoring calls


def test_a_batch_of_informative_groups_draws_nothing_more():
    draw, drawn = stream()
    result = run(["mix#1", "mix#2"], draw)
    assert drawn == [] and result.draws == 1 and not result.cap_hit
    assert result.groups.rows["prompts"] == repeat_each(["mix#1", "mix#2"], G)


def test_at_the_cap_the_step_trains_on_the_informative_groups_found():
    draw, drawn = stream(["wrong", "wrong"], ["right", "right"], ["mix#2", "mix#3"])
    result = run(["mix#1", "right"], draw, cap=2)
    assert len(drawn) == 2 and result.cap_hit
    assert result.groups.rows["prompts"] == repeat_each(["mix#1"], G)


def test_without_any_informative_group_the_step_trains_on_its_first_draw():
    draw, drawn = stream(["wrong", "wrong"])
    result = run(["right", "wrong"], draw, cap=1)
    assert result.cap_hit and result.draws == 2
    assert result.groups.rows["prompts"] == repeat_each(["right", "wrong"], G)
    assert result.groups.rollouts.texts[0] == "right/0/0"


def test_the_metric_may_be_one_named_reward_where_none_means_not_applicable():
    scored = RewardOutput([1.0, 2.0], {"accuracy": [None, 1.0]})
    assert metric_values(scored, "total").tolist() == [1.0, 2.0]
    values = metric_values(scored, "accuracy")
    assert values.isnan().tolist() == [True, False] and values[1] == 1.0


class ThreadGather:
    """A collective for threads standing in for ranks: each call returns every rank's tensor, rank-major."""

    def __init__(self, world_size: int) -> None:
        self.barrier = threading.Barrier(world_size)
        self.slots: list[torch.Tensor | None] = [None] * world_size
        self.calls = [0] * world_size

    def for_rank(self, rank: int):
        def gather(counts: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = counts
            self.calls[rank] += 1
            self.barrier.wait()
            result = torch.stack(self.slots)
            self.barrier.wait()  # nobody overwrites a slot before everyone read it
            return result

        return gather


def test_ranks_draw_equally_often_and_keep_the_same_number_of_groups():
    # Rank 0 finds its two informative groups at once; rank 1 finds one per draw and, at the cap, has one only.
    plans = {
        0: (["mix#a", "mix#b"], [["right", "right"], ["wrong", "wrong"]]),
        1: (["mix#c", "right"], [["wrong", "right"], ["wrong", "wrong"]]),
    }
    collective = ThreadGather(2)
    results, draws = {}, {}

    def rank_main(rank: int) -> None:
        first, later = plans[rank]
        draw, drawn = stream(*later)
        results[rank] = run(first, draw, gather=collective.for_rank(rank), cap=2)
        draws[rank] = drawn

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(draws[0]) == len(draws[1]) == 2  # rank 0 kept drawing with rank 1, so their streams stay in step
    assert collective.calls == [3, 3]
    assert results[0].groups.rows["prompts"] == repeat_each(["mix#a"], G)  # the fewest any rank found: one
    assert results[1].groups.rows["prompts"] == repeat_each(["mix#c"], G)
    assert results[0].counts == results[1].counts == GroupCounts(drawn=12, kept=3, all_correct=4, all_wrong=5)
    assert results[0].cap_hit and results[1].cap_hit
