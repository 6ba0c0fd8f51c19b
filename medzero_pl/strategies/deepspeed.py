"""DeepSpeed ZeRO-3 for GRPO: the one module that imports `deepspeed`; the rest of the code asks it what it needs.

`ZeRO3Strategy` is Lightning's `DeepSpeedStrategy` made to run from the same code on CPU (gloo, `DS_ACCELERATOR=cpu`)
and on GPUs (NCCL). Lightning's class refuses non-CUDA accelerators and passes the CUDA device index to
`deepspeed.initialize`; on CPU there is no index, so the local rank is passed instead. It also:

- registers a transformers `HfDeepSpeedConfig` while the strategy lives, so `from_pretrained` inside
  `configure_model` (which Lightning runs under `deepspeed.zero.Init`) loads the weights into the partitioned
  parameters, and `generate` turns on `synced_gpus` (a rank that has finished keeps joining the other ranks'
  forward passes, whose parameter all-gathers would otherwise deadlock);
- wraps the frozen reference model in its own optimizer-less ZeRO-3 engine (`prepare_reference`): each rank holds
  1/world_size of it, and it never enters the optimizer or the checkpoint;
- writes each checkpoint directory under a fresh name and then switches the `last.ckpt` symlink to it with one
  `os.replace`, so an interrupted save leaves the previous checkpoint usable (`save_checkpoint`).

A shared filesystem across nodes is assumed for checkpoints (rank 0 renames the directory every rank wrote into).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy

from medzero_pl.pickles import check_sharded_checkpoint, load_shard
from medzero_pl.rundir import PREVIOUS, is_universal


class ZeRO3Strategy(DeepSpeedStrategy):
    """ZeRO stage 3 (parameters, gradients and optimizer state sharded), optionally offloaded to CPU memory.

    Args:
        offload: Keep the optimizer state and the parameters in CPU memory between uses (slower, far less GPU
            memory). The optimizer step then runs the module's torch AdamW on the CPU.
        gradient_clipping: Max global gradient norm; DeepSpeed clips inside its `step` (0 disables).
        cpu_shm_comm: On CPU, let DeepSpeed use its shared-memory all-reduce. It is a C++ op compiled on first use
            (1-4 minutes on 2 cores), and a compile killed midway leaves a lock every later start waits on; by
            default CPU runs use plain gloo instead. No effect on GPUs.
        **kwargs: Passed to Lightning's `DeepSpeedStrategy` (e.g. `config=` a DeepSpeed JSON dict or path).
    """

    def __init__(
        self, offload: bool = False, gradient_clipping: float = 0.0, cpu_shm_comm: bool = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("stage", 3)
        kwargs.setdefault("offload_optimizer", offload)
        kwargs.setdefault("offload_parameters", offload)
        # Lightning's default (1e12) puts a rank's whole partition in one sub-group, so the optimizer step makes one
        # fp32 copy of all its gradients at once (7.6 GB per rank for a 7.6B model on 4 ranks); DeepSpeed's own
        # default steps it in sub-groups of about 1e9 elements (4 GB).
        kwargs.setdefault("sub_group_size", 1_000_000_000)
        # A LoRA policy's frozen base is reloaded from `model.name_or_path`: checkpoints hold the adapters (and their
        # optimizer state) alone. A fully trained policy has nothing frozen, so this changes nothing for it.
        kwargs.setdefault("exclude_frozen_parameters", True)
        super().__init__(**kwargs)
        self.config.setdefault("gradient_clipping", float(gradient_clipping))
        # Needed by every DeepSpeed config parse (zero.Init in from_pretrained too); only used for throughput logs.
        self.config.setdefault("train_micro_batch_size_per_gpu", 1)
        self._hf_config: Any = None  # transformers keeps only a weak reference: we hold the object
        self.cpu_shm_comm = cpu_shm_comm
        if offload:
            # The module's torch AdamW steps the CPU-held partitions; DeepSpeedCPUAdam would be faster per step but
            # is a C++ op compiled on first use, and the module does not choose its optimizer by strategy.
            self.config.setdefault("zero_force_ds_cpu_optimizer", False)

    def _format_config(self) -> None:
        """Lightning's config, plus fp32 gradient accumulation under bf16 (unless `data_types.grad_accum_dtype` is set).

        Stage 3 adds each micro-batch's reduce-scattered gradient partition into a buffer of `grad_accum_dtype`,
        which defaults to the model's dtype: in bf16 (8 mantissa bits) a sum of micro-batches loses the low bits of
        every addend. fp32 costs 2 more bytes per parameter of this rank's partition; the reduce-scatter itself stays
        in bf16 (`communication_data_type`).
        """
        super()._format_config()
        if self.config.get("bf16", {}).get("enabled"):
            self.config.setdefault("data_types", {}).setdefault("grad_accum_dtype", "fp32")

    @property
    def gradient_clipping(self) -> float:
        return float(self.config.get("gradient_clipping", 0.0))

    # ---------------------------------------------------------------------------------- CPU and GPU
    def setup_environment(self) -> None:
        # Skip DeepSpeedStrategy's CUDA-only check; DDPStrategy's own environment setup still runs.
        super(DeepSpeedStrategy, self).setup_environment()

    def setup_distributed(self) -> None:
        # DeepSpeedStrategy validates CUDA device indices here; CPU devices have none.
        from lightning.fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        if self.root_device.type == "cpu" and not self.cpu_shm_comm:
            import deepspeed.ops

            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # DeepSpeed keeps edits to this dict
        self._init_deepspeed_distributed()
        self._register_hf_config()

    @property
    def _device_rank(self) -> int:
        return self.root_device.index if self.root_device.index is not None else self.local_rank

    def _setup_model_and_optimizer(
        self, model: torch.nn.Module, optimizer: Any, lr_scheduler: Any = None
    ) -> tuple[Any, Any]:
        import deepspeed

        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank),
            config=self.config,
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, ds_optimizer

    def _initialize_deepspeed_inference(self, model: torch.nn.Module) -> None:
        from lightning.pytorch.strategies.deepspeed import remove_module_hooks

        remove_module_hooks(model)
        self.model = self._inference_engine(model)

    def _inference_engine(self, model: torch.nn.Module) -> Any:
        """An optimizer-less engine with this strategy's ZeRO and precision settings (parameters fetched on use)."""
        import deepspeed

        config = {"train_micro_batch_size_per_gpu": 1}
        for key in ("fp16", "bf16", "zero_allow_untested_optimizer"):
            if key in self.config:
                config[key] = self.config[key]
        zero = copy.deepcopy(self.config.get("zero_optimization", {}))
        zero.pop("offload_optimizer", None)
        config["zero_optimization"] = zero
        engine, *_ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank),
            config=config,
            model=model,
            model_parameters=[],
            dist_init_required=False,
        )
        return engine

    def _register_hf_config(self) -> None:
        from transformers.integrations import HfDeepSpeedConfig

        self._hf_config = HfDeepSpeedConfig(self.config)

    def teardown(self) -> None:
        super().teardown()
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
        self._hf_config = None

    # ---------------------------------------------------------------------------------- reference
    def prepare_reference(self, model: torch.nn.Module) -> torch.nn.Module:
        """The frozen reference as an inference engine; its parameters stay partitioned across ranks."""
        model.requires_grad_(False).eval()
        return self._inference_engine(model)

    # ---------------------------------------------------------------------------------- optimisation
    def begin_micro_batch(self, last: bool) -> None:
        """Do for one micro-batch what `DeepSpeedEngine.forward` does for gradient accumulation.

        Lightning enters the engine's `forward` once per `training_step`, and the module then runs every micro-batch's
        forward and backward inside it. ZeRO-3 reduce-scatters each backward's gradients and writes this rank's
        partition into a buffer: copied over it while the optimizer's `micro_step_id` is 0, added to it after. That
        counter advances only in `optimizer.clear_backward_seen_flag()`, which the engine calls at the start of its
        `forward`; without the call here each micro-batch would replace the one before, and the step would see the
        last micro-batch's gradient alone. `zero_grad` (in the engine's `step` and the module's) sets it back to 0.

        The boundary is the documented manual form (`engine.set_gradient_accumulation_boundary`): false for all but
        the last micro-batch, whose backward is followed by `step()`. Lightning sets `gradient_accumulation_steps`
        to 1, so otherwise every backward counts as a boundary; with the optimizer offloaded, that would copy the
        partial sum to the fp32 CPU gradient (and take its norm) after every micro-batch instead of once. DeepSpeed's
        own accumulation (`gradient_accumulation_steps` = micro-batches) would not help: it scales the loss, which
        the module already does, and it too relies on `forward` to advance `micro_step_id`. `coalesce_grad_reduction`
        would keep whole, unsharded gradients on every rank until the step. The reference's inference engine has no
        ZeRO optimizer and runs no backward: it keeps no accumulation state.
        """
        engine = self.deepspeed_engine
        engine.optimizer.clear_backward_seen_flag()
        engine.set_gradient_accumulation_boundary(last)

    def global_grad_norm(self) -> torch.Tensor:
        """The pre-clip 2-norm of all gradients of the last optimizer step, over every rank."""
        norm = self.deepspeed_engine.get_global_grad_norm()
        return torch.as_tensor(float(norm) if norm is not None else float("nan"))

    # ---------------------------------------------------------------------------------- checkpoints
    def resume_from(self, ckpt_path: str | Path) -> None:
        """A checkpoint converted by `ds_to_universal` (it holds `latest_universal`) is read through DeepSpeed's
        `load_universal`, which re-partitions it for this run's ranks; the engine reads that key when it loads."""
        if is_universal(ckpt_path):
            self.config.setdefault("checkpoint", {})["load_universal"] = True

    def save_checkpoint(self, checkpoint: dict, filepath: Any, storage_options: Any | None = None) -> None:
        """Write the sharded directory as `<name>-step<N>` (staged as `.tmp` first), then point `<name>` at it."""
        target = Path(self.broadcast(str(filepath)))
        step = checkpoint.get("global_step", 0)
        final = target.with_name(f"{target.name}-step{step}")
        staged = final.with_name(f"{final.name}.tmp")
        if self.is_global_zero:
            shutil.rmtree(staged, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
        self.barrier("medzero_ckpt_stage")
        super().save_checkpoint(checkpoint, staged, storage_options)
        self.barrier("medzero_ckpt_written")
        if self.is_global_zero:
            _publish(staged, final, target)
        self.barrier("medzero_ckpt_published")


def _publish(staged: Path, final: Path, link: Path) -> None:
    """Rename the complete `staged` dir to `final`, switch `link` to it atomically; the old target becomes
    `previous.ckpt`, and the checkpoint before that is deleted."""
    _fsync_tree(staged)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staged, final)
    previous = link.resolve() if link.is_symlink() else None
    tmp_link = link.with_name(f".{link.name}.link-{os.getpid()}")
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(final.name)  # relative: the checkpoints folder can be moved
    if link.is_dir() and not link.is_symlink():  # a plain directory from elsewhere cannot be replaced atomically
        shutil.rmtree(link)
    os.replace(tmp_link, link)
    if previous is None or previous == final.resolve() or not previous.exists():
        return
    # The save before is kept as `previous.ckpt` (as for single-file checkpoints); the one before that goes.
    keep = link.with_name(PREVIOUS)
    older = keep.resolve() if keep.is_symlink() else None
    tmp_keep = keep.with_name(f".{keep.name}.link-{os.getpid()}")
    tmp_keep.unlink(missing_ok=True)
    tmp_keep.symlink_to(previous.name)
    os.replace(tmp_keep, keep)
    if older is not None and older not in (previous, final.resolve()) and older.exists():
        shutil.rmtree(older, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


# -------------------------------------------------------------------------------------- parameters
def gathered_named_parameters(module: torch.nn.Module, max_numel: int) -> Iterator[tuple[str, torch.Tensor]]:
    """Full `(name, tensor)` pairs of a ZeRO-3 module, all-gathering at most `max_numel` elements at a time.

    A collective: every rank must consume the whole iterator. Each tensor is valid until the next pair is
    requested (its block is then re-partitioned); copy it to keep it.
    """
    import deepspeed

    block: list[tuple[str, torch.nn.Parameter]] = []
    size = 0
    for name, param in module.named_parameters():
        numel = getattr(param, "ds_numel", param.numel())
        if block and size + numel > max_numel:
            yield from _gathered_block(deepspeed, block)
            block, size = [], 0
        block.append((name, param))
        size += numel
    if block:
        yield from _gathered_block(deepspeed, block)


def _gathered_block(deepspeed: Any, block: list[tuple[str, torch.nn.Parameter]]) -> Iterator[tuple[str, torch.Tensor]]:
    with deepspeed.zero.GatheredParameters([p for _, p in block], modifier_rank=None):
        for name, param in block:
            yield name, param.data


@contextmanager
def zero_init_suspended() -> Iterator[None]:
    """Inside an active `deepspeed.zero.Init` (Lightning runs `configure_model` in one under ZeRO-3), suspend it:
    modules built meanwhile keep whole, ordinary parameters. No-op when no `zero.Init` is active."""
    zero_init = sys.modules.get("deepspeed.runtime.zero.partition_parameters")  # never imports deepspeed itself
    if zero_init is None or zero_init.top_level_context is None:
        yield
        return
    zero_init.shutdown_init_context()
    try:
        yield
    finally:
        zero_init.restore_init_context()


def is_partitioned(module: torch.nn.Module) -> bool:
    """Whether the module's parameters are ZeRO-3 partitioned (created under `zero.Init`)."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


def local_parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes of parameter storage this rank holds (its partitions under ZeRO-3, everything otherwise)."""
    total = 0
    for p in module.parameters():
        local = getattr(p, "ds_tensor", None)
        total += (local.numel() * local.element_size()) if local is not None else p.numel() * p.element_size()
    return total


def zero_checkpoint_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Consolidated fp32 weights and Lightning's client state (hyper-parameters, step) of a sharded checkpoint."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint, get_model_state_file

    path = Path(path)
    check_sharded_checkpoint(path)  # zero_to_fp32 unpickles the shards with weights_only=False
    tag = (path / "latest").read_text().strip()
    state = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag)
    client = load_shard(get_model_state_file(str(path / tag), zero_stage=3))
    meta = {k: v for k, v in client.items() if k not in ("module", "optimizer", "lr_scheduler")}
    return dict(state), meta
