"""Truncated importance sampling against the sampler's log-probs, on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from medzero_pl.grpo import grpo_loss
from medzero_pl.grpo.correction import corrected_advantages, sampler_mismatch, sequence_tis, token_tis

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


def test_weights_carry_no_gradient():
    trainer = TRAINER.clone().requires_grad_(True)
    assert not token_tis(trainer, SAMPLER, MASK, 2.0).requires_grad
    assert not corrected_advantages(torch.ones(2), trainer, SAMPLER, MASK, "sequence", 2.0).requires_grad


def test_corrected_advantages_scale_each_token_and_none_leaves_them():
    adv = torch.tensor([1.0, -2.0])
    assert torch.allclose(
        corrected_advantages(adv, TRAINER, SAMPLER, MASK, "token", 2.0), torch.tensor([[1, 2, 2], [-1, -2, -2.0]])
    )
    assert torch.equal(corrected_advantages(adv, TRAINER, SAMPLER, MASK, "none", 2.0), adv[:, None].expand(2, 3))
    with pytest.raises(ValueError, match="unknown off-policy correction"):
        corrected_advantages(adv, TRAINER, SAMPLER, MASK, "token_mask", 2.0)


def test_scaling_advantages_equals_weighting_the_surrogate_and_leaves_the_kl_alone():
    torch.manual_seed(0)
    logp = (TRAINER + 0.1 * torch.randn(2, 3)).requires_grad_(True)
    ref = TRAINER - 0.3
    adv = torch.tensor([1.0, -2.0])
    w = token_tis(TRAINER, SAMPLER, MASK, 2.0)
    corrected = corrected_advantages(adv, TRAINER, SAMPLER, MASK, "token", 2.0)
    loss, _ = grpo_loss(
        logp, TRAINER, ref, corrected, MASK, beta=0.1, epsilon_low=0.2, epsilon_high=0.28, loss_type="bnpo"
    )
    ratio = torch.exp(logp - TRAINER)
    surrogate = -torch.min(ratio * adv[:, None], ratio.clamp(0.8, 1.28) * adv[:, None])
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    expected = ((w * surrogate + 0.1 * kl) * MASK).sum() / MASK.sum()  # TRL: IS weight first, then + beta * KL
    assert torch.allclose(loss, expected)


def test_mismatch_metrics_count_only_real_tokens():
    metrics = sampler_mismatch(TRAINER, SAMPLER, MASK, cap=2.0)
    assert metrics["sampling/logp_diff/mean"].item() == pytest.approx((LN2 + 3 * LN2 + LN2) / 5)
    assert metrics["sampling/logp_diff/max"].item() == pytest.approx(3 * LN2)  # padding's diff of 9 is ignored
    assert metrics["sampling/frac_past_cap"].item() == pytest.approx(1 / 5)  # only the ratio of 8
    assert metrics["sampling/is_ratio/mean"].item() == pytest.approx((1 + 2 + 8 + 0.5 + 1) / 5)
