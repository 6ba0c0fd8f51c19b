"""Keep a rollout engine's own copy of the weights (vLLM) equal to the policy's: the one caller of
`engine.update_weights` in a run.

Everything that generates asks `WeightSync.ensure_fresh` first: the training rollouts (`on_train_batch_start`),
Lightning's validation (`on_validation_start`) and the `Evaluation` callback, which finds this callback among
`trainer.callbacks`. The engine is synced unless it already holds the weights of the current `trainer.global_step`:
weights are pushed once per optimizer step however many of those ask, and again only when the engine has dropped
them (vLLM's sleep mode discards its weights, `engine.has_weights`). Nothing is known in a new process, so a resumed
run syncs before its first rollout. Checkpoint saving reads the policy and the optimizer only, so a save between two
steps changes nothing here.

The tensors come from `named_parameters_for_sync(trainer, module)`: the policy's full parameters, which under
DeepSpeed ZeRO-3 are gathered a bounded block at a time and consumed lazily by the engine, so only one block is ever
gathered at once. A LoRA policy's stream is merged on the way (`W + alpha/r * B @ A`, one layer held at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from medzero_pl.model.lora import sync_parameters
from medzero_pl.strategies import full_named_parameters

NamedTensors = Iterable[tuple[str, torch.Tensor]]


def named_parameters_for_sync(trainer: Trainer, module: LightningModule) -> NamedTensors:
    """The policy's full parameters, Hugging Face names; under ZeRO-3 gathered a bounded block at a time (see
    `medzero_pl.strategies.full_named_parameters`, a collective every rank takes part in). Tied weights appear once.
    A LoRA policy sends its merged weights under the base model's names (`medzero_pl.model.lora.sync_parameters`)."""
    return sync_parameters(module.policy, full_named_parameters(module.policy))


class WeightSync(Callback):
    """Push the policy's weights into `module.engine` before each rollout that follows a weight change.

    Args:
        source: `(trainer, module) -> iterable of (name, tensor)`; defaults to `named_parameters_for_sync` (tests
            pass one that records, or that gathers in smaller blocks).

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
        self.ensure_fresh(trainer, pl_module)
        for name, value in self._last.items():
            pl_module.log(f"weight_sync/{name}", value, on_step=True, on_epoch=False, batch_size=1)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.ensure_fresh(trainer, pl_module)

    def ensure_fresh(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Make the engine hold the policy's current weights, syncing only if it does not already (a collective
        under ZeRO-3: every rank calls it)."""
        engine = pl_module.engine
        if not engine.owns_weights:
            return
        if self._synced_step == trainer.global_step and engine.has_weights:
            self.skipped += 1
        else:
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


def run_weight_sync(trainer: Trainer) -> WeightSync:
    """The run's WeightSync, for callbacks that generate: they ask it for fresh weights instead of syncing."""
    for callback in trainer.callbacks:
        if isinstance(callback, WeightSync):
            return callback
    raise RuntimeError("generating with an engine that holds its own weights (vLLM) needs the WeightSync callback")
