"""Small pure helpers of the GRPO module."""

from __future__ import annotations

import math

import pytest

from medzero_pl.module import lr_lambda, repeat_each


def test_repeat_each_lays_out_a_generation_batch_prompt_major():
    assert repeat_each(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    schedule = lr_lambda(warmup=2, total=10, kind="cosine", floor=0.1)
    assert [schedule(s) for s in (0, 1)] == [0.5, 1.0]
    assert schedule(2) == pytest.approx(1.0)
    assert schedule(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule(10) == pytest.approx(0.1) and schedule(50) == pytest.approx(0.1)


def test_constant_schedule_stays_at_the_peak_after_warmup():
    schedule = lr_lambda(warmup=0, total=10, kind="constant", floor=0.0)
    assert {schedule(s) for s in range(10)} == {1.0}
