"""Small pure helpers of the GRPO module."""

from __future__ import annotations

from medzero_pl.module import repeat_each


def test_repeat_each_lays_out_a_generation_batch_prompt_major():
    assert repeat_each(["a", "b"], 3) == ["a", "a", "a", "b", "b", "b"]
