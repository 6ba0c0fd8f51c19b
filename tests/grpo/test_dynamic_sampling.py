"""Dynamic sampling's accounting against hand-counted groups."""

from __future__ import annotations

import math

import pytest
import torch

from medzero_pl.grpo.dynamic_sampling import (
    CapWatch,
    GroupCounts,
    completion_rows,
    count_groups,
    groups_to_keep,
    kept_indices,
    needs_more,
    spread_groups,
)

NAN = math.nan


def test_a_group_is_informative_iff_its_present_values_differ():
    values = torch.tensor(
        [
            [1.0, 1.0, 1.0],  # all correct
            [0.0, 1.0, 0.0],  # mixed
            [0.0, 0.0, 0.0],  # all wrong
            [NAN, 1.0, 1.0],  # NaN left out: no spread
            [NAN, 0.0, 1.0],  # NaN left out: spread
            [NAN, NAN, 1.0],  # one value present
            [NAN, NAN, NAN],
        ]
    ).flatten()
    assert spread_groups(values, 3).tolist() == [False, True, False, False, True, False, False]


def test_spread_groups_refuses_a_batch_that_is_not_whole_groups():
    with pytest.raises(ValueError, match="G=3"):
        spread_groups(torch.zeros(4), 3)


def test_groups_without_a_spread_are_counted_as_all_correct_or_all_wrong_by_their_common_value():
    # Total rewards of accuracy (1) + 0.2 format: 1.2 all correct and formatted, 0.2 all wrong but formatted.
    values = torch.tensor([1.2, 1.2, 0.2, 0.2, 0.2, 1.2, 0.0, 0.0, NAN, NAN]).reshape(5, 2).flatten()
    informative, counts = count_groups(values, 2, correct_at=1.0)
    assert informative.tolist() == [False, False, True, False, False]
    assert counts == GroupCounts(drawn=5, kept=1, all_correct=1, all_wrong=3)


def test_counts_add_up_and_travel_as_a_tensor():
    total = GroupCounts(4, 1, 2, 1) + GroupCounts(4, 3, 0, 1)
    assert total == GroupCounts(8, 4, 2, 2)
    assert GroupCounts.from_tensor(total.as_tensor()) == total


@pytest.mark.parametrize(
    ("fewest_kept", "extra_draws", "expected"),
    [(2, 0, True), (4, 0, False), (5, 0, False), (2, 3, False), (0, 2, True)],
)
def test_draw_again_while_some_rank_lacks_groups_and_the_cap_allows(fewest_kept, extra_draws, expected):
    assert needs_more(fewest_kept, target=4, extra_draws=extra_draws, max_extra_draws=3) is expected


def test_no_extra_draw_under_a_cap_of_zero():
    assert not needs_more(0, target=4, extra_draws=0, max_extra_draws=0)


def test_every_rank_keeps_its_share_or_the_fewest_any_rank_found():
    assert groups_to_keep(fewest_kept=7, target=4) == 4
    assert groups_to_keep(fewest_kept=3, target=4) == 3
    assert groups_to_keep(fewest_kept=0, target=4) == 0


def test_the_first_informative_groups_are_kept_in_draw_order():
    informative = torch.tensor([False, True, False, True, True, True])
    assert kept_indices(informative, 3).tolist() == [1, 3, 4]
    with pytest.raises(ValueError, match="keep 5"):
        kept_indices(informative, 5)


def test_completion_rows_are_prompt_major():
    assert completion_rows(torch.tensor([2, 0]), 3).tolist() == [6, 7, 8, 0, 1, 2]


def test_the_cap_warning_comes_after_consecutive_capped_steps_and_names_the_likely_side():
    watch = CapWatch(warn_after=2)
    easy = GroupCounts(drawn=8, kept=1, all_correct=6, all_wrong=1)
    assert watch.update(True, easy) is None
    assert watch.update(False, easy) is None  # the run of capped steps restarts
    assert watch.update(True, easy) is None
    warning = watch.update(True, easy)
    assert "2 steps in a row" in warning and "too easy" in warning and "max_extra_draws" in warning
    assert "python -m medzero_pl.difficulty" in warning and "data.pass_rate_range" in warning
    hard = GroupCounts(drawn=8, kept=1, all_correct=0, all_wrong=7)
    assert watch.update(True, hard) is None
    assert "too hard" in watch.update(True, hard)
    assert CapWatch(warn_after=0).update(True, easy) is None
