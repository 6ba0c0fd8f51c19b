"""Per-token estimates of KL(pi || pi_ref) on tokens sampled from pi, for the KL term of the loss.

With `d = log pi_ref(y_t) - log pi(y_t)` on a sampled token (Schulman, "Approximating KL divergence", 2020):

    k1  = -d                 unbiased; as a loss its expected gradient is 0     verl `kl` / `k1`
    k2  = d^2 / 2            biased, low variance; gradient of the forward KL   verl `mse` / `k2`
    k3  = exp(d) - d - 1     unbiased, >= 0; gradient of the reverse KL         TRL, the GRPO paper; verl `low_var_kl`
    abs = |d|                                                                    verl `abs`

Anchors: TRL 1.16 `GRPOTrainer._compute_loss` (k3, unclamped); verl `kl_penalty_forward` (`trainer/ppo/core_algos.py`
L1867-1902 at b178a3cd). verl's k1, k2 and abs are the plain formulas; its `low_var_kl`, also spelled `k3`, is k3
with `d` clamped to [-20, 20] and the estimate to [-10, 10], i.e. `kl_penalty(..., "k3", clamp=10)` here: verl has
no unclamped k3, TRL no clamped one. verl's `full` (KL of the whole next-token distributions) needs every logit, not
the sampled tokens' log-probs, and is not offered. Nor are verl's straight-through `+` variants (`kl_penalty`,
L1841-1864: the value of the named estimator, the gradient of k2): their gradient is `k2`'s, so `k2` trains the same
way and only the logged `kl` differs (and, under `use_bias_correction_kl`, the ratio's gradient, which is
proportional to the KL value).
"""

from collections.abc import Callable

import torch
from torch import Tensor


def k1(d: Tensor) -> Tensor:
    """`log pi - log pi_ref`."""
    return -d


def k2(d: Tensor) -> Tensor:
    """`(log pi - log pi_ref)^2 / 2`."""
    return 0.5 * d.square()


def k3(d: Tensor) -> Tensor:
    """`pi_ref / pi - log(pi_ref / pi) - 1`."""
    return torch.exp(d) - d - 1


def abs_kl(d: Tensor) -> Tensor:
    """`|log pi - log pi_ref|`."""
    return d.abs()


KL_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {"k1": k1, "k2": k2, "k3": k3, "abs": abs_kl}


def kl_penalty(logp: Tensor, ref_logp: Tensor, kl_loss_type: str = "k3", clamp: float | None = None) -> Tensor:
    """Per-token KL estimate `KL_ESTIMATORS[kl_loss_type]`.  `(B, T), (B, T) -> (B, T)`.

    `clamp` reproduces verl's `low_var_kl` and is k3's only: `d` is first clamped to [-20, 20] (verl's guard against
    `exp` overflow) and the estimate to [-clamp, clamp] (verl: 10), so one token far from the reference adds at most
    `clamp` and no gradient. None (TRL) clamps nothing. verl clamps no other estimator, so a clamp with another one
    is refused rather than silently giving a KL that neither TRL nor verl computes.
    """
    if kl_loss_type not in KL_ESTIMATORS:
        raise ValueError(f"unknown kl_loss_type {kl_loss_type!r}; valid: {', '.join(KL_ESTIMATORS)}")
    if clamp is not None and not clamp > 0:
        raise ValueError(f"kl_clamp={clamp} must be None or > 0")
    if clamp is not None and kl_loss_type != "k3":
        raise ValueError(
            f"kl_clamp={clamp} with kl_loss_type {kl_loss_type!r}: expected None (verl clamps only low_var_kl, i.e. k3)"
        )
    estimator = KL_ESTIMATORS[kl_loss_type]
    delta = ref_logp - logp
    if clamp is None:
        return estimator(delta)
    return estimator(delta.clamp(-20.0, 20.0)).clamp(-clamp, clamp)
