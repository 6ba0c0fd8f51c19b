"""What a GRPO step logs about its rewards, throughput and timing: tensors and plain numbers in, a dict out.

Names follow TRL where TRL has the metric (`reward`, `reward_std`, `frac_reward_zero_std`, `rewards/<name>/mean`).
The loss, clip and KL metrics come from `grpo_loss`, the completion statistics from `callbacks/stats.py`, and the
learning rate from Lightning's `LearningRateMonitor`.
"""

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def step_metrics(
    rewards: Tensor,
    num_generations: int,
    zero_std: Tensor,
    completion_lengths: Tensor,
    per_function: Mapping[str, Sequence[float | None]],
    seconds: Mapping[str, float],
    logged: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """The scalars of one step.

    Args:
        rewards: `(B,)` weighted reward totals, prompt-major (`B = P * G`).
        num_generations: G, the group size.
        zero_std: `(P,)` bool, groups whose rewards are all equal.
        completion_lengths: `(B,)` completion tokens.
        per_function: reward name -> its value per completion (`None` where it does not apply).
        seconds: phase name (`generate`, `score`, `train`) -> wall time; the step's time is their sum.
        logged: what reward functions logged through TRL's `log_metric` (`rewards/diagnosis_judge/fallback_rate`).

    Returns:
        `reward`, `reward_std` (the mean of the groups' stds), `frac_reward_zero_std`, `tokens_per_second`
        (completion tokens per second of the whole step), `step_time`, `timing/<phase>` and `rewards/<name>/mean`
        (over the completions a reward applies to; absent if it applies to none).
    """
    step_time = sum(seconds.values())
    metrics = {
        "reward": rewards.mean(),
        "reward_std": rewards.view(-1, num_generations).std(dim=1).mean(),
        "frac_reward_zero_std": zero_std.float().mean(),
        "tokens_per_second": completion_lengths.float().sum() / max(step_time, 1e-9),
        "step_time": torch.tensor(step_time),
        **{f"timing/{phase}": torch.tensor(value) for phase, value in seconds.items()},
    }
    for name, values in per_function.items():
        present = [v for v in values if v is not None]
        if present:
            metrics[f"rewards/{name}/mean"] = torch.tensor(sum(present) / len(present))
    metrics.update({name: torch.tensor(float(value)) for name, value in (logged or {}).items()})
    return metrics
