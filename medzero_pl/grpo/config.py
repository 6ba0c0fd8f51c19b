"""`grpo.*`: the objective (group size, clipping, KL, aggregation, off-policy correction) and how a step runs it.

The choice fields take their values from the registries beside the math (`POLICY_LOSSES`, `AGGREGATIONS`,
`KL_ESTIMATORS`, `IMPORTANCE_SAMPLING_LEVELS`, `ADVANTAGE_SCALES`, `MULTI_REWARD_ADVANTAGES`, `CORRECTIONS`), so a new
variant is one entry there and the schema accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from medzero_pl.errors import expect
from medzero_pl.grpo.advantages import ADVANTAGE_SCALES, MULTI_REWARD_ADVANTAGES
from medzero_pl.grpo.correction import CORRECTIONS
from medzero_pl.grpo.kl import KL_ESTIMATORS
from medzero_pl.grpo.loss import AGGREGATIONS, TRL_LOSS_TYPES, grpo_loss
from medzero_pl.grpo.objectives import IMPORTANCE_SAMPLING_LEVELS, POLICY_LOSSES, objective_settings

LossType = Literal[tuple(AGGREGATIONS)]
PolicyLoss = Literal[tuple(POLICY_LOSSES)]
ImportanceSamplingLevel = Literal[tuple(IMPORTANCE_SAMPLING_LEVELS)]
KLEstimator = Literal[tuple(KL_ESTIMATORS)]
AdvantageScale = Literal[tuple(ADVANTAGE_SCALES)]
MultiRewardAdvantage = Literal[tuple(MULTI_REWARD_ADVANTAGES)]
Correction = Literal[tuple(CORRECTIONS)]


@dataclass
class DynamicSamplingConfig:
    """Train only on groups whose rewards differ, drawing more prompts to replace the others (DAPO; verl's
    `algorithm.filter_groups`). See medzero_pl/grpo/dynamic_sampling.py."""

    enable: bool = False
    """Drop groups without a spread of `metric` and draw more prompts until `data.prompts_per_step` informative
    groups are found or `max_extra_draws` extra batches were drawn."""
    metric: str = "total"
    """What must differ within a group: `total` (the weighted reward) or the name of one reward of the run."""
    max_extra_draws: int = 4
    """Extra batches of `data.prompts_per_step` prompts a step may draw (each one generated and scored); 0 only
    filters. When the cap is reached the step trains on the informative groups found (on the first draw's groups
    when none)."""
    correct_at: float = 1.0
    """A group without a spread counts as all-correct in the logs when its common `metric` value is at least this
    (an accuracy reward's full score), else as all-wrong."""
    warn_after: int = 5
    """Warn when this many consecutive steps reached the cap (0: never)."""

    def problems(self) -> list[str]:
        return [
            *expect(self.max_extra_draws >= 0, "max_extra_draws", self.max_extra_draws, ">= 0"),
            *expect(self.warn_after >= 0, "warn_after", self.warn_after, ">= 0 (0: never)"),
            *expect(bool(self.metric), "metric", self.metric, "total or a reward name"),
        ]


@dataclass
class GRPOConfig:
    """The GRPO objective and the shape of a step."""

    num_generations: int = 4
    """G: completions per prompt (a group). Must be at least 2."""
    max_completion_length: int = 128
    """Completion token budget; longer completions are cut and counted in `completions/clipped_ratio`."""
    temperature: float = 1.0
    """Sampling temperature; the trainer divides its logits by the same value."""
    top_p: float = 1.0
    """Nucleus sampling."""
    top_k: int = 0
    """Top-k sampling; 0 disables it."""
    num_iterations: int = 1
    """mu: optimisation passes over each generation batch (each pass is one optimizer step)."""
    micro_batch_size: int = 4
    """Completions per forward/backward; gradients accumulate over the generation batch."""
    loss_type: LossType = "dapo"
    """Aggregation of the per-token loss (TRL's names; the objective is `policy_loss`; medzero_pl/grpo/loss.py)."""
    policy_loss: PolicyLoss = "vanilla"
    """Objective: vanilla (clipped surrogate), cispo, sapo, vespo (TRL), gpg, clip_cov, kl_cov (verl). TRL's
    loss_type=cispo/vespo is policy_loss=cispo/vespo with loss_type=dapo, sapo is sapo with grpo. See
    medzero_pl/grpo/objectives.py."""
    policy_loss_kwargs: dict[str, float] = field(default_factory=dict)
    """The objective's own settings under TRL's / verl's names, e.g. {delta: 4.0} (vanilla: dual clip),
    {sapo_temperature_pos: 1.0, sapo_temperature_neg: 1.05}, {vespo_k_pos, vespo_lambda_pos, vespo_k_neg,
    vespo_lambda_neg}, {clip_cov_ratio, clip_cov_lb, clip_cov_ub}, {kl_cov_ratio, ppo_kl_coef}; unset ones keep
    the defaults of the implementation the objective follows."""
    importance_sampling_level: ImportanceSamplingLevel = "token"
    """Importance ratio per token, or one per sequence from the mean token log-ratio (sequence: GSPO, with
    loss_type=grpo). vanilla, cispo and sapo only."""
    scale_rewards: AdvantageScale = "group"
    """Advantage scaling: by the group's std, the batch's, or none (Dr. GRPO)."""
    multi_objective_aggregation: MultiRewardAdvantage = "sum_then_normalize"
    """Several rewards: sum_then_normalize (weighted sum, then group advantages) or normalize_then_sum (GDPO: each
    reward normalised within its group, summed with the weights, then standardised over the batch; needs
    scale_rewards=group)."""
    beta: float = 0.0
    """Weight of the KL term to the frozen reference; 0 loads no reference model."""
    kl_loss_type: KLEstimator = "k3"
    """KL estimator: k3 (TRL; verl's low_var_kl is k3 with kl_clamp=10), k1 (verl's kl), k2 (verl's mse) or abs."""
    use_bias_correction_kl: bool = False
    """Multiply the KL term by the importance ratio (DeepSeek-V3.2), so its gradient stays unbiased when the policy
    has moved from the sampler (num_iterations > 1). TRL's default is true; false keeps the GRPO paper's term."""
    epsilon_low: float = 0.2
    """Lower clip range of the importance ratio."""
    epsilon_high: float = 0.28
    """Upper clip range (clip-higher, DAPO)."""
    mask_truncated_completions: bool = False
    """Exclude completions that hit `max_completion_length` from the loss (DAPO)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight (entropy is always logged)."""
    top_entropy_quantile: float = 1.0
    """Train the objective only on this top share of each micro-batch's tokens by entropy ("Beyond the 80/20 rule":
    0.2); 1 keeps every token."""
    kl_clamp: float | None = None
    """Clamp the per-token k3 KL to [-kl_clamp, kl_clamp] as verl's `low_var_kl` does (10); None, as TRL, clamps
    nothing. Must be > 0 when set, and k3's only: verl clamps no other estimator."""
    off_policy_correction: Correction = "token"
    """Importance sampling against the sampler's log-probs when the engine returns them (vllm;
    medzero_pl/grpo/correction.py): token or sequence (weights truncated to [off_policy_floor, off_policy_cap]),
    token_mask or sequence_mask (weights outside it zeroed; TRL's default is sequence_mask), or none."""
    off_policy_cap: float = 2.0
    """Upper bound of the importance weight (verl's rollout_is_threshold; TRL's clip_max is 3.0)."""
    off_policy_floor: float | None = None
    """Lower bound of the importance weight (TRL's vllm_importance_sampling_clip_min); null: none."""
    shared_prompt_forward: bool = True
    """Training forward runs each prompt once and its G completions against its KV cache (same log-probs and
    gradients, fewer FLOPs; falls back to the plain forward under gradient checkpointing). See medzero_pl/model/forward.py."""
    fused_lm_head: bool = True
    """Score completions with the LM head fused into the log-softmax, a block of positions at a time: the
    `(rows, completion, vocab)` logits and their gradient are never held whole, for one more head matmul in
    backward. Llama, Mistral and Qwen 2/3 only; other models use full logits. See medzero_pl/model/lm_head.py."""
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    """Drop groups whose rewards are all equal and draw more prompts (off by default)."""

    def problems(self) -> list[str]:
        """Out-of-range values, each as `field=value: expected ...`."""
        return [
            *expect(
                self.num_generations >= 2, "num_generations", self.num_generations, "at least 2 (a group needs two)"
            ),
            *expect(self.max_completion_length >= 1, "max_completion_length", self.max_completion_length, "at least 1"),
            *expect(self.num_iterations >= 1, "num_iterations", self.num_iterations, "at least 1"),
            *expect(self.micro_batch_size >= 1, "micro_batch_size", self.micro_batch_size, "at least 1"),
            *expect(self.temperature > 0, "temperature", self.temperature, "> 0 (the trainer divides logits by it)"),
            *expect(0 < self.top_p <= 1, "top_p", self.top_p, "0 < top_p <= 1"),
            *expect(self.top_k >= 0, "top_k", self.top_k, ">= 0 (0 disables top-k)"),
            *expect(0 <= self.epsilon_low < 1, "epsilon_low", self.epsilon_low, "0 <= epsilon_low < 1"),
            *expect(self.epsilon_high >= 0, "epsilon_high", self.epsilon_high, ">= 0"),
            *expect(self.beta >= 0, "beta", self.beta, ">= 0"),
            *expect(self.kl_clamp is None or self.kl_clamp > 0, "kl_clamp", self.kl_clamp, "> 0, or null for no clamp"),
            *expect(
                self.kl_clamp is None or self.kl_loss_type == "k3",
                "kl_clamp",
                self.kl_clamp,
                f"null with grpo.kl_loss_type={self.kl_loss_type} (the clamp is verl's low_var_kl, i.e. k3's only)",
            ),
            *expect(
                0 <= self.top_entropy_quantile <= 1,
                "top_entropy_quantile",
                self.top_entropy_quantile,
                "0 <= value <= 1",
            ),
            *expect(
                self.importance_sampling_level == "token"
                or "importance_sampling_level" in objective_settings(self.policy_loss)[0],
                "importance_sampling_level",
                self.importance_sampling_level,
                f"token: policy_loss={self.policy_loss} has no sequence-level ratio",
            ),
            *expect(
                self.multi_objective_aggregation != "normalize_then_sum" or self.scale_rewards == "group",
                "scale_rewards",
                self.scale_rewards,
                "group (its default) with multi_objective_aggregation=normalize_then_sum, which scales each reward by "
                "its group std and the sum by the batch std",
            ),
            *expect(self.entropy_coef >= 0, "entropy_coef", self.entropy_coef, ">= 0 (a bonus weight)"),
            *expect(
                self.off_policy_cap >= 1,
                "off_policy_cap",
                self.off_policy_cap,
                ">= 1 (a weight cap below 1 shrinks every token)",
            ),
            *expect(
                self.off_policy_floor is None or 0 <= self.off_policy_floor <= 1,
                "off_policy_floor",
                self.off_policy_floor,
                "0 <= floor <= 1, or null (a floor above 1 raises or masks every token on which sampler and trainer "
                "agree)",
            ),
            *[f"dynamic_sampling.{p}" for p in self.dynamic_sampling.problems()],
            *self._objective_problems(),
        ]

    def _objective_problems(self) -> list[str]:
        """Run the configured loss once on a one-token batch, so the objective itself rejects settings it cannot take
        (unknown `policy_loss_kwargs`, out-of-range values); the fields it reads are checked above first."""
        reported = (
            not 0 <= self.top_entropy_quantile <= 1
            or (self.kl_clamp is not None and (self.kl_clamp <= 0 or self.kl_loss_type != "k3"))
            or (
                self.importance_sampling_level != "token"
                and "importance_sampling_level" not in objective_settings(self.policy_loss)[0]
            )
        )
        if reported:
            return []  # reported field by field
        one = torch.zeros(1, 1)
        try:
            grpo_loss(
                one,
                None,
                one,
                torch.zeros(1),
                torch.ones(1, 1),
                beta=self.beta,
                epsilon_low=self.epsilon_low,
                epsilon_high=self.epsilon_high,
                loss_type=self.loss_type,
                policy_loss=self.policy_loss,
                policy_loss_kwargs=self.policy_loss_kwargs,
                importance_sampling_level=self.importance_sampling_level,
                max_completion_length=1,
                num_active_tokens=1,
                entropy=one,
                top_entropy_quantile=self.top_entropy_quantile,
                kl_loss_type=self.kl_loss_type,
                kl_clamp=self.kl_clamp,
                use_bias_correction_kl=self.use_bias_correction_kl,
            )
        except (ValueError, TypeError) as err:
            return [f"policy_loss={self.policy_loss}: {err}"]
        return []


def loss_type_hint(value: str) -> str:
    """Shown when `grpo.loss_type` is refused: a TRL loss type that names an objective maps to two settings here."""
    if value in TRL_LOSS_TYPES and value not in AGGREGATIONS:
        policy_loss, aggregation = TRL_LOSS_TYPES[value]
        return (
            f" (an aggregation; TRL's loss_type={value} is grpo.policy_loss={policy_loss} grpo.loss_type={aggregation})"
        )
    return ""


def kl_loss_type_hint(value: str) -> str:
    """Shown when `grpo.kl_loss_type` is refused."""
    return " (verl's low_var_kl is k3 with grpo.kl_clamp=10)" if value == "low_var_kl" else ""
