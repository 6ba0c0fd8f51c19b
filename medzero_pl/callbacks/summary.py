"""One line about the model at the start of training, in place of Lightning's model summary table.

Lightning's table has a FLOPs column that is 0 for every module unless the LightningModule defines an
`example_input_array` (a GRPO module has no single input shape), and under ZeRO-3 it counts the local shards only.
"""

from __future__ import annotations

import logging

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters; a ZeRO-3 partitioned parameter counts its full size (`ds_numel`)."""
    total = trainable = 0
    for parameter in model.parameters():
        n = getattr(parameter, "ds_numel", parameter.numel())
        total += n
        trainable += n if parameter.requires_grad else 0
    return total, trainable


def _count(n: int) -> str:
    return f"{n / 1e9:,.2f} B" if n >= 1e9 else f"{n / 1e6:,.1f} M" if n >= 1e6 else f"{n:,}"


class ParameterSummary(Callback):
    """Logs the policy's class, parameter counts (total and trainable) and dtype once per fit, on rank 0."""

    @rank_zero_only
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        policy = getattr(pl_module, "policy", pl_module)
        total, trainable = parameter_counts(policy)
        dtype = next((p.dtype for p in policy.parameters()), None)
        share = f"{100 * trainable / total:.2f}%" if total else "-"
        log.info(
            "policy %s: %s parameters, %s trainable (%s), %s",
            type(policy).__name__,
            _count(total),
            _count(trainable),
            share,
            str(dtype).removeprefix("torch."),
        )
