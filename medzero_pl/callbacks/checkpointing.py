"""Crash-safe checkpoints: atomic writes that keep the previous save, a checkpoint on SIGTERM/SIGINT, and the best
checkpoint by a held-out metric (`checkpoint.*`, :class:`CheckpointConfig`).

Lightning's own `_atomic_save` stages the file in the system temp dir and moves it, which is a copy (not a rename)
when the run directory is on another filesystem. Here the temp file sits next to the target and `os.replace`
swaps it in, so a crash during saving leaves the previous checkpoint intact; the save before it stays beside it
as `previous.ckpt`, so even a `last.ckpt` damaged after the fact leaves something to resume from.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from medzero_pl.errors import UserError, expect
from medzero_pl.rundir import BEST, LAST, PREVIOUS

log = logging.getLogger(__name__)
LOW_SPACE_BYTES = 16 * 2**20


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (disk full, permissions); the previous one is intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to `<path>.tmp<pid>` in the same directory, fsync, then rename over `<path>`.

    Replacing `last.ckpt` first moves the old one to `previous.ckpt`. A failed write raises `CheckpointSaveError`
    naming the real cause (e.g. "No space left on device"), and leaves the existing checkpoints untouched.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, RuntimeError) as err:
            free = _free_bytes(path.parent)  # before the partial file is removed: what the write ran into
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise CheckpointSaveError(f"could not save checkpoint {path}: {_cause(err, free)}") from err
        if path.name == LAST and path.is_file():
            os.replace(path, path.with_name(PREVIOUS))
        os.replace(tmp, path)


class LastCheckpoint(Callback):
    """Keep one resumable `last.ckpt`: every `every_n_steps` GRPO steps (the module's `grpo_step`), at the end, and on
    SIGTERM/SIGINT.

    `dirpath` defaults to `<trainer.default_root_dir>/checkpoints`.

    On a signal the step in flight is finished rather than abandoned, so the checkpoint sits at a step boundary
    and a resumed run continues exactly. `received` holds the signal number, for the caller's exit code.

    The handlers are its own, replacing Lightning's signal connector (`trainer.received_sigterm`) while training,
    because that one does not suffice here: it handles SIGTERM only (SIGINT stays a KeyboardInterrupt, which ends
    `fit` without a checkpoint), it stops by raising `SIGTERMException` without saving, and with several ranks its
    handler itself broadcasts from rank 0, a collective the other ranks do not join when the signal reached one rank
    only. This handler just records the signal; at the step boundary a `max` over ranks tells every rank, and all
    save the same step.
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

    def _save(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._saved_at != pl_module.grpo_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
            self._saved_at = pl_module.grpo_step

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._saved_at = pl_module.grpo_step  # a resumed run does not rewrite the checkpoint it started from
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        # A signal may reach one rank only: every rank learns of it at the same step, so all save that step.
        if trainer.world_size > 1:
            received = torch.tensor(self.received or 0, device=pl_module.device)
            self.received = int(trainer.strategy.reduce(received, reduce_op="max").item()) or None
        if self.received is not None:
            self._save(trainer, pl_module)
            trainer.should_stop = True
        elif pl_module.grpo_step % self.every_n_steps == 0:
            self._save(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, pl_module)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@dataclass
class CheckpointConfig:
    """`checkpoint.*`: which checkpoint a run keeps besides `last.ckpt`."""

    best_metric: str | None = None
    """A held-out metric the run logs (`eval/<benchmark>/<scorer>/accuracy` with `eval.every_n_steps`, or
    `val/reward` with `trainer.val_check_interval`); whenever it improves, `best.ckpt` is written beside `last.ckpt`.
    None: no best.ckpt."""
    best_mode: Literal["max", "min"] = "max"
    """max: higher is better (an accuracy); min: lower is better."""

    def problems(self) -> list[str]:
        metric = self.best_metric
        return [
            *expect(
                metric is None or metric.startswith(("eval/", "val/")),
                "best_metric",
                metric,
                "a held-out metric: eval/<benchmark>/<scorer>/<name> or val/<name>",
            ),
            *expect(self.best_mode in ("max", "min"), "best_mode", self.best_mode, "max or min"),
        ]


class BestCheckpoint(Callback):
    """Keep `best.ckpt`: the training state at the evaluation with the best `metric` so far.

    The metric is read from `trainer.callback_metrics` after each step (the every-N-steps evaluation has run by then)
    and after each validation inside `fit`; an unchanged value is never strictly better, so reading it again is
    harmless. `best.ckpt` is written like `last.ckpt` (a full, resumable checkpoint through the run's atomic
    checkpoint IO), then `best.json` beside it records its score and step. On resume the score comes from `best.json`
    when it describes the same metric (it is newer than the callback state in `last.ckpt` when the best step came
    after the last save), else from the restored state; so a worse evaluation after a resume never replaces it.
    """

    def __init__(self, metric: str, mode: str = "max", dirpath: str | Path | None = None) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r}: expected max or min")
        self.metric, self.mode = metric, mode
        self.path = Path(dirpath) / BEST if dirpath is not None else None
        self.score: float | None = None
        self.step: int | None = None
        self._seen = False

    @property
    def record(self) -> Path:
        assert self.path is not None
        return self.path.with_suffix(".json")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.path is None:
            self.path = Path(trainer.default_root_dir) / "checkpoints" / BEST

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "score": self.score, "step": self.step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if (state_dict.get("metric"), state_dict.get("mode")) == (self.metric, self.mode):
            self.score, self.step = state_dict.get("score"), state_dict.get("step")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.grpo_step == 0:
            return  # a fresh run: an older best.ckpt in run_dir is replaced at the first evaluation
        try:
            record = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return
        if isinstance(record, dict) and (record.get("metric"), record.get("mode")) == (self.metric, self.mode):
            self.score, self.step = record.get("score"), record.get("step")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._consider(trainer, pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # a validation inside fit; `validate` alone trains nothing
            self._consider(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._seen and self.score is None:
            log.warning("checkpoint.best_metric=%s was never logged: no %s written", self.metric, BEST)

    def _consider(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            return
        self._seen = True
        value = float(value)
        if math.isnan(value) or not is_better(value, self.score, self.mode):
            return
        self.score, self.step = value, pl_module.grpo_step
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable, exportable
        if trainer.is_global_zero:
            tmp = self.record.with_name(f"{self.record.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.state_dict()))
            os.replace(tmp, self.record)
        log.info("%s: %s=%.4g at step %d", BEST, self.metric, value, self.step)


def is_better(value: float, best: float | None, mode: str) -> bool:
    """Strictly better than the best so far (anything is better than nothing)."""
    return best is None or (value > best if mode == "max" else value < best)


STALE_TEMPORARIES = ("*.ckpt.tmp*", "*.ckpt-step*.tmp", ".*.ckpt.link-*")
"""What a save killed between writing and renaming leaves: `AtomicCheckpointIO`'s `<name>.tmp<pid>` files and the
DeepSpeed strategy's staged `<name>-step<N>.tmp` folders and `.<name>.link-<pid>` links."""


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the partial saves of killed runs in `folder`, which can each be as large as a checkpoint. Call it
    only while holding the run lock: then no other process is saving there."""
    removed = []
    for pattern in STALE_TEMPORARIES:
        for stale in sorted(Path(folder).glob(pattern)):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    if removed:
        log.warning("removed %d partial checkpoint save(s) of an earlier, killed run: %s", len(removed), removed)
    return removed


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _cause(err: BaseException, free: int | None = None) -> str:
    """The root cause of a failed write in a few words. A full disk reaches torch's zip writer as a short write,
    which it reports as `unexpected pos A vs B` (reproduced on a 2 MiB tmpfs): that, or almost no free space left
    where the write failed, is a full disk too."""
    full = isinstance(err, OSError) and err.errno == errno.ENOSPC or "No space left" in str(err)
    if full or "unexpected pos" in str(err) or (free is not None and free < LOW_SPACE_BYTES):
        left = f", {free / 2**20:.1f} MiB free" if free is not None else ""
        return f"no space left on device (disk full{left})"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
