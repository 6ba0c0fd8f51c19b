"""GRPO math as pure torch functions: token log-probs, group advantages, clipped surrogate, KL, loss aggregation.

Imports torch only, so a LightningModule, a plain training loop and the tests all use the same code.
"""

from medzero_pl.grpo.advantages import ADVANTAGE_SCALES, GroupAdvantages, group_advantages
from medzero_pl.grpo.logprobs import (
    completion_logprobs,
    linear_logprobs_and_entropy,
    selective_log_softmax,
    token_entropy,
)
from medzero_pl.grpo.loss import (
    AGGREGATIONS,
    clip_fractions,
    clipped_surrogate,
    grpo_loss,
    k3_kl,
    mask_truncated_completions,
    masked_mean,
)

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "GroupAdvantages",
    "clip_fractions",
    "clipped_surrogate",
    "completion_logprobs",
    "group_advantages",
    "grpo_loss",
    "k3_kl",
    "linear_logprobs_and_entropy",
    "mask_truncated_completions",
    "masked_mean",
    "selective_log_softmax",
    "token_entropy",
]
