"""Truncated and masked importance sampling against the sampler's log-probs, on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from medzero_pl.grpo import grpo_loss
from medzero_pl.grpo.correction import importance_weights, sampler_mismatch, sequence_tis, token_tis

LN2 = math.log(2.0)
# Two completions of 3 tokens; the last token of row 1 is padding. diff = trainer - sampler.
TRAINER = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -9.0]])
SAMPLER = torch.tensor([[-1.0, -2.0 - LN2, -0.5 - 3 * LN2], [-1.0 + LN2, -1.0, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_token_level_weight_is_the_ratio_truncated_at_the_cap_and_one_on_padding():
    weights = token_tis(TRAINER, SAMPLER, MASK, cap=2.0)
    assert torch.allclose(weights, torch.tensor([[1.0, 2.0, 2.0], [0.5, 1.0, 1.0]]))  # ratio 8 is cut to 2


def test_sequence_level_weight_is_the_truncated_product_of_ratios():
    weights = sequence_tis(TRAINER, SAMPLER, MASK, cap=100.0)
    assert weights.shape == (2, 1)
    assert torch.allclose(weights, torch.tensor([[16.0], [0.5]]))  # 1 * 2 * 8 and 0.5 * 1 (padding ignored)
    assert torch.allclose(sequence_tis(TRAINER, SAMPLER, MASK, cap=3.0), torch.tensor([[3.0], [0.5]]))


def test_a_floor_raises_small_weights_in_the_truncating_modes():
    # Ratios 1, 2, 8 / 0.5, 1 (token) and 16 / 0.5 (sequence); floor 0.8 lifts the 0.5s.
    assert torch.allclose(token_tis(TRAINER, SAMPLER, MASK, 4.0, floor=0.8), torch.tensor([[1, 2, 4], [0.8, 1, 1.0]]))
    assert torch.allclose(sequence_tis(TRAINER, SAMPLER, MASK, 4.0, floor=0.8), torch.tensor([[4.0], [0.8]]))


def test_masking_modes_zero_the_tokens_or_sequences_outside_floor_and_cap():
    token = importance_weights(TRAINER, SAMPLER, MASK, "token_mask", cap=4.0, floor=0.8)
    assert torch.allclose(token, torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]))  # 8 > cap, 0.5 < floor; pad: 1
    sequence = importance_weights(TRAINER, SAMPLER, MASK, "sequence_mask", cap=3.0)
    assert torch.allclose(sequence, torch.tensor([[0.0], [0.5]]))  # 16 > 3 drops row 0; no floor keeps 0.5
    assert torch.allclose(
        importance_weights(TRAINER, SAMPLER, MASK, "sequence_mask", 20.0), torch.tensor([[16.0], [0.5]])
    )


def test_weights_carry_no_gradient():
    trainer = TRAINER.clone().requires_grad_(True)
    for mode in ("token", "sequence", "token_mask", "sequence_mask", "none"):
        assert not importance_weights(trainer, SAMPLER, MASK, mode, 2.0).requires_grad, mode


def test_none_is_weight_one_and_unknown_modes_raise():
    assert torch.equal(importance_weights(TRAINER, SAMPLER, MASK, "none", 2.0), torch.ones(2, 1))
    with pytest.raises(ValueError, match="unknown off-policy correction 'token_truncate'; valid: token, sequence"):
        importance_weights(TRAINER, SAMPLER, MASK, "token_truncate", 2.0)


@pytest.mark.parametrize("mode", ["token", "sequence_mask"])
def test_weights_scale_the_surrogate_and_leave_the_kl_alone(mode):
    torch.manual_seed(0)
    logp = (TRAINER + 0.1 * torch.randn(2, 3)).requires_grad_(True)
    ref = TRAINER - 0.3
    adv = torch.tensor([1.0, -2.0])
    w = importance_weights(TRAINER, SAMPLER, MASK, mode, 2.0)
    loss, _ = grpo_loss(
        logp, TRAINER, ref, adv, MASK, beta=0.1, epsilon_low=0.2, epsilon_high=0.28, loss_type="bnpo", is_weights=w
    )
    ratio = torch.exp(logp - TRAINER)
    surrogate = -torch.min(ratio * adv[:, None], ratio.clamp(0.8, 1.28) * adv[:, None])
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    expected = ((w * surrogate + 0.1 * kl) * MASK).sum() / MASK.sum()  # TRL: IS weight first, then + beta * KL
    assert torch.allclose(loss, expected)


def test_mismatch_metrics_count_only_real_tokens():
    metrics = sampler_mismatch(TRAINER, SAMPLER, MASK, "token", cap=2.0)
    assert metrics["sampling/logp_diff/mean"].item() == pytest.approx((LN2 + 3 * LN2 + LN2) / 5)
    assert metrics["sampling/logp_diff/max"].item() == pytest.approx(3 * LN2)  # padding's diff of 9 is ignored
    assert metrics["sampling/frac_past_cap"].item() == pytest.approx(1 / 5)  # only the ratio of 8
    assert metrics["sampling/is_ratio/mean"].item() == pytest.approx((1 + 2 + 8 + 0.5 + 1) / 5)


@pytest.mark.parametrize(
    ("mode", "floor", "masked"),
    [
        ("token", 0.8, 0.0),  # truncation never drops a token
        ("token_mask", None, 1 / 5),  # the ratio of 8 among 5 real tokens
        ("token_mask", 0.8, 2 / 5),  # and the 0.5
        ("sequence_mask", None, 1 / 2),  # row 0's 16, among 2 sequences
        ("none", None, 0.0),
    ],
)
def test_masked_frac_counts_what_the_mode_removes(mode, floor, masked):
    metrics = sampler_mismatch(TRAINER, SAMPLER, MASK, mode, cap=3.0, floor=floor)
    assert metrics["sampling/masked_frac"].item() == pytest.approx(masked)
