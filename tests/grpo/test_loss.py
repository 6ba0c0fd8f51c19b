import math

import pytest
import torch

from medzero_pl.grpo import (
    AGGREGATIONS,
    clip_fractions,
    clipped_surrogate,
    grpo_loss,
    k3_kl,
    mask_truncated_completions,
    masked_mean,
)

LN = math.log
# Shared by the aggregation tests: 2 rows, the first with 2 active tokens, the second with 4.
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])


def test_k3_kl_hand_computed():
    # ref/pi = 0.25/0.5: d = -ln 2, exp(d) - d - 1 = 0.5 + ln 2 - 1. Equal policies give 0.
    kl = k3_kl(torch.tensor([LN(0.5), LN(0.5)]), torch.tensor([LN(0.25), LN(0.5)]))
    torch.testing.assert_close(kl, torch.tensor([LN(2) - 0.5, 0.0]))


def test_k3_kl_clamp_reproduces_verl_low_var_kl():
    # d = ref - logp. d = -ln 2 -> 0.5 + ln 2 - 1 (unclamped); d = 12 -> e^12 - 13 > 10 -> 10; d = -30 -> d is first
    # clamped to -20 (verl's exp guard), e^-20 + 19 > 10 -> 10. Without a clamp the last two stay large.
    logp = torch.tensor([LN(0.5), 0.0, -1.0], requires_grad=True)
    ref = torch.tensor([LN(0.25), 12.0, -31.0])
    torch.testing.assert_close(k3_kl(logp, ref, clamp=10.0), torch.tensor([LN(2) - 0.5, 10.0, 10.0]))
    torch.testing.assert_close(k3_kl(logp, ref)[1:], torch.tensor([math.exp(12) - 13, math.exp(-30) + 29]))
    (grad,) = torch.autograd.grad(k3_kl(logp, ref, clamp=10.0).sum(), logp)
    torch.testing.assert_close(grad, torch.tensor([0.5, 0.0, 0.0]))  # clamped tokens get no gradient, as in verl


def test_grpo_loss_kl_clamp_bounds_the_penalty_and_rejects_non_positive_values():
    logp = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    ref = torch.tensor([[12.0, 0.0], [0.0, 0.0]])  # token (0, 0): k3 = e^12 - 13, clamped to 10
    loss, metrics = _loss(logp, ref_logp=ref, beta=0.1, kl_clamp=10.0)
    torch.testing.assert_close(metrics["kl"], torch.tensor(10.0 / 3))
    torch.testing.assert_close(loss, torch.tensor((-1 + 0.1 * 10.0 - 1 + 0.5) / 3))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="kl_clamp"):
            _loss(logp, ref_logp=ref, beta=0.1, kl_clamp=bad)


def test_clipped_surrogate_hand_computed():
    # Clip range [0.8, 1.28]. A > 0: min(r, clip r) caps gains at 1.28; A < 0: -max(r, clip r) floors r at 0.8.
    ratio = torch.tensor([[0.5, 0.9, 1.0, 1.5], [0.5, 0.9, 1.0, 1.5]])
    advantages = torch.tensor([[1.0], [-1.0]])
    loss = clipped_surrogate(ratio, advantages, epsilon_low=0.2, epsilon_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[-0.5, -0.9, -1.0, -1.28], [0.8, 0.9, 1.0, 1.5]]))


def test_clip_fractions_hand_computed():
    ratio = torch.tensor([[0.5, 0.9, 1.0, 1.5], [0.5, 0.9, 1.0, 1.5]])
    advantages = torch.tensor([[1.0], [-1.0]])
    # Low-clipped: (1, 0) only (r < 0.8, A < 0). High-clipped: (0, 3) only (r > 1.28, A > 0).
    stats = clip_fractions(ratio, advantages, torch.ones(2, 4), 0.2, 0.28)
    assert {k: v.item() for k, v in stats.items()} == {
        "clip_ratio/low_mean": 1 / 8,
        "clip_ratio/high_mean": 1 / 8,
        "clip_ratio/region_mean": 2 / 8,
    }
    masked = clip_fractions(ratio, advantages, torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]), 0.2, 0.28)
    torch.testing.assert_close(masked["clip_ratio/high_mean"], torch.tensor(0.0))
    torch.testing.assert_close(masked["clip_ratio/region_mean"], torch.tensor(1 / 7))


def test_masked_mean_empty_mask_is_zero():
    assert masked_mean(torch.ones(2, 3), torch.zeros(2, 3)).item() == 0.0


@pytest.mark.parametrize(
    ("loss_type", "kwargs", "expected"),
    [
        ("grpo", {}, (1.5 + 6.5) / 2),  # row means 3/2 and 26/4
        ("bnpo", {}, 29 / 6),  # 29 over 6 active tokens
        ("dr_grpo", {"max_completion_length": 5}, 29 / (2 * 5)),
        ("dapo", {"num_active_tokens": 12}, 29 / 12),
        ("dapo", {"num_active_tokens": torch.tensor(12)}, 29 / 12),
    ],
)
def test_aggregations_hand_computed(loss_type, kwargs, expected):
    torch.testing.assert_close(AGGREGATIONS[loss_type](PER_TOKEN, MASK, **kwargs), torch.tensor(expected))


def test_grpo_aggregation_counts_an_empty_row():
    # A fully masked row (e.g. a truncated completion) contributes 0 but still counts as a row, as in TRL.
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(AGGREGATIONS["grpo"](PER_TOKEN, mask), torch.tensor(1.5 / 2))


def test_dapo_is_invariant_to_micro_batching():
    g = torch.Generator().manual_seed(0)
    per_token = torch.randn(6, 5, generator=g, requires_grad=True)
    mask = (torch.rand(6, 5, generator=g) > 0.3).float()
    total = mask.sum()
    whole = AGGREGATIONS["dapo"](per_token, mask, num_active_tokens=total)
    parts = sum(
        AGGREGATIONS["dapo"](per_token[s], mask[s], num_active_tokens=total) for s in (slice(0, 2), slice(2, 6))
    )
    torch.testing.assert_close(parts, whole)
    torch.testing.assert_close(whole, AGGREGATIONS["bnpo"](per_token, mask))
    (g_whole,) = torch.autograd.grad(whole, per_token)
    (g_parts,) = torch.autograd.grad(parts, per_token)
    torch.testing.assert_close(g_parts, g_whole)


def test_aggregations_that_need_a_normaliser_raise():
    with pytest.raises(ValueError, match="max_completion_length"):
        AGGREGATIONS["dr_grpo"](PER_TOKEN, MASK)
    with pytest.raises(ValueError, match="num_active_tokens"):
        AGGREGATIONS["dapo"](PER_TOKEN, MASK)


def _loss(logp, **overrides):
    kwargs = dict(
        old_logp=None,
        ref_logp=None,
        advantages=torch.tensor([1.0, -0.5]),
        mask=torch.tensor([[1, 1], [1, 0]]),
        beta=0.0,
        epsilon_low=0.2,
        epsilon_high=0.28,
        loss_type="bnpo",
    )
    kwargs.update(overrides)
    return grpo_loss(logp, **kwargs)


def test_grpo_loss_on_policy_with_kl_hand_computed():
    # mu = 1: ratio = 1, so each active token costs -A. Token (0, 0) adds beta * (ln 2 - 0.5) of KL, whose gradient is
    # 1 - ref/pi = 0.5. bnpo divides by the 3 active tokens; the masked token (1, 1) gets no gradient.
    logp = torch.tensor([[LN(0.5), LN(0.5)], [LN(0.5), LN(0.25)]], requires_grad=True)
    ref = torch.tensor([[LN(0.25), LN(0.5)], [LN(0.5), LN(0.5)]])
    loss, metrics = _loss(logp, ref_logp=ref, beta=0.1)
    torch.testing.assert_close(loss, torch.tensor((-1 + 0.1 * (LN(2) - 0.5) - 1 + 0.5) / 3))
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[(-1 + 0.1 * 0.5) / 3, -1 / 3], [0.5 / 3, 0.0]]))
    torch.testing.assert_close(metrics["kl"], torch.tensor((LN(2) - 0.5) / 3))
    assert metrics["clip_ratio/region_mean"].item() == 0.0
    assert all(not m.requires_grad for m in metrics.values())


def test_grpo_loss_off_policy_clipping_hand_computed():
    # mu = 2: ratios 1.5 (clipped at 1.28, zero gradient) and 0.5 (unclipped for A > 0: gradient -r * A / 2).
    old = torch.tensor([[LN(0.4), LN(0.4)], [LN(0.4), LN(0.4)]])
    logp = torch.tensor([[LN(0.6), LN(0.2)], [LN(0.6), LN(0.4)]], requires_grad=True)
    loss, metrics = _loss(logp, old_logp=old, advantages=torch.tensor([1.0, -0.5]), loss_type="grpo")
    # Row 0: (-1.28 - 0.5) / 2. Row 1, A = -0.5, r = 1.5: -min(-0.75, -0.64) = 0.75 over 1 token.
    torch.testing.assert_close(loss, torch.tensor(((-1.28 - 0.5) / 2 + 0.75) / 2))
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.5 / 2 / 2], [0.75 / 2, 0.0]]))
    torch.testing.assert_close(metrics["clip_ratio/high_mean"], torch.tensor(1 / 3))
    torch.testing.assert_close(metrics["clip_ratio/low_mean"], torch.tensor(0.0))


def test_grpo_loss_entropy_bonus():
    logp = torch.tensor([[LN(0.5), LN(0.5)], [LN(0.5), LN(0.5)]], requires_grad=True)
    entropy = torch.tensor([[1.0, 2.0], [3.0, 100.0]], requires_grad=True)  # 100 is masked
    base, _ = _loss(logp)
    loss, metrics = _loss(logp, entropy=entropy, entropy_coef=0.1)
    torch.testing.assert_close(metrics["entropy"], torch.tensor(2.0))
    torch.testing.assert_close(loss, base - 0.1 * 2.0)
    loss.backward()
    torch.testing.assert_close(entropy.grad, torch.tensor([[-0.1 / 3] * 2, [-0.1 / 3, 0.0]]))


def test_grpo_loss_ignores_garbage_at_masked_positions():
    # A padded token's log-prob can be anything; unmasked, exp(ref - logp) = exp(1e4) = inf and inf * 0 = NaN.
    logp = torch.tensor([[LN(0.5), -1e4], [LN(0.5), -1e4]], requires_grad=True)
    old = torch.tensor([[LN(0.5), 0.0], [LN(0.5), 0.0]])
    mask = torch.tensor([[1, 0], [1, 0]])
    loss, metrics = _loss(logp, old_logp=old, ref_logp=torch.zeros(2, 2), beta=0.1, mask=mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert all(torch.isfinite(m) for m in metrics.values())
    assert logp.grad[:, 1].eq(0).all()


def test_grpo_loss_argument_errors():
    logp = torch.zeros(2, 2, requires_grad=True)
    with pytest.raises(ValueError, match="valid: grpo, bnpo, dr_grpo, dapo"):
        _loss(logp, loss_type="ppo")
    with pytest.raises(ValueError, match="ref_logp"):
        _loss(logp, beta=0.04)
    with pytest.raises(ValueError, match="needs entropy"):
        _loss(logp, entropy_coef=0.01)
    with pytest.raises(ValueError, match="num_active_tokens"):
        _loss(logp, loss_type="dapo")


def test_mask_truncated_completions():
    eos, pad = 2, 0
    ids = torch.tensor([[5, 2, 0], [5, 6, 7], [2, 0, 0], [5, 6, 2]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
    # Row 1 ran to the limit without EOS; row 3's EOS lies outside its mask, so it does not count.
    out = mask_truncated_completions(ids, mask, eos_token_ids=[eos, pad])
    assert out.tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert out.dtype == mask.dtype
    bool_out = mask_truncated_completions(ids, mask.bool(), eos_token_ids={eos})
    assert bool_out.dtype == torch.bool and bool_out.tolist() == out.bool().tolist()
