"""Off-policy correction for rollouts sampled by another engine (vLLM): truncated or masked importance sampling.

The sampler and the trainer compute the "same" policy with different kernels (and on GPU often different precision),
so a token's sampler log-prob `q` differs from the trainer's log-prob `p` of the weights that sampled it. Each token's
objective is re-weighted by a detached weight built from `exp(p - q)` (Yao et al., "Your efficient RL framework
secretly brings you off-policy RL training", 2025; masking: "MIS" in "When speed kills stability", 2025):

    token:          w_t = clip(exp(p_t - q_t), floor, cap)                      (B, T)   truncated (TIS)
    sequence:       w   = clip(exp(sum_t (p_t - q_t)), floor, cap)              (B, 1)   one weight per sequence
    token_mask:     w_t = exp(p_t - q_t) if floor <= it <= cap else 0           (B, T)   masked (MIS)
    sequence_mask:  w   = exp(sum_t (p_t - q_t)) if floor <= it <= cap else 0   (B, 1)

Anchor: TRL 1.16 `GRPOTrainer._generate_and_score_completions` (`vllm_importance_sampling_mode` token_truncate,
sequence_truncate, token_mask, sequence_mask; `vllm_importance_sampling_clip_min/max` are `floor`/`cap`). The weights
multiply the objective and not the KL term, as in TRL's `_compute_loss` (`grpo_loss(is_weights=...)`); `vespo`
folds them into its sequence weight instead.

Defaults: verl's `algorithm.rollout_correction` uses `rollout_is: token` with `rollout_is_threshold: 2.0`; TRL 1.16
defaults to `sequence_mask` with `clip_max=3.0`. We default to token level with cap 2.0 (verl) and no floor.
"""

from collections.abc import Callable

import torch
from torch import Tensor


def _token_ratio(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> Tensor:
    """`exp(p - q)` per token, 1 outside `mask`.  `(B, T)`, detached."""
    return torch.where(mask.bool(), trainer_logp.detach() - sampler_logp, 0.0).exp()


def _sequence_ratio(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> Tensor:
    """`exp(sum_t (p - q))` over each sequence's tokens.  `(B, 1)`, detached."""
    return torch.where(mask.bool(), trainer_logp.detach() - sampler_logp, 0.0).sum(dim=1, keepdim=True).exp()


def _masked(ratio: Tensor, cap: float, floor: float | None) -> Tensor:
    """`ratio` where it lies in [floor, cap], 0 elsewhere."""
    outside = (ratio > cap) | (ratio < floor if floor is not None else False)
    return ratio.masked_fill(outside, 0.0)


def token_tis(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float, floor: float | None = None
) -> Tensor:
    """Per-token truncated ratio `clip(exp(p - q), floor, cap)`, 1 outside `mask`. `(B, T) x3 -> (B, T)`, detached."""
    return _token_ratio(trainer_logp, sampler_logp, mask).clamp(min=floor, max=cap)


def sequence_tis(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float, floor: float | None = None
) -> Tensor:
    """One truncated ratio per sequence, `clip(exp(sum_t (p - q)), floor, cap)`. `(B, T) x3 -> (B, 1)`, detached."""
    return _sequence_ratio(trainer_logp, sampler_logp, mask).clamp(min=floor, max=cap)


def token_mis(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float, floor: float | None = None
) -> Tensor:
    """Per-token ratio, zeroed outside [floor, cap]: those tokens leave the objective. `-> (B, T)`, detached."""
    return _masked(_token_ratio(trainer_logp, sampler_logp, mask), cap, floor)


def sequence_mis(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float, floor: float | None = None
) -> Tensor:
    """Per-sequence ratio, zeroed outside [floor, cap]: the whole sequence leaves the objective. `-> (B, 1)`."""
    return _masked(_sequence_ratio(trainer_logp, sampler_logp, mask), cap, floor)


def no_correction(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cap: float, floor: float | None = None
) -> Tensor:
    """Weight 1 everywhere: train on the rollouts as if the trainer had sampled them. `-> (B, 1)`."""
    return torch.ones(trainer_logp.shape[0], 1, dtype=trainer_logp.dtype, device=trainer_logp.device)


CORRECTIONS: dict[str, Callable[..., Tensor]] = {
    "token": token_tis,
    "sequence": sequence_tis,
    "token_mask": token_mis,
    "sequence_mask": sequence_mis,
    "none": no_correction,
}


def importance_weights(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, mode: str, cap: float, floor: float | None = None
) -> Tensor:
    """The correction weights of `mode` (a key of `CORRECTIONS`), for `grpo_loss(is_weights=...)`.

    `(B, T) x3 -> (B, T)` for token modes, `(B, 1)` for the others; detached.
    """
    if mode not in CORRECTIONS:
        raise ValueError(f"unknown off-policy correction {mode!r}; valid: {', '.join(CORRECTIONS)}")
    return CORRECTIONS[mode](trainer_logp, sampler_logp, mask, cap, floor)


def sampler_mismatch(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, mode: str, cap: float, floor: float | None = None
) -> dict[str, Tensor]:
    """How far the sampler's log-probs are from the trainer's, over the tokens of `mask`, and what `mode` drops.

    Returns:
        `sampling/logp_diff/mean` and `/max` (of `|p - q|`, TRL's `sampling_logp_difference`),
        `sampling/is_ratio/mean` (of `exp(p - q)` before truncation), `sampling/frac_past_cap` (share of tokens
        whose ratio exceeds `cap`) and `sampling/masked_frac` (share of tokens, or of sequences for a sequence mode,
        whose weight is 0, i.e. that the correction removes from the loss). All detached scalars; 0 when `mask` is
        empty.
    """
    keep = mask.bool()
    diff = torch.where(keep, trainer_logp.detach() - sampler_logp, 0.0)  # (B, T)
    n = keep.sum().clamp(min=1)
    ratio = diff.exp()
    weights = importance_weights(trainer_logp, sampler_logp, mask, mode, cap, floor)  # (B, T) or (B, 1)
    counted = keep if weights.shape == keep.shape else keep.any(dim=1, keepdim=True)  # tokens or sequences
    return {
        "sampling/logp_diff/mean": diff.abs().sum() / n,
        "sampling/logp_diff/max": diff.abs().max() if diff.numel() else diff.new_zeros(()),
        "sampling/is_ratio/mean": torch.where(keep, ratio, 0.0).sum() / n,
        "sampling/frac_past_cap": ((ratio > cap) & keep).sum() / n,
        "sampling/masked_frac": ((weights == 0) & counted).sum() / counted.sum().clamp(min=1),
    }
