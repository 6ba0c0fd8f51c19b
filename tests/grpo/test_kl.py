import math

import pytest
import torch

from medzero_pl.grpo import KL_ESTIMATORS, kl_penalty

LN = math.log


def test_k3_kl_hand_computed():
    # ref/pi = 0.25/0.5: d = -ln 2, exp(d) - d - 1 = 0.5 + ln 2 - 1. Equal policies give 0.
    kl = kl_penalty(torch.tensor([LN(0.5), LN(0.5)]), torch.tensor([LN(0.25), LN(0.5)]))
    torch.testing.assert_close(kl, torch.tensor([LN(2) - 0.5, 0.0]))


def test_k3_kl_clamp_reproduces_verl_low_var_kl():
    """verl `kl_penalty_forward`, `low_var_kl`/`k3` (core_algos.py L1890-1896 at b178a3cd): d = ref - logp clamped to
    [-20, 20], exp(d) - d - 1, clamped to [-10, 10]."""
    # d = ref - logp. d = -ln 2 -> 0.5 + ln 2 - 1 (unclamped); d = 12 -> e^12 - 13 > 10 -> 10; d = -30 -> d is first
    # clamped to -20 (verl's exp guard), e^-20 + 19 > 10 -> 10. Without a clamp the last two stay large.
    logp = torch.tensor([LN(0.5), 0.0, -1.0], requires_grad=True)
    ref = torch.tensor([LN(0.25), 12.0, -31.0])
    torch.testing.assert_close(kl_penalty(logp, ref, "k3", clamp=10.0), torch.tensor([LN(2) - 0.5, 10.0, 10.0]))
    torch.testing.assert_close(kl_penalty(logp, ref)[1:], torch.tensor([math.exp(12) - 13, math.exp(-30) + 29]))
    (grad,) = torch.autograd.grad(kl_penalty(logp, ref, "k3", clamp=10.0).sum(), logp)
    torch.testing.assert_close(grad, torch.tensor([0.5, 0.0, 0.0]))  # clamped tokens get no gradient, as in verl


@pytest.mark.parametrize(
    ("kl_loss_type", "value", "gradient"),
    [
        # log pi - log pi_ref = ln 2 (pi = 0.5, pi_ref = 0.25) and -ln 2 (pi = 0.25, pi_ref = 0.5).
        ("k1", [LN(2), -LN(2)], [1.0, 1.0]),  # verl kl / k1: x, gradient 1
        ("k2", [LN(2) ** 2 / 2, LN(2) ** 2 / 2], [LN(2), -LN(2)]),  # verl mse / k2: x^2 / 2, gradient x
        ("k3", [LN(2) - 0.5, 1 - LN(2)], [0.5, -1.0]),  # e^-x + x - 1, gradient 1 - e^-x
        ("abs", [LN(2), LN(2)], [1.0, -1.0]),  # verl abs: |x|, gradient sign(x)
    ],
)
def test_kl_estimators_hand_computed(kl_loss_type, value, gradient):
    logp = torch.tensor([LN(0.5), LN(0.25)], requires_grad=True)
    ref = torch.tensor([LN(0.25), LN(0.5)])
    kl = kl_penalty(logp, ref, kl_loss_type)
    torch.testing.assert_close(kl, torch.tensor(value))
    (grad,) = torch.autograd.grad(kl.sum(), logp)
    torch.testing.assert_close(grad, torch.tensor(gradient))


def test_the_clamp_is_k3s_only_as_in_verl_and_unknown_names_raise():
    """verl `kl_penalty_forward` (core_algos.py L1867-1902 at b178a3cd) returns `kl`/`k1` (L1879-1880), `abs`
    (L1882-1883) and `mse`/`k2` (L1885-1886) unclamped and clamps only `low_var_kl`/`k3` (L1890-1896): at d = +-30,
    verl's k1 is -+30, not a clamped -+20 or -+c. A clamp with another estimator is refused, not applied."""
    logp, ref = torch.tensor([0.0, 0.0]), torch.tensor([30.0, -30.0])
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3", "abs"}
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([-30.0, 30.0]))  # verl's kl: logp - ref
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([450.0, 450.0]))  # verl's mse
    torch.testing.assert_close(kl_penalty(logp, ref, "abs"), torch.tensor([30.0, 30.0]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k3", clamp=5.0), torch.tensor([5.0, 5.0]))
    for name in ("k1", "k2", "abs"):
        with pytest.raises(ValueError, match=f"kl_clamp=5.0 with kl_loss_type '{name}': expected None"):
            kl_penalty(logp, ref, name, clamp=5.0)
    with pytest.raises(ValueError, match="unknown kl_loss_type 'low_var_kl'; valid: k1, k2, k3, abs"):
        kl_penalty(logp, ref, "low_var_kl")
    with pytest.raises(ValueError, match="kl_clamp=0.0"):
        kl_penalty(logp, ref, "k3", clamp=0.0)
