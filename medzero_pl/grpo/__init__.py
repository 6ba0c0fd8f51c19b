"""GRPO math as pure torch functions: token log-probs, group advantages, objectives, KL, loss aggregation.

Imports torch only, so a LightningModule, a plain training loop and the tests all use the same code. Variants are
entries of name -> function registries: `POLICY_LOSSES` (objectives), `AGGREGATIONS`, `KL_ESTIMATORS`,
`IMPORTANCE_SAMPLING_LEVELS`, `ADVANTAGE_SCALES`, `MULTI_REWARD_ADVANTAGES`, `correction.CORRECTIONS`.
"""

from medzero_pl.grpo.advantages import (
    ADVANTAGE_SCALES,
    MULTI_REWARD_ADVANTAGES,
    GroupAdvantages,
    group_advantages,
    normalize_then_sum,
    reward_matrix,
    sum_then_normalize,
)
from medzero_pl.grpo.kl import KL_ESTIMATORS, kl_penalty
from medzero_pl.grpo.logprobs import (
    completion_logprobs,
    linear_logprobs_and_entropy,
    selective_log_softmax,
    token_entropy,
)
from medzero_pl.grpo.loss import (
    AGGREGATIONS,
    grpo_loss,
    high_entropy_mask,
    mask_truncated_completions,
    masked_mean,
)
from medzero_pl.grpo.objectives import (
    IMPORTANCE_SAMPLING_LEVELS,
    POLICY_LOSSES,
    ObjectiveOutput,
    clip_fractions,
    clipped_surrogate,
    objective_settings,
)

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "IMPORTANCE_SAMPLING_LEVELS",
    "KL_ESTIMATORS",
    "MULTI_REWARD_ADVANTAGES",
    "POLICY_LOSSES",
    "GroupAdvantages",
    "ObjectiveOutput",
    "clip_fractions",
    "clipped_surrogate",
    "completion_logprobs",
    "group_advantages",
    "grpo_loss",
    "high_entropy_mask",
    "kl_penalty",
    "linear_logprobs_and_entropy",
    "mask_truncated_completions",
    "masked_mean",
    "normalize_then_sum",
    "objective_settings",
    "reward_matrix",
    "selective_log_softmax",
    "sum_then_normalize",
    "token_entropy",
]
