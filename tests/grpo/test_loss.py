import math

import pytest
import torch

from medzero_pl.grpo import (
    AGGREGATIONS,
    clip_fractions,
    clipped_surrogate,
    grpo_loss,
    high_entropy_mask,
    mask_truncated_completions,
    masked_mean,
)

LN = math.log
# Shared by the aggregation tests: 2 rows, the first with 2 active tokens, the second with 4.
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])


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
        ("luspo", {}, (3 + 26) / 2),  # row sums, averaged over rows
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
    with pytest.raises(ValueError, match="valid: grpo, bnpo, dr_grpo, dapo, luspo"):
        _loss(logp, loss_type="ppo")
    with pytest.raises(ValueError, match="unknown policy_loss 'gspo'; valid: vanilla, cispo, sapo"):
        _loss(logp, policy_loss="gspo")
    with pytest.raises(
        ValueError, match=r"\['delta'\] are not settings of policy_loss 'sapo'; valid: sapo_temperature"
    ):
        _loss(logp, policy_loss="sapo", policy_loss_kwargs={"delta": 2.0})
    with pytest.raises(ValueError, match="unknown importance_sampling_level 'batch'"):
        _loss(logp, importance_sampling_level="batch")
    with pytest.raises(ValueError, match="top_entropy_quantile=0.2 needs entropy"):
        _loss(logp, top_entropy_quantile=0.2)
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


def test_high_entropy_mask_keeps_the_top_quantile_of_the_active_tokens():
    entropy = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    # Active entropies 1..5; the 0.6 quantile interpolates to 3.4, so 4 and 5 stay. The masked 100 never does.
    assert high_entropy_mask(entropy, mask, 0.4).tolist() == [[False] * 4, [True, True, False, False]]
    assert high_entropy_mask(entropy, mask, 0.0).tolist() == [[False] * 4, [False, True, False, False]]
    assert high_entropy_mask(entropy, mask, 1.0).tolist() == mask.bool().tolist()
    assert not high_entropy_mask(entropy, torch.zeros(2, 4), 0.5).any()


def test_entropy_masking_drops_the_objective_of_low_entropy_tokens_but_not_their_kl_or_count():
    # mu = 1, so each kept token costs -A; entropies 1, 3, 2 (50 masked) with quantile 0.5 keep (0, 1) and (1, 0).
    # Token (0, 0) keeps only its KL, beta (ln 2 - 0.5); bnpo still divides by all 3 active tokens. The entropy
    # bonus is the mean over the kept tokens, (3 + 2) / 2.
    logp = torch.tensor([[LN(0.5), LN(0.5)], [LN(0.5), LN(0.25)]], requires_grad=True)
    ref = torch.tensor([[LN(0.25), LN(0.5)], [LN(0.5), LN(0.5)]])
    entropy = torch.tensor([[1.0, 3.0], [2.0, 50.0]])
    loss, metrics = _loss(logp, ref_logp=ref, beta=0.1, entropy=entropy, entropy_coef=0.1, top_entropy_quantile=0.5)
    torch.testing.assert_close(loss, torch.tensor((0.1 * (LN(2) - 0.5) - 1 + 0.5) / 3 - 0.1 * 2.5))
    torch.testing.assert_close(metrics["entropy_mask/kept_frac"], torch.tensor(2 / 3))
    torch.testing.assert_close(metrics["entropy"], torch.tensor(2.0))  # logged over every active token


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_bias_corrected_kl_is_the_kl_times_the_ratio_with_its_gradient(level):
    # r = 0.5 / 0.25 = 2 (one token, so both levels agree); k3 at pi_ref / pi = 1/2 is ln 2 - 0.5. Corrected:
    # r k3, whose gradient in logp is r k3 + r (1 - pi_ref / pi) = 2 (ln 2 - 0.5) + 1 = 2 ln 2 (plain k3: 0.5).
    logp = torch.tensor([[LN(0.5)]], requires_grad=True)
    common = dict(
        old_logp=torch.tensor([[LN(0.25)]]),
        ref_logp=torch.tensor([[LN(0.25)]]),
        advantages=torch.zeros(1),
        mask=torch.ones(1, 1),
        beta=1.0,
        importance_sampling_level=level,
    )
    loss, metrics = _loss(logp, use_bias_correction_kl=True, **common)
    torch.testing.assert_close(loss, torch.tensor(2 * (LN(2) - 0.5)))
    torch.testing.assert_close(metrics["kl"], loss.detach())
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[2 * LN(2)]]))
    plain, _ = _loss(logp, **common)
    torch.testing.assert_close(plain, torch.tensor(LN(2) - 0.5))


def test_the_kl_term_uses_the_chosen_estimator():
    logp = torch.tensor([[LN(0.5), LN(0.5)], [LN(0.5), LN(0.5)]], requires_grad=True)
    ref = torch.tensor([[LN(0.25), LN(0.5)], [LN(0.5), LN(0.5)]])  # k2 at token (0, 0): (ln 2)^2 / 2
    loss, metrics = _loss(logp, ref_logp=ref, beta=0.1, kl_loss_type="k2")
    torch.testing.assert_close(metrics["kl"], torch.tensor(LN(2) ** 2 / 2 / 3))
    torch.testing.assert_close(loss, torch.tensor((-1 + 0.1 * LN(2) ** 2 / 2 - 1 + 0.5) / 3))


def test_grpo_loss_passes_an_objective_its_own_settings():
    # gpg reads no clip range and no ratio level; sapo's temperatures arrive through policy_loss_kwargs.
    logp = torch.tensor([[LN(0.5), LN(0.5)], [LN(0.5), LN(0.25)]], requires_grad=True)
    gpg, metrics = _loss(logp, policy_loss="gpg", importance_sampling_level="sequence")
    torch.testing.assert_close(gpg, torch.tensor((-LN(0.5) - LN(0.5) + 0.5 * LN(0.5)) / 3))  # -A logp
    assert set(metrics) == set()
    sapo, _ = _loss(logp, policy_loss="sapo", policy_loss_kwargs={"sapo_temperature_pos": 2.0})
    torch.testing.assert_close(sapo, torch.tensor((-2 * 2 / 2.0 + 0.5 * 2 / 1.05) / 3))  # r = 1: -(2 / tau) A
