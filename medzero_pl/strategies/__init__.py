"""Training strategies by name, and the few things the rest of the code needs from whichever one runs.

`resolve_strategy(name)` turns `trainer.strategy` into what Lightning's `Trainer` takes: our ZeRO-3 choices become
`ZeRO3Strategy` objects, every other name (`auto`, `ddp`, ...) is passed to Lightning unchanged.

| name                                                     | what                                              |
|----------------------------------------------------------|---------------------------------------------------|
| `deepspeed_stage3` (alias `deepspeed_stage_3`)           | ZeRO-3: parameters, gradients, optimizer sharded  |
| `deepspeed_stage3_offload` (`deepspeed_stage_3_offload`) | ZeRO-3 with parameters and optimizer in CPU memory |

The helpers below work under any strategy, so `module.py` and callbacks never ask which one runs. Only
`strategies/deepspeed.py` imports `deepspeed`, and only when a ZeRO-3 strategy is used.

Precision: AdamW must step float32 weights. An update of 2e-5 to a bf16 weight of 0.02 (bf16 values are 1.2e-4 apart
there) rounds away. DeepSpeed keeps float32 master copies of bf16 parameters itself; every other strategy steps the
parameters it is given, so `trained_dtype` loads the policy in float32 there and lets a `*-mixed` precision compute
in bf16 under autocast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import DeepSpeedStrategy, Strategy, StrategyRegistry
from lightning.pytorch.utilities import GradClipAlgorithmType

from medzero_pl.errors import UserError
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
MIXED_PRECISIONS = ("bf16-mixed", "16-mixed", "bf16", "16")
"""Lightning precisions that compute in half precision under autocast and leave the parameters' dtype alone."""
FULL_PRECISIONS = ("32-true", "32", "64-true", "64")
"""Lightning precisions that compute in the parameters' dtype (64: Lightning casts them to float64)."""
HALF_PRECISIONS = ("bf16-true", "16-true", "transformer-engine", "transformer-engine-float16")
"""Lightning precisions that cast the parameters themselves to half precision."""


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


def keeps_master_weights(strategy: str | Strategy) -> bool:
    """Whether the strategy's optimizer steps float32 master copies of half-precision parameters: DeepSpeed's do.

    ZeRO-3 (deepspeed/runtime/zero/stage3.py, `DeepSpeedZeroOptimizer_Stage3`): `_create_fp32_partitions` copies each
    rank's bf16 partition to float32 (the dtype `_configure_master_weights` in runtime/base_optimizer.py picks unless
    the DeepSpeed config sets `bf16_master_weights_and_grads`), the wrapped AdamW steps that copy, and
    `_reassign_or_swap_out_partitioned_parameters` writes it back to the bf16 partition. ZeRO-1/2 keep float32
    partitions the same way (`single_partition_of_fp32_groups`). DDP, FSDP and single-device strategies step the
    parameters in their own dtype.

    Args:
        strategy: A `trainer.strategy` name (ours, or one of Lightning's registry) or a strategy object.
    """
    if isinstance(strategy, Strategy):
        return isinstance(strategy, DeepSpeedStrategy)
    name = ALIASES.get(strategy, strategy)
    registered = StrategyRegistry[name]["strategy"] if name in StrategyRegistry else None
    return name in STRATEGIES or (isinstance(registered, type) and issubclass(registered, DeepSpeedStrategy))


def trained_dtype(strategy: str | Strategy, precision: str | int, dtype: str) -> str:
    """The dtype to load the trained policy in, so that its optimizer steps full-precision weights.

    `dtype` (`model.dtype`) is what the frozen reference and a vLLM engine run in. Under DeepSpeed the policy loads in
    it too: DeepSpeed keeps float32 masters. Elsewhere a `*-mixed` precision gets a float32 policy (autocast computes
    in bf16), and a full precision (`32-true`) takes `dtype` as is.

    Args:
        strategy: `trainer.strategy`, a name or a strategy object.
        precision: `trainer.precision`, as Lightning takes it.
        dtype: `model.dtype`.

    Raises:
        UserError: The optimizer would step half-precision weights with no float32 copy (`bf16-true` or `16-true`
            outside DeepSpeed, or a half-precision `model.dtype` under `32-true`); the message names the fix.
    """
    precision = str(precision)
    if keeps_master_weights(strategy):
        return dtype
    if precision in MIXED_PRECISIONS:
        return "float32"
    if precision in FULL_PRECISIONS and (dtype == "float32" or precision.startswith("64")):
        return dtype
    lost = "updates smaller than half the gap between neighbouring values (6e-5 at a bf16 weight of 0.02) round away"
    if precision in FULL_PRECISIONS:
        raise UserError(
            f"model.dtype={dtype} with trainer.precision={precision}: AdamW would step {dtype} weights with no float32 "
            f"copy ({lost}); set trainer.precision=bf16-mixed (float32 policy, bf16 compute; the reference and vLLM "
            f"stay {dtype}), model.dtype=float32, or trainer.strategy=deepspeed_stage3"
        )
    if precision in HALF_PRECISIONS:
        name = strategy if isinstance(strategy, str) else type(strategy).__name__
        raise UserError(
            f"trainer.precision={precision} with trainer.strategy={name}: Lightning casts the policy to half precision "
            f"and AdamW steps it with no float32 copy ({lost}); set trainer.precision=bf16-mixed (float32 policy, "
            "bf16 compute) or trainer.strategy=deepspeed_stage3 (DeepSpeed keeps float32 master weights)"
        )
    known = (*MIXED_PRECISIONS, *FULL_PRECISIONS, *HALF_PRECISIONS)
    raise UserError(f"trainer.precision={precision!r}: expected one of {' | '.join(known)}")


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
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if max_norm > 0:
        _clipping_plugin(strategy.precision_plugin).clip_gradients(optimizer, max_norm, GradClipAlgorithmType.NORM)
    optimizer.step()
    return norm


def _clipping_plugin(plugin: Precision) -> Precision:
    """The precision plugin that clips: Lightning's own clipping (what `LightningModule.clip_gradients` calls), so
    plugins can hook it. `MixedPrecision` refuses every fused optimizer (the module's AdamW is one) because a 16-bit
    GradScaler would unscale inside its step; bf16-mixed has no GradScaler, so it clips as full precision does."""
    return Precision() if isinstance(plugin, MixedPrecision) and plugin.scaler is None else plugin


def leave_process_group() -> None:
    """Leave the process group once a multi-process run is over: a rank whose interpreter exits with the group's
    threads still alive can abort in C++ ("terminate called without an active exception", exit code -6) although
    training finished, which a scheduler reads as a failed job (seen once in ~70 two-rank test runs). A one-process
    group (the colocated vLLM engine starts one) is left to vLLM's own shutdown."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
        dist.destroy_process_group()
