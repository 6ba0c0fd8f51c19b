"""GRPO policy loss: clipped importance-ratio surrogate, k3 KL to a reference policy, and loss aggregation.

Definitions follow TRL 1.16 `GRPOTrainer._compute_loss` (token-level importance sampling), checked to 1e-5 against it
by `tests/grpo/test_trl_parity.py`:

    ratio    = exp(logp - old_logp)                   (old_logp = logp.detach() when each batch is used once)
    loss_t   = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) + beta * k3(logp, ref_logp)
    loss     = AGGREGATIONS[loss_type](loss_t, mask) - entropy_coef * token-mean entropy

Clip-higher (`epsilon_high > epsilon_low`) is from DAPO (Yu et al. 2025); the k3 estimator is Schulman's
"Approximating KL divergence" (2020), as in the GRPO paper.

Departures from TRL:
- No accumulation or world-size factors. TRL divides `grpo`/`bnpo`/`dr_grpo` by the gradient-accumulation steps, and
  folds `num_processes * grad_accum / steps_per_generation` into the `dapo` normaliser. Here the caller does both:
  `GRPOModule._optimise` backpropagates each micro-batch's loss divided by the number of micro-batches of the
  generation batch (one optimizer step per generation batch, no Lightning accumulation) and DDP averages ranks, so
  for `dapo` it passes `num_active_tokens = active tokens of the generation batch (all ranks)
  / (world_size * micro-batches)`, the same normaliser TRL computes.
- Positions outside `mask` have their log-probs zeroed before any arithmetic (TRL's fused LM head already returns 0
  there), so a padded token's log-prob can never push `exp` to inf and turn a masked product into NaN.
- Metrics are masked means over this micro-batch; TRL reduces numerator and count across ranks first.
- The vLLM importance-sampling correction (truncated, per token or sequence) is not a term here: `correction.py`
  scales the advantages passed in. Not ported: `clip_ratio/low_min|high_max`, sequence-level importance ratios
  (GSPO), `delta` two-sided clipping, the KL bias correction, importance-sampling masking modes, off-policy masking,
  high-entropy token masking.
"""

from collections.abc import Callable, Collection

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `x` over positions where `mask` is set; 0 if none is.  `(B, T), (B, T) -> ()`."""
    mask = mask.to(torch.promote_types(mask.dtype, torch.float32))
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def mask_truncated_completions(
    completion_ids: Tensor, completion_mask: Tensor, eos_token_ids: Collection[int]
) -> Tensor:
    """Zero the mask of completions without an EOS token, i.e. cut off at the length limit (DAPO overlong filtering).

    A truncated completion's reward judges an unfinished answer, so DAPO and TRL's `mask_truncated_completions` drop it
    from the loss. Like TRL, pass the pad id among `eos_token_ids` if the engine can end a completion on it.

    Args:
        completion_ids: `(B, T)` token ids.
        completion_mask: `(B, T)` mask of real completion tokens.
        eos_token_ids: ids that end a completion.

    Returns:
        `(B, T)` mask, same dtype as `completion_mask`, with truncated rows zeroed.
    """
    eos = torch.as_tensor(list(eos_token_ids), device=completion_ids.device)  # (E,)
    is_eos = torch.isin(completion_ids, eos) & completion_mask.bool()  # (B, T)
    return completion_mask * is_eos.any(dim=1, keepdim=True).to(completion_mask.dtype)


def k3_kl(logp: Tensor, ref_logp: Tensor, clamp: float | None = None) -> Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) on tokens sampled from pi: `exp(d) - d - 1`, `d = ref - logp`.

    Unbiased, always >= 0, and its gradient is that of the true KL's token term. `(B, T), (B, T) -> (B, T)`.

    `clamp` reproduces verl's `kl_penalty(..., "low_var_kl")` (`verl/trainer/ppo/core_algos.py`): `d` is first
    clamped to [-20, 20] (verl's guard against `exp` overflow) and the estimate to [-clamp, clamp] (verl: 10), so one
    token far from the reference adds at most `clamp` and no gradient. None (TRL's k3) clamps nothing.
    """
    delta = ref_logp - logp
    if clamp is None:
        return torch.exp(delta) - delta - 1
    delta = delta.clamp(-20.0, 20.0)
    return (torch.exp(delta) - delta - 1).clamp(-clamp, clamp)


def clipped_surrogate(ratio: Tensor, advantages: Tensor, epsilon_low: float, epsilon_high: float) -> Tensor:
    """PPO clipped surrogate with DAPO's asymmetric range, as a per-token loss (to minimise).

    `(B, T), (B, 1) or (B, T) -> (B, T)`.
    """
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)  # (B, T)
    return -torch.min(ratio * advantages, clipped * advantages)


def clip_fractions(
    ratio: Tensor, advantages: Tensor, mask: Tensor, epsilon_low: float, epsilon_high: float
) -> dict[str, Tensor]:
    """Fractions of active tokens whose gradient the clip removes, TRL's `clip_ratio/*_mean` metrics.

    Low: ratio below `1 - epsilon_low` with A < 0; high: above `1 + epsilon_high` with A > 0; region: either.
    """
    low = (ratio < 1 - epsilon_low) & (advantages < 0)  # (B, T)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)  # (B, T)
    return {
        "clip_ratio/low_mean": masked_mean(low, mask),
        "clip_ratio/high_mean": masked_mean(high, mask),
        "clip_ratio/region_mean": masked_mean(low | high, mask),
    }


def aggregate_grpo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
) -> Tensor:
    """GRPO paper: mean over sequences of each sequence's token mean (long completions get less weight per token)."""
    per_seq = (per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # (B,)
    return per_seq.mean()


def aggregate_bnpo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
) -> Tensor:
    """Token mean over this micro-batch (TRL `bnpo`); depends on how the batch is split into micro-batches."""
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)


def aggregate_dr_grpo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
) -> Tensor:
    """Dr. GRPO: token sum over `rows * max_completion_length`, a constant, so no length bias."""
    if max_completion_length is None:
        raise ValueError("loss_type 'dr_grpo' needs max_completion_length")
    return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length)


def aggregate_dapo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
) -> Tensor:
    """DAPO token-level loss: token sum over the active tokens of the whole batch, not just this micro-batch.

    Summed over micro-batches it is the token mean of the whole batch, whatever the split (TRL's default loss).
    """
    if num_active_tokens is None:
        raise ValueError("loss_type 'dapo' needs num_active_tokens (active tokens of the whole generation batch)")
    normaliser = torch.as_tensor(num_active_tokens, dtype=per_token_loss.dtype, device=per_token_loss.device)
    return (per_token_loss * mask).sum() / normaliser.clamp(min=1.0)


AGGREGATIONS: dict[str, Callable[..., Tensor]] = {
    "grpo": aggregate_grpo,
    "bnpo": aggregate_bnpo,
    "dr_grpo": aggregate_dr_grpo,
    "dapo": aggregate_dapo,
}


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    beta: float,
    epsilon_low: float,
    epsilon_high: float,
    loss_type: str,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    kl_clamp: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO objective for one micro-batch, to minimise.

    Args:
        logp: `(B, T)` log-probs of the completion tokens under the policy being trained (with grad).
        old_logp: `(B, T)` log-probs under the policy that sampled them, or None for `logp.detach()` (each batch used
            for one step, and no sampler log-probs).
        ref_logp: `(B, T)` reference-policy log-probs; needed if `beta != 0`, logged as `kl` whenever given.
        advantages: `(B,)` per-completion or `(B, T)` per-token advantages.
        mask: `(B, T)` 1 for completion tokens that count.
        beta: weight of the k3 KL penalty; 0 disables it (no reference model needed).
        epsilon_low: the ratio is clipped below at `1 - epsilon_low`.
        epsilon_high: the ratio is clipped above at `1 + epsilon_high` (DAPO clip-higher: 0.28 with low 0.2).
        loss_type: a key of `AGGREGATIONS`.
        max_completion_length: the generation limit, for `dr_grpo`.
        num_active_tokens: normaliser for `dapo`; see the module docstring.
        entropy: `(B, T)` token entropies; logged as `entropy` when given.
        entropy_coef: weight of the entropy bonus, a token mean over `mask` (TRL's definition, for every loss_type).
        kl_clamp: clamp the k3 estimate to [-kl_clamp, kl_clamp] as verl's `low_var_kl` (10); None as TRL (see
            `k3_kl`). The logged `kl` is the clamped value, as in verl.

    Returns:
        `(loss, metrics)`, metrics detached scalars: `clip_ratio/low_mean`, `clip_ratio/high_mean`,
        `clip_ratio/region_mean`, plus `kl` if `ref_logp` and `entropy` if `entropy` is given.
    """
    if loss_type not in AGGREGATIONS:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {', '.join(AGGREGATIONS)}")
    if beta != 0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp; pass beta=0 to train without a reference model")
    if entropy_coef != 0 and entropy is None:
        raise ValueError(f"entropy_coef={entropy_coef} needs entropy")
    if kl_clamp is not None and not kl_clamp > 0:
        raise ValueError(f"kl_clamp={kl_clamp} must be None or > 0")
    keep = mask.bool()  # (B, T)
    mask = mask.to(logp.dtype)  # (B, T)
    logp = torch.where(keep, logp, 0.0)  # (B, T)
    old_logp = logp.detach() if old_logp is None else torch.where(keep, old_logp.detach(), 0.0)  # (B, T)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # (B, 1)

    ratio = torch.exp(logp - old_logp)  # (B, T)
    per_token_loss = clipped_surrogate(ratio, advantages, epsilon_low, epsilon_high)  # (B, T)
    metrics = clip_fractions(ratio, advantages, mask, epsilon_low, epsilon_high)
    if ref_logp is not None:
        kl = k3_kl(logp, torch.where(keep, ref_logp.detach(), 0.0), kl_clamp)  # (B, T)
        metrics["kl"] = masked_mean(kl, mask)
        if beta != 0:  # skipped, not multiplied by 0: an inf KL would turn the loss into NaN
            per_token_loss = per_token_loss + beta * kl

    loss = AGGREGATIONS[loss_type](
        per_token_loss, mask, max_completion_length=max_completion_length, num_active_tokens=num_active_tokens
    )
    if entropy is not None:
        mean_entropy = masked_mean(torch.where(keep, entropy, 0.0), mask)
        metrics["entropy"] = mean_entropy
        loss = loss - entropy_coef * mean_entropy
    return loss, {name: value.detach() for name, value in metrics.items()}
