"""`trainer.*` and `logging.*`: the `MedZeroTrainer` settings (medzero_pl/run.py) and what it manages itself.

Lightning's own registries supply the choices of `accelerator` and `precision`; any other `lightning.Trainer`
argument goes through `trainer.lightning`, checked against the Trainer's signature.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from lightning.fabric.plugins.precision.precision import (
    _PRECISION_INPUT_INT,
    _PRECISION_INPUT_STR,
    _PRECISION_INPUT_STR_ALIAS,
)
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import AcceleratorRegistry

from medzero_pl.errors import expect

AcceleratorName = Literal[tuple(dict.fromkeys(["auto", "gpu", *AcceleratorRegistry.available_accelerators()]))]
# What Lightning's Trainer takes (`32` from a YAML file is the int 32).
Precision = Literal[
    get_args(_PRECISION_INPUT_STR) + get_args(_PRECISION_INPUT_STR_ALIAS) + get_args(_PRECISION_INPUT_INT)
]
WandbMode = Literal["auto", "online", "offline", "disabled"]

# Trainer arguments medzero_pl sets itself (see medzero_pl/run.py), or that have their own `trainer.*` field.
MANAGED_TRAINER_ARGS = {
    "callbacks": "add callbacks to medzero_pl/run.py:run_callbacks",
    "logger": "see logging.*",
    "plugins": "checkpoints are written by medzero_pl's atomic CheckpointIO",
    "enable_checkpointing": "checkpoints are written by medzero_pl (trainer.checkpoint_every_n_steps)",
    "default_root_dir": "see run_dir",
    "use_distributed_sampler": "the data module shards whole groups across ranks itself",
    "num_sanity_val_steps": "validation never runs before training",
    "enable_model_summary": "medzero_pl logs one line (class, parameters, trainable share, dtype) instead",
    "accumulate_grad_batches": "a generation batch is one optimizer step; use grpo.micro_batch_size",
    "max_epochs": "the data stream is endless; use trainer.max_steps",
    "gradient_clip_val": "see optim.grad_clip",
}


@dataclass
class TrainerConfig:
    """How long and where a run trains."""

    max_steps: int = 20
    """GRPO steps (generation batches) to train for; each makes `grpo.num_iterations` optimizer steps."""
    accelerator: AcceleratorName = "auto"
    """Lightning accelerator."""
    devices: int | Literal["auto"] = 1
    """Devices per node: a number, or auto."""
    num_nodes: int = 1
    """Nodes of a multi-node run (each runs `devices` processes; see scripts/torchrun_example.sh)."""
    strategy: str = "auto"
    """auto | ddp | deepspeed_stage3 | deepspeed_stage3_offload (ZeRO-3, CPU or GPU; see medzero_pl.strategies)."""
    precision: Precision = "32-true"
    """Lightning precision (32-true, bf16-mixed and bf16-true are the tested ones)."""
    log_every_n_steps: int = 1
    """Logging interval in GRPO steps."""
    val_check_interval: int | None = None
    """Validate every N GRPO steps; None validates only at the end of `fit`."""
    limit_val_batches: Any = 1.0
    """Fraction or number of validation batches."""
    checkpoint_every_n_steps: int = 5
    """Write `last.ckpt` (atomically) every N GRPO steps."""
    enable_progress_bar: bool = True
    """Show a progress bar of GRPO steps with reward and completion length."""
    lightning: dict[str, Any] = field(default_factory=dict)
    """Any other `lightning.Trainer` argument, e.g. `trainer.lightning.profiler=simple` (checked against its
    signature). Gradient accumulation is `grpo.micro_batch_size`: a generation batch is one optimizer step."""

    def problems(self) -> list[str]:
        """Out-of-range values and `lightning` keys the Trainer does not take, each on one line."""
        return [
            *expect(self.max_steps >= 1, "max_steps", self.max_steps, "at least 1 (GRPO steps to train)"),
            *expect(self.num_nodes >= 1, "num_nodes", self.num_nodes, "at least 1"),
            *expect(self.log_every_n_steps >= 1, "log_every_n_steps", self.log_every_n_steps, "at least 1"),
            *expect(
                self.checkpoint_every_n_steps >= 1,
                "checkpoint_every_n_steps",
                self.checkpoint_every_n_steps,
                "at least 1",
            ),
            *expect(
                self.val_check_interval is None or self.val_check_interval >= 1,
                "val_check_interval",
                self.val_check_interval,
                "at least 1, or null (validate at the end)",
            ),
            *expect(self.devices == "auto" or self.devices >= 1, "devices", self.devices, "'auto' or at least 1"),
            *self._lightning_problems(),
        ]

    def _lightning_problems(self) -> list[str]:
        """Keys of `lightning` that Lightning's Trainer does not take, or that medzero_pl manages itself."""
        valid = lightning_trainer_args()
        own = {f.name for f in fields(TrainerConfig)}
        problems = []
        for key in self.lightning:
            if key in own:
                problems.append(f"lightning.{key}: set trainer.{key} instead")
            elif key in MANAGED_TRAINER_ARGS:
                problems.append(f"lightning.{key}: managed by medzero_pl ({MANAGED_TRAINER_ARGS[key]})")
            elif key not in valid:
                close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
                hint = f" Did you mean: {', '.join(f'trainer.lightning.{c}' for c in close)}?" if close else ""
                problems.append(f"lightning.{key}: not an argument of lightning.Trainer.{hint}")
        return problems


def lightning_trainer_args() -> list[str]:
    return [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]


@dataclass
class LoggingConfig:
    """Where metrics and sample completions go."""

    wandb: WandbMode = "auto"
    """W&B mode; auto is online with WANDB_API_KEY set, else offline."""
    project: str = "medzero_pl"
    """W&B project."""
    log_completions: int = 2
    """Completions per step written to `<run_dir>/completions.jsonl` (0 disables)."""

    def problems(self) -> list[str]:
        """Out-of-range values, each as `field=value: expected ...`."""
        return expect(self.log_completions >= 0, "log_completions", self.log_completions, ">= 0")
