"""Each policy objective on hand-computed numbers; TRL's are also checked against TRL itself in test_trl_parity.py,
verl's against verl's source in test_verl_parity.py."""

import math

import pytest
import torch

from medzero_pl.grpo import AGGREGATIONS, POLICY_LOSSES, objective_settings
from medzero_pl.grpo.objectives import IMPORTANCE_SAMPLING_LEVELS

LN = math.log
SHARED = {"importance_sampling_level": "token", "epsilon_low": 0.2, "epsilon_high": 0.28}


def run(name, logp, old_logp, advantages, mask, **kwargs):
    """One objective with the shared settings it declares (as `grpo_loss` passes them) and `kwargs`."""
    shared, _ = objective_settings(name)
    settings = {k: v for k, v in (SHARED | kwargs).items() if k in shared or k not in SHARED}
    return POLICY_LOSSES[name](logp, old_logp, advantages, mask, **settings)


def grad(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


def test_the_registry_holds_trls_and_verls_objectives_and_reads_their_settings_from_the_signatures():
    assert set(POLICY_LOSSES) == {"vanilla", "cispo", "sapo", "vespo", "gpg", "clip_cov", "kl_cov"}
    assert objective_settings("vanilla") == (
        ("importance_sampling_level", "epsilon_low", "epsilon_high", "is_weights"),
        ("delta",),
    )
    assert objective_settings("gpg") == (("is_weights",), ())
    assert objective_settings("vespo")[1] == ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg")


def test_sequence_level_log_weight_is_the_mean_token_log_ratio_over_the_mask():
    logp = torch.tensor([[0.2, 0.4, 9.0], [0.3, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    log_w = IMPORTANCE_SAMPLING_LEVELS["sequence"](logp, torch.zeros(2, 3), mask)
    torch.testing.assert_close(log_w, torch.tensor([[0.3], [0.3]]))
    torch.testing.assert_close(IMPORTANCE_SAMPLING_LEVELS["token"](logp, torch.zeros(2, 3), mask), logp)


def test_vanilla_delta_bounds_the_loss_of_a_negative_advantage_token():
    # Clip range [0.8, 1.28], delta 3. A = -1: loss = max(min(r, 3), clip(r)); A = +1: -min(r, clip(r)), unchanged.
    ratio = torch.tensor([[0.5, 1.0, 2.0, 5.0], [0.5, 1.0, 2.0, 5.0]])
    logp = ratio.log().requires_grad_(True)
    adv, mask = torch.tensor([[-1.0], [1.0]]), torch.ones(2, 4)
    out = run("vanilla", logp, torch.zeros(2, 4), adv, mask, delta=3.0)
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[0.8, 1.0, 2.0, 3.0], [-0.5, -1.0, -1.28, -1.28]]))
    # Only unclipped, unbounded tokens carry gradient d(-A r)/d logp = -A r.
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), torch.tensor([[0, 1.0, 2.0, 0], [-0.5, -1, 0, 0]]))
    plain = run("vanilla", logp, torch.zeros(2, 4), adv, mask)
    torch.testing.assert_close(plain.per_token_loss[0, 3], torch.tensor(5.0))
    with pytest.raises(ValueError, match="delta=0.9: expected > 1"):
        run("vanilla", logp, torch.zeros(2, 4), adv, mask, delta=0.9)


def test_cispo_caps_the_detached_weight_so_every_token_keeps_its_gradient():
    # r = 0.5, 2, 8 with cap 4: loss = -min(r, 4) A logp; the gradient is -min(r, 4) A, never cut.
    old = torch.full((1, 3), LN(0.1))
    logp = (old + torch.tensor([[LN(0.5), LN(2.0), LN(8.0)]])).requires_grad_(True)
    out = run("cispo", logp, old, torch.tensor([[1.0]]), torch.ones(1, 3), epsilon_high=4.0)
    torch.testing.assert_close(out.per_token_loss, -torch.tensor([[0.5, 2.0, 4.0]]) * logp.detach())
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), torch.tensor([[-0.5, -2.0, -4.0]]))
    torch.testing.assert_close(out.metrics["cispo_clip_ratio"], torch.tensor(1 / 3))
    with pytest.raises(ValueError, match="epsilon_high=0.28 is cispo's cap"):
        run("cispo", logp, old, torch.tensor([[1.0]]), torch.ones(1, 3), epsilon_high=0.28)


def test_sapo_gate_hand_computed():
    # loss = -(4 / tau) sigmoid(tau (r - 1)) A, tau = 1 for A > 0 and 1.05 otherwise.
    x = 0.5  # log r of token (0, 1)
    logp = torch.tensor([[0.0, x], [0.0, 0.0]], requires_grad=True)
    adv = torch.tensor([[1.0], [-1.0]])
    out = run("sapo", logp, torch.zeros(2, 2), adv, torch.ones(2, 2))
    r = math.exp(x)
    sig = 1 / (1 + math.exp(-(r - 1)))
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[-2.0, -4 * sig], [2 / 1.05, 2 / 1.05]]))
    # At r = 1 the gradient is the policy gradient -A whatever tau; away from 1 the gate fades it: -4 s (1 - s) r.
    g = grad(out.per_token_loss.sum(), logp)
    torch.testing.assert_close(g, torch.tensor([[-1.0, -4 * sig * (1 - sig) * r], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="expected > 0"):
        run("sapo", logp, torch.zeros(2, 2), adv, torch.ones(2, 2), sapo_temperature_neg=0.0)


def test_vespo_scales_reinforce_by_the_gamma_weight_of_the_sequence_ratio():
    # Row 0: A = 1, log w = 0.1 + 0.2 (the masked 5.0 ignored), k = 2, lambda = 3.
    # Row 1: A = -1, log w = -0.5, k = 3, lambda = 2. phi = exp(lambda + k log w - lambda w), detached.
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.5, 0.0, 0.0]], requires_grad=True)
    old = logp.detach() - torch.tensor([[0.1, 0.2, 5.0], [-0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([[1.0], [-1.0]])
    phi = torch.tensor([[math.exp(3 + 2 * 0.3 - 3 * math.exp(0.3))], [math.exp(2 - 1.5 - 2 * math.exp(-0.5))]])
    out = run("vespo", logp, old, adv, mask)
    torch.testing.assert_close(out.per_token_loss, -phi * adv * logp.detach())
    torch.testing.assert_close(grad((out.per_token_loss * mask).sum(), logp), -phi * adv * mask)
    torch.testing.assert_close(out.metrics["vespo/phi_seq_mean"], phi.mean())
    # Off-policy correction weights enter log w: a token weight of 2 adds ln 2 to row 0's log w.
    weights = torch.tensor([[2.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    corrected = run("vespo", logp, old, adv, mask, is_weights=weights)
    w0 = 0.3 + LN(2)
    torch.testing.assert_close(corrected.per_token_loss[0], -math.exp(3 + 2 * w0 - 3 * math.exp(w0)) * logp.detach()[0])


def test_gpg_is_reinforce_and_ignores_the_sampler():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    out = run("gpg", logp, torch.full((1, 2), -9.0), torch.tensor([[0.5]]), torch.ones(1, 2))
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[0.5, 1.0]]))
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), torch.tensor([[-0.5, -0.5]]))


# Two rows of three tokens, A = +2 and -2 (mean 0), log-probs with mean -14/6, so cov = A (logp - mean) is
# [[2.67, 0.67, -1.33], [-2.67, -0.67, 5.33]]: only (0, 0) lies in clip-cov's window (1, 5); the top 2 are (1, 2)
# and (0, 0).
COV_LOGP = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -2.0, -5.0]])
COV_ADV = torch.tensor([[2.0], [-2.0]])


def test_clip_cov_cuts_the_gradient_of_the_token_in_the_covariance_window():
    logp = COV_LOGP.clone().requires_grad_(True)
    out = run("clip_cov", logp, logp.detach(), COV_ADV, torch.ones(2, 3))  # mu = 1: r = 1, nothing clipped
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[0.0, -2.0, -2.0], [2.0, 2.0, 2.0]]))
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), torch.tensor([[0.0, -2.0, -2.0], [2.0, 2.0, 2.0]]))
    torch.testing.assert_close(out.metrics["clip_cov/detached_frac"], torch.tensor(1 / 6))


def test_clip_cov_leaves_already_clipped_tokens_and_draws_at_most_its_share():
    # (0, 0) at r = 1.5 with A > 0 is clipped by the surrogate already, so it is no candidate and nothing is cut.
    logp = COV_LOGP.clone().requires_grad_(True)
    old = logp.detach() - torch.tensor([[LN(1.5), 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = run("clip_cov", logp, old, COV_ADV, torch.ones(2, 3))
    assert out.metrics["clip_cov/detached_frac"] == 0
    torch.testing.assert_close(out.per_token_loss[0, 0], torch.tensor(-2 * 1.28))
    # A window holding 4 tokens and a share of 2 / 6 cuts exactly 2 of them, drawn with torch's global generator.
    torch.manual_seed(0)
    wide = run("clip_cov", logp, logp.detach(), COV_ADV, torch.ones(2, 3), clip_cov_ratio=0.34, clip_cov_lb=-1.0)
    cut = wide.per_token_loss == 0
    assert cut.sum() == 2 and not cut[1, 0] and not cut[1, 2]  # (1, 0) and (1, 2) lie outside (-1, 5)


def test_kl_cov_penalises_the_distance_to_the_sampler_of_the_top_covariance_tokens():
    # share 0.34 of 6 tokens -> the top 2 by covariance, (1, 2) and (0, 0), get + |log r| = 0.1. No clipping at all.
    logp = COV_LOGP.clone().requires_grad_(True)
    out = run("kl_cov", logp, logp.detach() - 0.1, COV_ADV, torch.ones(2, 3), kl_cov_ratio=0.34, ppo_kl_coef=1.0)
    r = math.exp(0.1)
    penalty = torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.1]])
    torch.testing.assert_close(out.per_token_loss, -COV_ADV * r + penalty)
    torch.testing.assert_close(grad(out.per_token_loss.sum(), logp), -COV_ADV * r + penalty / 0.1)
    torch.testing.assert_close(out.metrics["kl_cov/penalised_frac"], torch.tensor(2 / 6))


@pytest.mark.parametrize(
    ("name", "level"),
    [(name, "token") for name in sorted(set(POLICY_LOSSES) - {"clip_cov"})]
    + [(name, "sequence") for name in POLICY_LOSSES if "importance_sampling_level" in objective_settings(name)[0]],
)
def test_on_policy_every_objective_but_clip_cov_follows_the_policy_gradient(name, level):
    # mu = 1: r = 1 everywhere, so each objective's gradient is that of -A logp (clip-cov cuts some tokens).
    g = torch.Generator().manual_seed(2)
    logp = (torch.randn(4, 6, generator=g) - 2).requires_grad_(True)
    mask = (torch.rand(4, 6, generator=g) > 0.3).float()
    adv = torch.randn(4, 1, generator=g)
    out = run(name, logp * mask, (logp * mask).detach(), adv, mask, importance_sampling_level=level, epsilon_high=1.28)
    reinforce = AGGREGATIONS["bnpo"](-adv * logp * mask, mask)
    torch.testing.assert_close(grad(AGGREGATIONS["bnpo"](out.per_token_loss, mask), logp), grad(reinforce, logp))


@pytest.mark.parametrize("name", sorted(set(POLICY_LOSSES) - {"vespo"}))
def test_correction_weights_scale_the_loss_of_every_objective_but_vespo(name):
    g = torch.Generator().manual_seed(3)
    logp = torch.randn(3, 4, generator=g) - 2
    old = logp + 0.2 * torch.randn(3, 4, generator=g)
    adv, mask = torch.randn(3, 1, generator=g), torch.ones(3, 4)
    weights = torch.rand(3, 4, generator=g)
    torch.manual_seed(0)
    plain = run(name, logp, old, adv, mask, epsilon_high=1.28).per_token_loss
    torch.manual_seed(0)
    weighted = run(name, logp, old, adv, mask, epsilon_high=1.28, is_weights=weights).per_token_loss
    torch.testing.assert_close(weighted, weights * plain)
