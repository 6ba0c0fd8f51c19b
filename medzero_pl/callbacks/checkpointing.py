"""Crash-safe checkpoints: atomic writes, a checkpoint on SIGTERM/SIGINT, and finding the latest one.

Lightning's own `_atomic_save` stages the file in the system temp dir and moves it, which is a copy (not a rename)
when the run directory is on another filesystem. Here the temp file sits next to the target and `os.replace`
swaps it in, so a crash during saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer

from medzero_pl.strategies import checkpoint_exists

log = logging.getLogger(__name__)
LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to `<path>.tmp` in the same directory, fsync, then rename over `<path>`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class LastCheckpoint(Callback):
    """Keep one resumable `last.ckpt`: every `every_n_steps` training steps, at the end, and on SIGTERM/SIGINT.

    `dirpath` defaults to `<trainer.default_root_dir>/checkpoints`.

    On a signal the step in flight is finished rather than abandoned, so the checkpoint sits at a step boundary
    and a resumed run continues exactly. `received` holds the signal number, for the caller's exit code.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        every_n_steps: int = 5,
        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: expected at least 1")
        self.path = Path(dirpath) / LAST if dirpath is not None else None
        self.every_n_steps = every_n_steps
        self.signals = signals
        self.received: int | None = None
        self._saved_at: int | None = None
        self._previous: dict[int, Any] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.path is None:  # default: <default_root_dir>/checkpoints/last.ckpt
            self.path = Path(trainer.default_root_dir) / "checkpoints" / LAST

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("received signal %d: saving a checkpoint after the current step", signum)
        self.received = signum

    def _save(self, trainer: Trainer) -> None:
        if self._saved_at != trainer.global_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
            self._saved_at = trainer.global_step

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._saved_at = trainer.global_step  # a resumed run does not rewrite the checkpoint it started from
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        # A signal may reach one rank only: every rank learns of it at the same step, so all save that step.
        if trainer.world_size > 1:
            received = torch.tensor(self.received or 0, device=pl_module.device)
            self.received = int(trainer.strategy.reduce(received, reduce_op="max").item()) or None
        if self.received is not None:
            self._save(trainer)
            trainer.should_stop = True
        elif trainer.fit_loop.epoch_loop.batch_progress.total.completed % self.every_n_steps == self.every_n_steps - 1:
            self._save(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint a `resume=auto` run continues from: `last.ckpt`, else the newest `*.ckpt`.

    Either may be a file (one process) or a sharded DeepSpeed directory (`last.ckpt` is then a symlink to it).
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    if checkpoint_exists(ckpt_dir / LAST):
        return ckpt_dir / LAST
    found = [p for p in ckpt_dir.glob("*.ckpt") if checkpoint_exists(p)]
    candidates = sorted(found, key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None
