"""The GRPO loss of one micro-batch: objective -> (entropy masking) -> KL term -> aggregation.

    loss_t = POLICY_LOSSES[policy_loss](logp, old_logp, A, mask, ...)      the objective, `objectives.py`
             * high_entropy_mask (top_entropy_quantile < 1 only)
             + beta * KL_ESTIMATORS[kl_loss_type](logp, ref_logp)          `kl.py`; times the ratio if bias-corrected
    loss   = AGGREGATIONS[loss_type](loss_t, mask) - entropy_coef * mean entropy

The default (`vanilla` objective, token ratio, k3, `dapo`) is TRL 1.16 `GRPOTrainer._compute_loss` with
`use_bias_correction_kl=False`. TRL's `loss_type` names one objective and one aggregation at once; here they are two
settings (`TRL_LOSS_TYPES`). `tests/grpo/test_trl_parity.py` checks each against TRL to 1e-5.

Departures from TRL:
- No accumulation or world-size factors. TRL divides `grpo`/`bnpo`/`dr_grpo` by the gradient-accumulation steps, and
  folds `num_processes * grad_accum / steps_per_generation` into the `dapo` normaliser. Here the caller does both:
  `GRPOModule._optimise` backpropagates each micro-batch's loss divided by the number of micro-batches of the
  generation batch (one optimizer step per generation batch, no Lightning accumulation) and DDP averages ranks, so
  for `dapo` it passes `num_active_tokens = active tokens of the generation batch (all ranks)
  / (world_size * micro-batches)`, the same normaliser TRL computes.
- Positions outside `mask` have their log-probs zeroed before any arithmetic (TRL's fused LM head already returns 0
  there), so a padded token's log-prob can never push `exp` to inf and turn a masked product into NaN.
- Metrics are masked means over this micro-batch, and the entropy quantile of `top_entropy_quantile` is taken over
  this micro-batch's tokens on this rank; TRL reduces both across ranks first.
- `use_bias_correction_kl` is off by default (TRL: on), so the default loss stays the GRPO paper's.
- Not ported: `clip_ratio/low_min|high_max`, `off_policy_mask_threshold` (DeepSeek-V3.2 sequence masking), adaptive
  entropy control.

verl's `agg_loss` (`core_algos.py` L1025-1080 at b178a3cd) names the same aggregations differently: `token-mean`
with its global batch info is `dapo` (without it, `bnpo`), `seq-mean-token-mean` is `grpo`, `seq-mean-token-sum` is
`luspo`, and `seq-mean-token-sum-norm` is `dr_grpo` up to a factor (see each function). Its `seq-mean-*` modes leave
a sequence whose mask is all 0 (e.g. a truncated completion under `mask_truncated_completions`) out of the mean;
TRL, and so this module, count it as a sequence with loss 0.
"""

from collections.abc import Callable, Collection, Mapping

import torch
from torch import Tensor

from medzero_pl.grpo.kl import kl_penalty
from medzero_pl.grpo.objectives import IMPORTANCE_SAMPLING_LEVELS, POLICY_LOSSES, objective_settings


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


def aggregate_grpo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
) -> Tensor:
    """GRPO paper: mean over sequences of each sequence's token mean (long completions get less weight per token).

    verl's `seq-mean-token-mean` (L1065-1071), except that verl leaves fully masked rows out of the mean (TRL and
    this function count them with loss 0); it is the aggregation verl's `gspo` and `sapo` always use.
    """
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
    """Dr. GRPO: token sum over `rows * max_completion_length`, a constant, so no length bias.

    verl's `seq-mean-token-sum-norm` (L1072-1077) divides the token sum by `loss_scale_factor` alone (default: the
    padded response length), not by the rows too, so its loss of a micro-batch is `rows` times this one: the same
    direction, a learning rate `rows` times larger.
    """
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

    Summed over micro-batches it is the token mean of the whole batch, whatever the split (TRL's default loss, and
    verl's `token-mean` with its global batch info, L1055-1058: the micro-batch's token sum over the active tokens of
    the global batch, times the data-parallel size that the gradient average across ranks divides out again).
    """
    if num_active_tokens is None:
        raise ValueError("loss_type 'dapo' needs num_active_tokens (active tokens of the whole generation batch)")
    normaliser = torch.as_tensor(num_active_tokens, dtype=per_token_loss.dtype, device=per_token_loss.device)
    return (per_token_loss * mask).sum() / normaliser.clamp(min=1.0)


def aggregate_luspo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
) -> Tensor:
    """LUSPO (length-unbiased sequence policy optimisation): mean over sequences of each sequence's token *sum*.

    With a sequence-level ratio (GSPO) every token of a sequence carries the same loss, so this scales each
    sequence's loss by its length. TRL 1.16 `loss_type="luspo"`; verl's `seq-mean-token-sum` (L1059-1064), except
    that verl leaves fully masked rows out of the mean (TRL and this function count them with loss 0).
    """
    return (per_token_loss * mask).sum(-1).mean()


AGGREGATIONS: dict[str, Callable[..., Tensor]] = {
    "grpo": aggregate_grpo,
    "bnpo": aggregate_bnpo,
    "dr_grpo": aggregate_dr_grpo,
    "dapo": aggregate_dapo,
    "luspo": aggregate_luspo,
}


TRL_LOSS_TYPES: dict[str, tuple[str, str]] = {
    "grpo": ("vanilla", "grpo"),
    "bnpo": ("vanilla", "bnpo"),
    "dr_grpo": ("vanilla", "dr_grpo"),
    "dapo": ("vanilla", "dapo"),
    "luspo": ("vanilla", "luspo"),
    "cispo": ("cispo", "dapo"),
    "sapo": ("sapo", "grpo"),
    "vespo": ("vespo", "dapo"),
}
"""TRL 1.16 `loss_type` -> `(policy_loss, loss_type)` here: TRL's name picks an objective and an aggregation at once."""


def high_entropy_mask(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """Active tokens whose entropy is at least the `1 - quantile` quantile of the active tokens' entropies.

    "Beyond the 80/20 rule" (Wang et al. 2025, arXiv 2506.01939) trains only on these forking tokens (rho = 0.2).
    0 keeps the highest-entropy tokens only, 1 all. TRL 1.16 `GRPOTrainer.get_high_entropy_mask`, on this micro-batch.
    `(B, T), (B, T) -> (B, T)` bool.
    """
    keep = mask.bool()
    active = entropy.detach()[keep].float()
    if active.numel() == 0:
        return torch.zeros_like(keep)
    threshold = torch.quantile(active, 1 - quantile)
    return (entropy.detach() >= threshold) & keep


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
    policy_loss: str = "vanilla",
    policy_loss_kwargs: Mapping[str, float] | None = None,
    importance_sampling_level: str = "token",
    is_weights: Tensor | None = None,
    max_completion_length: int | None = None,
    num_active_tokens: Tensor | int | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    top_entropy_quantile: float = 1.0,
    kl_loss_type: str = "k3",
    kl_clamp: float | None = None,
    use_bias_correction_kl: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO objective for one micro-batch, to minimise (see the module docstring for the composition).

    Args:
        logp: `(B, T)` log-probs of the completion tokens under the policy being trained (with grad).
        old_logp: `(B, T)` log-probs under the policy that sampled them, or None for `logp.detach()` (each batch used
            for one step, and no sampler log-probs).
        ref_logp: `(B, T)` reference-policy log-probs; needed if `beta != 0`, logged as `kl` whenever given.
        advantages: `(B,)` per-completion or `(B, T)` per-token advantages.
        mask: `(B, T)` 1 for completion tokens that count.
        beta: weight of the KL term; 0 disables it (no reference model needed).
        epsilon_low: the ratio is clipped below at `1 - epsilon_low` (objectives that clip).
        epsilon_high: the ratio is clipped above at `1 + epsilon_high` (DAPO clip-higher: 0.28 with low 0.2); for
            `cispo`, the cap on the ratio itself (TRL).
        loss_type: the aggregation, a key of `AGGREGATIONS`.
        policy_loss: the objective, a key of `POLICY_LOSSES`.
        policy_loss_kwargs: the objective's own hyperparameters (e.g. `delta` of `vanilla`); unset ones keep the
            defaults of the implementation it follows.
        importance_sampling_level: a key of `IMPORTANCE_SAMPLING_LEVELS`: the ratio of the objectives that take it
            (`objective_settings`) and of the bias-corrected KL term. (TRL accepts `sequence` with any loss type and
            warns for vespo; the config refuses it for objectives without a sequence-level ratio.)
        is_weights: `(B, T)` or `(B, 1)` detached off-policy correction weights against the sampler
            (`correction.importance_weights`); they scale the objective, not the KL term.
        max_completion_length: the generation limit, for `dr_grpo`.
        num_active_tokens: normaliser for `dapo`; see the module docstring.
        entropy: `(B, T)` token entropies; logged as `entropy` when given, needed for `top_entropy_quantile < 1`.
        entropy_coef: weight of the entropy bonus, a token mean over the tokens the objective trains on (TRL).
        top_entropy_quantile: keep the objective only on this top share of tokens by entropy (TRL; paper: 0.2).
        kl_loss_type: a key of `kl.KL_ESTIMATORS`.
        kl_clamp: clamp the KL estimate to [-kl_clamp, kl_clamp] as verl's `low_var_kl` (10); None as TRL. The logged
            `kl` is the value in the loss.
        use_bias_correction_kl: multiply the KL term by the importance ratio (with its gradient), so it estimates the
            reverse KL's gradient without bias once the policy has moved from the sampler (DeepSeek-V3.2, TRL's
            default).

    Returns:
        `(loss, metrics)`, metrics detached scalars: the objective's (e.g. `clip_ratio/*`), `kl` if `ref_logp`,
        `entropy` if `entropy`, `entropy_mask/kept_frac` if `top_entropy_quantile < 1`.
    """
    if loss_type not in AGGREGATIONS:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {', '.join(AGGREGATIONS)}")
    if policy_loss not in POLICY_LOSSES:
        raise ValueError(f"unknown policy_loss {policy_loss!r}; valid: {', '.join(POLICY_LOSSES)}")
    if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(
            f"unknown importance_sampling_level {importance_sampling_level!r}; "
            f"valid: {', '.join(IMPORTANCE_SAMPLING_LEVELS)}"
        )
    shared, own = objective_settings(policy_loss)
    unknown = sorted(set(policy_loss_kwargs or {}) - set(own))
    if unknown:
        raise ValueError(
            f"policy_loss_kwargs {unknown} are not settings of policy_loss {policy_loss!r}; "
            f"valid: {', '.join(own) or 'none'}"
        )
    if beta != 0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp; pass beta=0 to train without a reference model")
    if (entropy_coef != 0 or top_entropy_quantile < 1) and entropy is None:
        raise ValueError(f"entropy_coef={entropy_coef} / top_entropy_quantile={top_entropy_quantile} needs entropy")
    if not 0 <= top_entropy_quantile <= 1:
        raise ValueError(f"top_entropy_quantile={top_entropy_quantile}: expected 0 <= value <= 1")
    keep = mask.bool()  # (B, T)
    mask = mask.to(logp.dtype)  # (B, T)
    logp = torch.where(keep, logp, 0.0)  # (B, T)
    old_logp = logp.detach() if old_logp is None else torch.where(keep, old_logp.detach(), 0.0)  # (B, T)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # (B, 1)

    settings = {
        "importance_sampling_level": importance_sampling_level,
        "epsilon_low": epsilon_low,
        "epsilon_high": epsilon_high,
        "is_weights": is_weights,
    }
    objective = POLICY_LOSSES[policy_loss](
        logp, old_logp, advantages, mask, **{k: settings[k] for k in shared}, **(policy_loss_kwargs or {})
    )
    per_token_loss, metrics = objective.per_token_loss, dict(objective.metrics)  # (B, T) or (B, 1)
    trained = mask  # the tokens the objective (and the entropy bonus) acts on
    if top_entropy_quantile < 1:
        trained = mask * high_entropy_mask(entropy, keep, top_entropy_quantile)
        per_token_loss = per_token_loss * trained
        metrics["entropy_mask/kept_frac"] = masked_mean(trained, mask)
    if ref_logp is not None:
        kl = kl_penalty(logp, torch.where(keep, ref_logp.detach(), 0.0), kl_loss_type, kl_clamp)  # (B, T)
        if use_bias_correction_kl:
            kl = kl * torch.exp(IMPORTANCE_SAMPLING_LEVELS[importance_sampling_level](logp, old_logp, mask))
        metrics["kl"] = masked_mean(kl, mask)
        if beta != 0:  # skipped, not multiplied by 0: an inf KL would turn the loss into NaN
            per_token_loss = per_token_loss + beta * kl

    loss = AGGREGATIONS[loss_type](
        per_token_loss, mask, max_completion_length=max_completion_length, num_active_tokens=num_active_tokens
    )
    if entropy is not None:
        entropy = torch.where(keep, entropy, 0.0)
        metrics["entropy"] = masked_mean(entropy, mask)
        loss = loss - entropy_coef * masked_mean(entropy, trained)
    return loss, {name: value.detach() for name, value in metrics.items()}
