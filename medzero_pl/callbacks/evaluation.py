"""Benchmark evaluation during training (every N steps) and on ``validate``, each benchmark reported separately.

Logs ``eval/<benchmark>/<scorer>/{accuracy,format_rate,...}`` and ``eval/<benchmark>/{mean_length,
truncated_rate}`` (see :mod:`medzero_pl.eval.runner`). Generation goes through the module's public surface
(``engine`` and ``tokenizer``); an engine with its own weights (vLLM) is first made current by the run's
:class:`~medzero_pl.callbacks.weight_sync.WeightSync`, which syncs only if the weights changed since its last sync.
Steps are the module's ``grpo_step``; during training the metrics also go into ``trainer.callback_metrics``, where
later callbacks read them (``checkpoint.best_metric``). On ``validate`` (which runs only when the data module has validation data) it
also writes the Markdown/JSON report to ``report_dir``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from medzero_pl.callbacks.weight_sync import run_weight_sync
from medzero_pl.data.records import Example
from medzero_pl.eval.benchmarks import Task, build_tasks
from medzero_pl.eval.config import EvalConfig
from medzero_pl.eval.report import write_report
from medzero_pl.eval.runner import evaluate, flat_metrics

log = logging.getLogger(__name__)


class Evaluation(Callback):
    """Evaluate the policy on named benchmarks.

    Args:
        config: Benchmarks, every how many GRPO steps (0: only on ``validate``), data files, sampling and scorers.
        report_dir: Where ``validate`` writes its report; None: ``<default_root_dir>/eval``.
        tasks: Ready tasks instead of ``config.benchmarks`` (tests, custom benchmarks).
    """

    def __init__(
        self, config: EvalConfig | None = None, report_dir: str | Path | None = None, tasks: list[Task] | None = None
    ) -> None:
        self.config = config or EvalConfig()
        self.config.check()
        if not self.config.benchmarks and not tasks:
            raise ValueError("Evaluation needs benchmark names or tasks")
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.tasks = tasks
        self.last_results: dict[str, dict[str, Any]] = {}

    def items(self) -> list[Example]:
        """Every question this callback evaluates on (read once; a missing file fails before any step runs)."""
        if self.tasks is None:
            c = self.config
            self.tasks = build_tasks(c.benchmarks, c.paths, c.data_root, c.limit, c.seed, c.prompt)
        return [item for task in self.tasks for item in task.items]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.items()
        if self.report_dir is None:
            self.report_dir = Path(trainer.default_root_dir) / "eval"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.config.every_n_steps and pl_module.grpo_step == 0:
            self.run(trainer, pl_module)  # the curve's starting point: the policy before its first step

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = self.config.every_n_steps
        if every and pl_module.grpo_step % every == 0:
            self.run(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != TrainerFn.VALIDATING:
            return  # validation inside fit: the every-N-steps evaluation covers training
        results = self.run(trainer, pl_module)
        if trainer.is_global_zero:
            row = Path(trainer.ckpt_path).name if trainer.ckpt_path else pl_module.model_config.name_or_path
            md, _ = write_report(
                {row: results}, self.report_dir, {"settings": asdict(self.config), "checkpoint": trainer.ckpt_path}
            )
            print(md.read_text())
            log.info("evaluation report: %s", md)

    def run(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, dict[str, Any]]:
        if pl_module.engine.owns_weights:
            run_weight_sync(trainer).ensure_fresh(trainer, pl_module)
        results = evaluate(
            pl_module.engine,
            pl_module.tokenizer,
            self.tasks,
            self.config,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            device=pl_module.device,
        )
        metrics = flat_metrics(results)
        if trainer.training:  # logged at the number of GRPO steps trained (0: the policy before training)
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.log_metrics(metrics, step=pl_module.grpo_step)
            # where later callbacks read the latest metrics (BestCheckpoint keeps best.ckpt by one of them)
            trainer.callback_metrics.update({name: torch.tensor(float(value)) for name, value in metrics.items()})
        else:
            for name, value in metrics.items():
                # Every rank holds the same global value (the runner's metrics sum over ranks): the mean over ranks
                # is that value, and without sync_dist Lightning warns on several ranks.
                pl_module.log(name, value, batch_size=1, sync_dist=True)
        self.last_results = results
        return results
