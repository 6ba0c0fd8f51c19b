"""Off-policy correction for rollouts sampled by another engine (vLLM): truncated importance sampling (TIS).

The sampler and the trainer compute the "same" policy with different kernels (and on GPU often different precision),
so a token's sampler log-prob `q` differs from the trainer's log-prob `p` of the weights that sampled it. TIS
(Yao et al., "Your efficient RL framework secretly brings you off-policy RL training", 2025) re-weights each token's
policy-gradient term by the truncated, detached ratio:

    token:     w_t = min(exp(p_t - q_t), cap)                (B, T)
    sequence:  w_t = min(exp(sum_t (p_t - q_t)), cap)         (B, 1), the same weight for every token of a sequence

The weight multiplies the clipped surrogate and not the KL term (TRL 1.16 `_compute_loss` applies its
`importance_sampling_ratio` before adding `beta * kl`). Because `w > 0`, `w * -min(r A, clip(r) A)` equals
`-min(r (w A), clip(r) (w A))`: the correction is applied by scaling per-token advantages, and `grpo_loss` stays as is.

Defaults: verl's `algorithm.rollout_correction` uses `rollout_is: token` with `rollout_is_threshold: 2.0`;
TRL 1.16 defaults to `vllm_importance_sampling_mode="sequence_mask"` with `clip_max=3.0` (and offers
`token_truncate` / `sequence_truncate`). We default to token level with cap 2.0 (verl). Masking modes (zero weight
past the cap) are not implemented.
"""

from collections.abc import Callable

import torch
from torch import Tensor


def token_tis(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float) -> Tensor:
    """Per-token truncated ratio `min(exp(p - q), cap)`, 1 outside `mask`. `(B, T) x3 -> (B, T)`, detached."""
    diff = torch.where(mask.bool(), trainer_logp.detach() - sampler_logp, 0.0)  # (B, T)
    return diff.exp().clamp(max=cap)


def sequence_tis(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float) -> Tensor:
    """One truncated ratio per sequence, `min(exp(sum_t (p - q)), cap)`. `(B, T) x3 -> (B, 1)`, detached."""
    diff = torch.where(mask.bool(), trainer_logp.detach() - sampler_logp, 0.0)  # (B, T)
    return diff.sum(dim=1, keepdim=True).exp().clamp(max=cap)  # (B, 1)


def no_correction(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float) -> Tensor:
    """Weight 1 everywhere: train on the rollouts as if the trainer had sampled them. `-> (B, 1)`."""
    return torch.ones(trainer_logp.shape[0], 1, dtype=trainer_logp.dtype, device=trainer_logp.device)


CORRECTIONS: dict[str, Callable[[Tensor, Tensor, Tensor, float], Tensor]] = {
    "token": token_tis,
    "sequence": sequence_tis,
    "none": no_correction,
}


def corrected_advantages(
    advantages: Tensor, trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, level: str, cap: float
) -> Tensor:
    """Advantages scaled by the TIS weights of `level` (a key of `CORRECTIONS`). `(B,) or (B, T) -> (B, T)`."""
    if level not in CORRECTIONS:
        raise ValueError(f"unknown off-policy correction {level!r}; valid: {', '.join(CORRECTIONS)}")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # (B, 1)
    weights = CORRECTIONS[level](trainer_logp, sampler_logp, mask, cap)  # (B, T) or (B, 1)
    return (advantages * weights).expand_as(trainer_logp)


def sampler_mismatch(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float) -> dict[str, Tensor]:
    """How far the sampler's log-probs are from the trainer's, over the tokens of `mask`.

    Returns:
        `sampling/logp_diff/mean` and `/max` (of `|p - q|`, TRL's `sampling_logp_difference`),
        `sampling/is_ratio/mean` (of `exp(p - q)` before truncation) and `sampling/frac_past_cap` (share of tokens
        whose ratio exceeds `cap`). All detached scalars; 0 when `mask` is empty.
    """
    keep = mask.bool()
    diff = torch.where(keep, trainer_logp.detach() - sampler_logp, 0.0)  # (B, T)
    n = keep.sum().clamp(min=1)
    ratio = diff.exp()
    return {
        "sampling/logp_diff/mean": diff.abs().sum() / n,
        "sampling/logp_diff/max": diff.abs().max() if diff.numel() else diff.new_zeros(()),
        "sampling/is_ratio/mean": torch.where(keep, ratio, 0.0).sum() / n,
        "sampling/frac_past_cap": ((ratio > cap) & keep).sum() / n,
    }
