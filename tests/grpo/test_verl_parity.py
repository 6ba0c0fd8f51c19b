"""The verl objectives and aggregations against verl's own formulas, on hand-computed numbers.

Reference: `verl/trainer/ppo/core_algos.py` at commit b178a3cd of volcengine/verl (January 2026); each test names the
function and its lines there. verl is not installed, so each formula is written out by hand from that source, and
where we deliberately keep TRL's behaviour instead the test pins both numbers. The KL estimators (`kl_penalty_forward`)
are pinned in `test_kl.py`. verl has no GDPO advantage estimator in that file; ours (`normalize_then_sum`) follows TRL.
"""

import math

import pytest
import torch

from medzero_pl.grpo import AGGREGATIONS
from medzero_pl.grpo.objectives import clipped_surrogate
from tests.grpo.test_objectives import LN, grad, run  # the same call convention as grpo_loss


def test_vanilla_with_delta_is_verls_dual_clip_on_hand_numbers():
    """verl `compute_policy_loss_vanilla` (L1160-1250), dual clip L1229-1235: for A < 0 the loss is
    `min(-A c, max(-A r, -A clip(r)))`, for A > 0 `max(-A r, -A clip(r))`; clip range [0.8, 1.28], c = 3."""
    ratio = torch.tensor([[0.5, 1.0, 2.0, 5.0], [0.5, 1.0, 2.0, 5.0]])
    logp = ratio.log().requires_grad_(True)
    adv, mask = torch.tensor([[-1.0], [1.0]]), torch.ones(2, 4)
    out = run("vanilla", logp, torch.zeros(2, 4), adv, mask, delta=3.0)
    # A = -1: min(3, max(r, clip r)) = 0.8, 1, 2, 3. A = +1: -min(r, clip r) = -0.5, -1, -1.28, -1.28.
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[0.8, 1.0, 2.0, 3.0], [-0.5, -1.0, -1.28, -1.28]]))
    # verl's constants -A c and -A clip(r) carry no gradient; -A r carries -A r per unit of logp.
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), torch.tensor([[0, 1.0, 2.0, 0], [-0.5, -1, 0, 0]]))


def test_vanilla_with_delta_equals_verls_dual_clip_on_random_ratios_when_delta_exceeds_the_clip_range():
    """verl `compute_policy_loss_vanilla` (L1160-1250): `where(A < 0, min(-A c, clip1), clip1)` with
    `clip1 = max(-A r, -A clip(r))` (L1224-1235), against `clipped_surrogate(delta=c)`."""
    g = torch.Generator().manual_seed(0)
    ratio = torch.empty(8, 16).uniform_(0.1, 6.0, generator=g)
    adv = torch.randn(8, 1, generator=g)
    c = 3.0
    unclipped, clipped = -adv * ratio, -adv * ratio.clamp(0.8, 1.28)
    clip1 = torch.maximum(unclipped, clipped)
    verl = torch.where(adv < 0, torch.min(-adv * c, clip1), clip1)
    torch.testing.assert_close(clipped_surrogate(ratio, adv, 0.2, 0.28, delta=c), verl)


def test_a_delta_inside_the_clip_range_keeps_trls_bound_not_verls_dual_clip():
    """Deliberate difference. verl (L1229-1235) with c = 1.1, A = -1, r = 1.2: `min(1.1, max(1.2, clip 1.2))` = 1.1.
    TRL's `delta` bounds `r` before the clip: `max(min(1.2, 1.1), clip 1.2)` = 1.2, which we keep."""
    out = run(
        "vanilla", torch.tensor([[LN(1.2)]]), torch.zeros(1, 1), torch.tensor([[-1.0]]), torch.ones(1, 1), delta=1.1
    )
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[1.2]]))


def test_gspo_hand_computed_with_verls_per_token_construction():
    """verl `compute_policy_loss_gspo` (L1254-1326): log s_t = sg(mean_t log r_t) + logp_t - sg(logp_t) (L1291-1297),
    clipped without dual clip (L1303-1305), aggregated as `seq-mean-token-mean` whatever the mode (L1312-1314).
    Log-ratios 0.1 and 0.3: w = e^0.2 = 1.22 < 1.28, A = 1, so the loss is -w and each token's gradient -w / 2."""
    logp = torch.tensor([[0.1, 0.3]], requires_grad=True)
    out = run(
        "vanilla",
        logp,
        torch.zeros(1, 2),
        torch.tensor([[1.0]]),
        torch.ones(1, 2),
        importance_sampling_level="sequence",
    )
    loss = AGGREGATIONS["grpo"](out.per_token_loss, torch.ones(1, 2))
    w = math.exp(0.2)
    torch.testing.assert_close(loss, torch.tensor(-w))
    torch.testing.assert_close(grad(loss, logp), torch.tensor([[-w / 2, -w / 2]]))


def test_gspo_log_weight_above_10_is_where_verls_clamp_differs():
    """Deliberate difference. verl clamps log s_t at 10 (L1298), so a sequence with mean log-ratio 11 and A = -1 has
    loss e^10 and no gradient there; without a clamp (TRL) it is e^11 with gradient e^11 / T per token, unless `delta`
    bounds it (then delta and no gradient, as verl)."""
    logp = torch.tensor([[11.0, 11.0]], requires_grad=True)
    args = (logp, torch.zeros(1, 2), torch.tensor([[-1.0]]), torch.ones(1, 2))
    out = run("vanilla", *args, importance_sampling_level="sequence")
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[math.exp(11)]]))
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), torch.tensor([[math.exp(11) / 2] * 2]))
    bounded = run("vanilla", *args, importance_sampling_level="sequence", delta=3.0)
    torch.testing.assert_close(bounded.per_token_loss, torch.tensor([[3.0]]))
    torch.testing.assert_close(grad(bounded.per_token_loss.sum(), logp), torch.zeros(1, 2))


@pytest.mark.parametrize("aggregation", ["grpo", "bnpo"])
def test_sequence_level_vanilla_is_verls_gspo_construction_in_value_and_gradient(aggregation):
    """verl `compute_policy_loss_gspo` (L1254-1326) built per token on random numbers, against our sequence-level
    `vanilla`, both aggregated alike: same value and gradient."""
    g = torch.Generator().manual_seed(1)
    logp = (torch.randn(6, 5, generator=g) - 2).requires_grad_(True)
    old = logp.detach() + 3e-3 * torch.randn(6, 5, generator=g)
    mask = torch.ones(6, 5)
    mask[1, 3:] = mask[4, 1:] = 0
    adv = torch.randn(6, 1, generator=g)
    old = old * mask
    verl_logp = logp * mask
    seq = ((verl_logp - old) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    verl_ratio = torch.exp(verl_logp - verl_logp.detach() + seq.detach().unsqueeze(-1))
    eps_low, eps_high = 3e-4, 4e-4  # GSPO's clip range
    verl = torch.maximum(-adv * verl_ratio, -adv * verl_ratio.clamp(1 - eps_low, 1 + eps_high))
    verl_loss = AGGREGATIONS[aggregation](verl, mask)
    ours = run(
        "vanilla",
        logp * mask,
        old,
        adv,
        mask,
        importance_sampling_level="sequence",
        epsilon_low=eps_low,
        epsilon_high=eps_high,
    )
    assert ours.per_token_loss.shape == (6, 1)
    our_loss = AGGREGATIONS[aggregation](ours.per_token_loss, mask)
    assert 0 < ours.metrics["clip_ratio/region_mean"] < 1  # some sequences clip, some do not
    torch.testing.assert_close(our_loss, verl_loss)
    torch.testing.assert_close(grad(our_loss, logp), grad(verl_loss, logp))


def test_cispo_is_trls_cap_not_verls_two_sided_clip():
    """Deliberate difference. verl `compute_policy_loss_cispo` (L1722-1779) weighs by sg(clip(r, 1 - low, 1 + high))
    (L1753): r = 0.5, 2, 8 with low 0.2, high 3 gives 0.8, 2, 4. TRL's cap `epsilon_high` = 4 gives 0.5, 2, 4; the
    two agree when verl's clip_ratio_low >= 1 (no floor)."""
    old = torch.full((1, 3), LN(0.1))
    logp = (old + torch.tensor([[LN(0.5), LN(2.0), LN(8.0)]])).requires_grad_(True)
    out = run("cispo", logp, old, torch.tensor([[1.0]]), torch.ones(1, 3), epsilon_high=4.0)
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), -torch.tensor([[0.5, 2.0, 4.0]]))


def test_sapo_is_verls_gate():
    """verl `compute_policy_loss_sapo` (L1330-1411): gate sigmoid(tau (r - 1)) 4 / tau (L1364-1366), tau = tau_pos if
    A > 0 else tau_neg (L1378-1382; ActorConfig defaults 1.0 and 1.05), loss -gate A (L1388). r = e^0.5, A = -1."""
    r = math.exp(0.5)
    out = run("sapo", torch.tensor([[0.5]]), torch.zeros(1, 1), torch.tensor([[-1.0]]), torch.ones(1, 1))
    tau = 1.05
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[4 / tau / (1 + math.exp(-tau * (r - 1)))]]))


def test_gpg_is_verls_reinforce_loss():
    """verl `compute_policy_loss_gpg` (L1415-1447): -logp A (L1438), times the rollout weights (L1441-1442); the
    sampler's log-probs are not read."""
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    weights = torch.tensor([[1.0, 0.5]])
    out = run("gpg", logp, torch.full((1, 2), -9.0), torch.tensor([[0.5]]), torch.ones(1, 2), is_weights=weights)
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), torch.tensor([[-0.5, -0.25]]))


# Two rows of three tokens, A = +2 and -2, log-probs with mean -14/6 over the six: cov = (A - mean A)(logp - mean logp)
# is [[2.67, 0.67, -1.33], [-2.67, -0.67, 5.33]]. A fourth column is masked out: its -50 must not enter the means.
COV_LOGP = torch.tensor([[-1.0, -2.0, -3.0, -50.0], [-1.0, -2.0, -5.0, -50.0]])
COV_MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
COV_ADV = torch.tensor([[2.0], [-2.0]])


def test_clip_cov_candidates_bounds_and_draw_are_verls():
    """verl `compute_policy_loss_clip_cov` (L1451-1552): candidates are active tokens the clip leaves alone with
    lb < cov < ub, cov's means over the active tokens (L1517-1526); max(1, int(ratio * active)) of them are drawn by
    one `torch.randperm` over the candidates in row-major order (L1525-1531), and their loss is multiplied by 0
    (L1535-1539). Window (-1, 5) holds (0, 0), (0, 1), (1, 1); (0, 1) at r = 1.5 with A > 0 is clipped already, so the
    draw is between (0, 0) and (1, 1); ratio 0.2 of 6 tokens chooses one."""
    logp = COV_LOGP.clone().requires_grad_(True)
    old = logp.detach() - torch.tensor([[0.0, LN(1.5), 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    candidates = [(0, 0), (1, 1)]
    plain = torch.maximum(-COV_ADV * (logp - old).exp(), -COV_ADV * (logp - old).exp().clamp(0.8, 1.28))
    chosen_by_seed = []
    for seed in range(6):
        torch.manual_seed(seed)
        expected = candidates[torch.randperm(len(candidates))[0]]
        torch.manual_seed(seed)
        out = run("clip_cov", logp, old, COV_ADV, COV_MASK, clip_cov_ratio=0.2, clip_cov_lb=-1.0, clip_cov_ub=5.0)
        cut = torch.zeros(2, 4, dtype=torch.bool)
        cut[expected] = True
        torch.testing.assert_close(out.per_token_loss, plain.detach().masked_fill(cut, 0.0))
        torch.testing.assert_close(grad((out.per_token_loss * COV_MASK).sum(), logp)[cut], torch.zeros(1))
        torch.testing.assert_close(out.metrics["clip_cov/detached_frac"], torch.tensor(1 / 6))  # verl's pg_clipfrac
        chosen_by_seed.append(expected)
    assert set(chosen_by_seed) == set(candidates)  # the draw, not a fixed pick, decides
    torch.testing.assert_close(out.per_token_loss[0, 1], torch.tensor(-2 * 1.28))  # clipped, never a candidate


def test_clip_cov_draws_nothing_from_the_generator_without_candidates():
    """verl calls `torch.randperm` only when there is a candidate (L1529-1533): a batch without one leaves the global
    generator where it was, so later draws of a seeded run do not shift."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    out = run("clip_cov", COV_LOGP, COV_LOGP, COV_ADV, COV_MASK, clip_cov_lb=10.0, clip_cov_ub=20.0)
    assert out.metrics["clip_cov/detached_frac"] == 0
    torch.testing.assert_close(torch.rand(3), expected)


def test_kl_cov_penalises_the_top_covariance_valid_token_with_means_over_valid_tokens():
    """verl `compute_policy_loss_kl_cov` (L1556-1632): cov over the valid tokens only, centred on their means
    (L1604-1612); the max(1, int(n_valid * ratio)) largest get -A r + coef |log r| (L1601, L1613-1620), the rest
    -A r, unclipped. Ratio 0.2 of 6 valid tokens: one, (1, 2) at cov 5.33. Were the masked -50s counted, the means
    would move and (1, 3) would lead."""
    logp = COV_LOGP.clone().requires_grad_(True)
    out = run("kl_cov", logp, logp.detach() - 0.1, COV_ADV, COV_MASK, kl_cov_ratio=0.2, ppo_kl_coef=0.5)
    penalty = torch.zeros(2, 4)
    penalty[1, 2] = 0.5 * 0.1
    r = math.exp(0.1)
    torch.testing.assert_close(out.per_token_loss, -COV_ADV * r + penalty)
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), -COV_ADV * r + penalty / 0.1)


# Per-token losses of three rows; the third is fully masked (e.g. a truncated completion under DAPO's filtering).
AGG_LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
AGG_MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_aggregations_against_verls_agg_loss():
    """verl `agg_loss` (L1025-1080) without global batch info. Rows 0 and 1: token sums 6 and 4, means 2 and 4.
    `token-mean` (L1055-1058) 10 / 4 tokens = our `bnpo`, and `dapo` over those 4 tokens. `seq-mean-token-mean`
    (L1065-1071) 3 and `seq-mean-token-sum` (L1059-1064) 5 = our `grpo` and `luspo` on rows without a fully masked
    one. `seq-mean-token-sum-norm` (L1072-1077) 10 / 3 (the padded length) = 3 rows times our `dr_grpo` 10 / 9."""
    two, two_mask = AGG_LOSS[:2], AGG_MASK[:2]
    torch.testing.assert_close(AGGREGATIONS["bnpo"](AGG_LOSS, AGG_MASK), torch.tensor(2.5))
    torch.testing.assert_close(AGGREGATIONS["dapo"](AGG_LOSS, AGG_MASK, num_active_tokens=4), torch.tensor(2.5))
    torch.testing.assert_close(AGGREGATIONS["grpo"](two, two_mask), torch.tensor(3.0))
    torch.testing.assert_close(AGGREGATIONS["luspo"](two, two_mask), torch.tensor(5.0))
    torch.testing.assert_close(
        3 * AGGREGATIONS["dr_grpo"](AGG_LOSS, AGG_MASK, max_completion_length=3), torch.tensor(10 / 3)
    )


def test_a_fully_masked_row_counts_in_the_sequence_means_as_in_trl_not_verl():
    """Deliberate difference. verl's `seq-mean-*` modes leave a row whose mask is all 0 out of the mean (L1061-1063,
    L1068-1070): (2 + 4) / 2 = 3 and (6 + 4) / 2 = 5. TRL, whose names and parity these follow, divides by every
    row: (2 + 4 + 0) / 3 and (6 + 4 + 0) / 3."""
    torch.testing.assert_close(AGGREGATIONS["grpo"](AGG_LOSS, AGG_MASK), torch.tensor(2.0))
    torch.testing.assert_close(AGGREGATIONS["luspo"](AGG_LOSS, AGG_MASK), torch.tensor(10 / 3))
