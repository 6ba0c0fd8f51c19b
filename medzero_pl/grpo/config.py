"""`grpo.*`: the objective (group size, clipping, KL, aggregation, off-policy correction) and how a step runs it.

The choice fields take their values from the registries beside the math (`AGGREGATIONS`, `ADVANTAGE_SCALES`,
`CORRECTIONS`), so a new variant is one entry there and the schema accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medzero_pl.errors import expect
from medzero_pl.grpo.advantages import ADVANTAGE_SCALES
from medzero_pl.grpo.correction import CORRECTIONS
from medzero_pl.grpo.loss import AGGREGATIONS

LossType = Literal[tuple(AGGREGATIONS)]
AdvantageScale = Literal[tuple(ADVANTAGE_SCALES)]
Correction = Literal[tuple(CORRECTIONS)]


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
    """Aggregation of the per-token loss (medzero_pl/grpo/loss.py)."""
    scale_rewards: AdvantageScale = "group"
    """Advantage scaling: by the group's std, the batch's, or none (Dr. GRPO)."""
    beta: float = 0.0
    """Weight of the k3 KL to the frozen reference; 0 loads no reference model."""
    epsilon_low: float = 0.2
    """Lower clip range of the importance ratio."""
    epsilon_high: float = 0.28
    """Upper clip range (clip-higher, DAPO)."""
    mask_truncated_completions: bool = False
    """Exclude completions that hit `max_completion_length` from the loss (DAPO)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight (entropy is always logged)."""
    kl_clamp: float | None = None
    """Clamp the per-token k3 KL to [-kl_clamp, kl_clamp] as verl's `low_var_kl` does (10); None, as TRL, clamps
    nothing. Must be > 0 when set."""
    off_policy_correction: Correction = "token"
    """Truncated importance sampling against the sampler's log-probs, per token or per sequence, when the engine
    returns them (vllm; medzero_pl/grpo/correction.py)."""
    off_policy_cap: float = 2.0
    """Upper bound of the importance weight (verl's rollout_is_threshold; TRL's clip_max is 3.0)."""
    shared_prompt_forward: bool = True
    """Training forward runs each prompt once and its G completions against its KV cache (same log-probs and
    gradients, fewer FLOPs; falls back to the plain forward under gradient checkpointing). See medzero_pl/forward.py."""
    fused_lm_head: bool = True
    """Score completions with the LM head fused into the log-softmax, a block of positions at a time: the
    `(rows, completion, vocab)` logits and their gradient are never held whole, for one more head matmul in
    backward. Llama, Mistral and Qwen 2/3 only; other models use full logits. See medzero_pl/lm_head.py."""

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
            *expect(self.entropy_coef >= 0, "entropy_coef", self.entropy_coef, ">= 0 (a bonus weight)"),
            *expect(
                self.off_policy_cap >= 1,
                "off_policy_cap",
                self.off_policy_cap,
                ">= 1 (a weight cap below 1 shrinks every token)",
            ),
        ]
