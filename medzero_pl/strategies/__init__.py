"""Training strategies by name, and the few things the rest of the code needs from whichever one runs.

`resolve_strategy(name)` turns `trainer.strategy` into what Lightning's `Trainer` takes: our ZeRO-3 choices become
`ZeRO3Strategy` objects, every other name (`auto`, `ddp`, ...) is passed to Lightning unchanged.

| name                                                     | what                                              |
|----------------------------------------------------------|---------------------------------------------------|
| `deepspeed_stage3` (alias `deepspeed_stage_3`)           | ZeRO-3: parameters, gradients, optimizer sharded  |
| `deepspeed_stage3_offload` (`deepspeed_stage_3_offload`) | ZeRO-3 with parameters and optimizer in CPU memory |

The helpers below work under any strategy, so `module.py` and callbacks never ask which one runs. Only
`strategies/deepspeed.py` imports `deepspeed`, and only when a ZeRO-3 strategy is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities import GradClipAlgorithmType

from medzero_pl.strategies.deepspeed import (
    ZeRO3Strategy,
    gathered_named_parameters,
    is_partitioned,
    zero_init_suspended,
)

STRATEGIES: dict[str, dict[str, Any]] = {
    "deepspeed_stage3": {"offload": False},
    "deepspeed_stage3_offload": {"offload": True},
}
ALIASES = {"deepspeed_stage_3": "deepspeed_stage3", "deepspeed_stage_3_offload": "deepspeed_stage3_offload"}
GATHER_NUMEL = 2**27
"""Elements gathered at once by `full_named_parameters` (512 MiB in fp32)."""


def resolve_strategy(name: str | Strategy, *, accelerator: str = "auto", gradient_clipping: float = 0.0) -> Any:
    """A Lightning strategy for `trainer.strategy`: ours by name, anything else as given.

    Args:
        name: A key of `STRATEGIES` or `ALIASES`, a Lightning strategy name, or a strategy object.
        accelerator: `trainer.accelerator`; on CPU (or `auto` without CUDA) DeepSpeed is told to use its CPU
            accelerator (`DS_ACCELERATOR=cpu`, gloo), unless the variable is already set.
        gradient_clipping: Max global gradient norm DeepSpeed clips to (`optim.grad_clip`).
    """
    if not isinstance(name, str):
        return name
    key = ALIASES.get(name, name)
    if key not in STRATEGIES:
        return name
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    return ZeRO3Strategy(gradient_clipping=gradient_clipping, **STRATEGIES[key])


def full_named_parameters(module: torch.nn.Module, max_numel: int = GATHER_NUMEL) -> Iterator[tuple[str, torch.Tensor]]:
    """Every `(name, full tensor)` of `module`, gathering sharded parameters at most `max_numel` elements at a time.

    Under ZeRO-3 this is a collective (every rank must consume the whole iterator) and each tensor is valid only
    until the next pair is requested: copy it (or load it into the engine) before moving on.
    """
    if is_partitioned(module):
        yield from gathered_named_parameters(module, max_numel)
    else:
        for name, param in module.named_parameters():
            yield name, param.detach()


def unsharded_init() -> AbstractContextManager[None]:
    """Build unsharded objects inside `configure_model` (a rollout engine's own copy of the model): Lightning runs
    that hook under DeepSpeed's `zero.Init` for ZeRO-3, which would partition every module created in it."""
    return zero_init_suspended()


def prepare_reference(strategy: Strategy, model: torch.nn.Module) -> torch.nn.Module:
    """Where the frozen reference lives: sharded in its own inference engine under ZeRO-3, else on the device."""
    model.requires_grad_(False).eval()
    if isinstance(strategy, ZeRO3Strategy):
        return strategy.prepare_reference(model)
    return model.to(strategy.root_device)


def begin_micro_batch(strategy: Strategy, last: bool) -> None:
    """Call before each micro-batch's forward of an optimizer step (`last`: the one before `clip_and_step`), so that
    the step's gradient is the sum over all its micro-batches. Needed under ZeRO-3 only (see
    `ZeRO3Strategy.begin_micro_batch`); other strategies accumulate in `.grad` by themselves."""
    if isinstance(strategy, ZeRO3Strategy):
        strategy.begin_micro_batch(last)


def set_resume_checkpoint(strategy: Strategy, ckpt_path: str | None) -> None:
    """Tell a ZeRO-3 strategy, before it builds DeepSpeed's engine, which checkpoint the run resumes (no-op otherwise)."""
    if isinstance(strategy, ZeRO3Strategy) and ckpt_path is not None:
        strategy.resume_from(ckpt_path)


def set_gradient_clipping(strategy: Strategy, max_norm: float) -> None:
    """Tell a ZeRO-3 strategy the module's clip norm before it builds DeepSpeed's config (no-op otherwise)."""
    if isinstance(strategy, ZeRO3Strategy):
        strategy.config["gradient_clipping"] = float(max_norm)


def clip_and_step(strategy: Strategy, model: torch.nn.Module, optimizer: Any, max_norm: float) -> torch.Tensor:
    """Clip the gradients to `max_norm` (0: no clipping), take the optimizer step, return the pre-clip global norm.

    DeepSpeed clips inside its own step, from `gradient_clipping` in its config (see `resolve_strategy`); under
    DDP the gradients are already all-reduced, so the local norm is the global one.
    """
    if isinstance(strategy, ZeRO3Strategy):
        if strategy.gradient_clipping != max_norm:
            raise ValueError(
                f"DeepSpeed clips to gradient_clipping={strategy.gradient_clipping} but the module asks for "
                f"{max_norm}: build the strategy with resolve_strategy(..., gradient_clipping=optim.grad_clip)"
            )
        optimizer.step()
        return strategy.global_grad_norm()
    # Lightning's own clipping (what `LightningModule.clip_gradients` calls), so precision plugins can hook it.
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if max_norm > 0:
        strategy.precision_plugin.clip_gradients(optimizer, max_norm, GradClipAlgorithmType.NORM)
    optimizer.step()
    return norm
