"""Keep a rollout engine's own copy of the weights (vLLM) equal to the policy's.

Two hooks, `on_train_batch_start` and `on_validation_start`: before rollouts are made, if an optimizer step changed the policy since the last
sync (or nothing has been synced in this process yet, e.g. right after a resume restored the policy from a
checkpoint), the policy's named parameters are streamed into `module.engine.update_weights`. Checkpoint saving reads
the policy and the optimizer only, so a save between two steps changes nothing here.

Where the tensors come from is one function, `named_parameters_for_sync(trainer, module)`: plain (unsharded)
parameters here. A sharding strategy (DeepSpeed ZeRO-3) passes its own `source` with the same signature that gathers
a bounded block of parameters at a time and yields them as `(name, tensor)` pairs; the engine consumes them lazily,
so only one block is ever gathered at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from medzero_pl.strategies import full_named_parameters

NamedTensors = Iterable[tuple[str, torch.Tensor]]


def named_parameters_for_sync(trainer: Trainer, module: LightningModule) -> NamedTensors:
    """The policy's full parameters, Hugging Face names; under ZeRO-3 gathered a bounded block at a time (see
    `medzero_pl.strategies.full_named_parameters`, a collective every rank takes part in). Tied weights appear once."""
    return full_named_parameters(module.policy)


class WeightSync(Callback):
    """Push the policy's weights into `module.engine` before each rollout that follows a weight change.

    Args:
        source: `(trainer, module) -> iterable of (name, tensor)`; defaults to `named_parameters_for_sync`.

    Logs `weight_sync/seconds` and `weight_sync/bytes` (of the latest sync) and `weight_sync/count` (syncs so far).
    """

    def __init__(self, source: Callable[[Trainer, LightningModule], NamedTensors] | None = None) -> None:
        self.source = source or named_parameters_for_sync
        self.count = 0
        self.skipped = 0
        self._synced_step: int | None = None  # trainer.global_step the engine's weights belong to (None: unknown)
        self._last: dict[str, float] = {}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if not pl_module.engine.owns_weights:
            return
        if self._synced_step == trainer.global_step and pl_module.engine.has_weights:
            self.skipped += 1
        else:
            self.sync(trainer, pl_module)
        for name, value in self._last.items():
            pl_module.log(f"weight_sync/{name}", value, on_step=True, on_epoch=False, batch_size=1)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.engine.owns_weights and (
            self._synced_step != trainer.global_step or not pl_module.engine.has_weights
        ):
            self.sync(trainer, pl_module)

    def sync(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Stream every parameter into the engine now, whatever changed."""
        moved = [0]
        start = time.perf_counter()
        pl_module.engine.update_weights(_counting(self.source(trainer, pl_module), moved))
        self.count += 1
        self._synced_step = trainer.global_step
        self._last = {"seconds": time.perf_counter() - start, "bytes": float(moved[0]), "count": float(self.count)}


def _counting(named: NamedTensors, moved: list[int]) -> Iterator[tuple[str, torch.Tensor]]:
    for name, tensor in named:
        moved[0] += tensor.numel() * tensor.element_size()
        yield name, tensor
