"""What a medzero_pl run is, defined once for both entry points.

`python -m medzero_pl.fit key=value ...` and the LightningCLI (`python -m medzero_pl fit|validate`) both build a
`MedZeroTrainer`, so the callbacks, loggers, progress bar, checkpointing, plugins and strategy of a run are the
same whichever door it came through. A callback added to `run_callbacks` appears in both.

`MedZeroTrainer.fit` adds the run directory's rules (see `medzero_pl/rundir.py`) in front of `Trainer.fit`, checks
the data and rewards before any model is loaded, and counts in GRPO steps: `max_steps` is a number of generation
batches, what the module's `grpo_step` counts (checkpoints, progress bar, evaluation and the data stream follow it);
Lightning's own limit is in optimizer steps, `max_steps x grpo.num_iterations`.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger

from medzero_pl.callbacks.checkpointing import (
    AtomicCheckpointIO,
    BestCheckpoint,
    CheckpointConfig,
    LastCheckpoint,
    remove_stale_temporaries,
)
from medzero_pl.callbacks.evaluation import Evaluation
from medzero_pl.callbacks.language import LanguageMixing
from medzero_pl.callbacks.samples import CompletionSamples
from medzero_pl.callbacks.stats import CompletionStats
from medzero_pl.callbacks.summary import ParameterSummary
from medzero_pl.callbacks.weight_sync import WeightSync
from medzero_pl.config import MOVED_KEYS, Config, to_yaml
from medzero_pl.data.datamodule import MedZeroDataModule, normalised_questions
from medzero_pl.errors import ConfigError
from medzero_pl.eval.config import EvalConfig
from medzero_pl.model.loading import check_context_window
from medzero_pl.redaction import redact_secrets
from medzero_pl.rewards import check_rewards
from medzero_pl.rundir import (
    RunLock,
    check_resume_compatible,
    check_resume_world_size,
    check_writable,
    checkpoint_dir,
    find_resumable,
    read_checkpoint_header,
    refuse_to_replace,
)
from medzero_pl.strategies import resolve_strategy, set_gradient_clipping, set_resume_checkpoint
from medzero_pl.trainer_config import MANAGED_TRAINER_ARGS, LoggingConfig, TrainerConfig

log = logging.getLogger("medzero_pl")
TRAINER_FIELDS = tuple(f.name for f in dataclasses.fields(TrainerConfig) if f.name != "lightning")


class MedZeroTrainer(Trainer):
    """A Lightning `Trainer` set up as a medzero_pl run.

    Args:
        max_steps: GRPO steps (generation batches); Lightning's optimizer-step limit is derived from it.
        run_dir: Checkpoints, logs and the run's config record go here.
        checkpoint_every_n_steps: Interval of the atomic `last.ckpt`.
        logging: W&B mode and project, completions written per step.
        evaluation: Benchmarks evaluated every N steps and on `validate` (none by default).
        checkpointing: `checkpoint.*`: the metric `best.ckpt` is kept by (none by default).
        overwrite: Start afresh even if `run_dir` already holds a run's checkpoint.
        resume_allow_changes: Resume even if settings that alter the data stream or objective changed.
        callbacks: Extra callbacks, after the run's own.
        **kwargs: Any other `lightning.Trainer` argument (accelerator, devices, num_nodes, strategy, precision, ...).
    """

    def __init__(
        self,
        *,
        max_steps: int = 20,
        run_dir: str = "runs/default",
        checkpoint_every_n_steps: int = 5,
        logging: LoggingConfig | None = None,
        evaluation: EvalConfig | None = None,
        checkpointing: CheckpointConfig | None = None,
        enable_progress_bar: bool = True,
        overwrite: bool = False,
        resume_allow_changes: bool = False,
        callbacks: list[Callback] | None = None,
        **kwargs: Any,
    ) -> None:
        # The LightningCLI passes every Trainer argument, at its default unless the user set it.
        defaults = {k: p.default for k, p in inspect.signature(Trainer.__init__).parameters.items()}
        managed = sorted(k for k in set(kwargs) & set(MANAGED_TRAINER_ARGS) if kwargs[k] != defaults.get(k))
        kwargs = {k: v for k, v in kwargs.items() if k not in MANAGED_TRAINER_ARGS}
        if managed:
            raise ConfigError(
                "; ".join(f"trainer.{k}: managed by medzero_pl ({MANAGED_TRAINER_ARGS[k]})" for k in managed)
            )
        if max_steps < 1:
            raise ConfigError(f"trainer.max_steps={max_steps}: expected at least 1 (GRPO steps to train)")
        logging = LoggingConfig(**logging) if isinstance(logging, dict) else logging or LoggingConfig()
        evaluation = EvalConfig(**evaluation) if isinstance(evaluation, dict) else evaluation or EvalConfig()
        if isinstance(checkpointing, dict):
            checkpointing = CheckpointConfig(**checkpointing)
        checkpointing = checkpointing or CheckpointConfig()
        self.max_grpo_steps = max_steps
        self.run_dir = Path(run_dir)
        self.logging_config = logging
        self.eval_config = evaluation
        self.checkpoint_config = checkpointing
        self.overwrite = overwrite
        self.resume_allow_changes = resume_allow_changes
        self.settings = {
            "max_steps": max_steps,
            "run_dir": str(run_dir),
            "checkpoint_every_n_steps": checkpoint_every_n_steps,
            "enable_progress_bar": enable_progress_bar,
            "logging": dataclasses.asdict(logging),
            "evaluation": dataclasses.asdict(evaluation),
            "checkpointing": dataclasses.asdict(checkpointing),
            **{k: v for k, v in kwargs.items() if k in TRAINER_FIELDS or v != defaults.get(k)},
        }
        self.checkpoint = LastCheckpoint(self.run_dir / "checkpoints", every_n_steps=checkpoint_every_n_steps)
        # One process with the colocated vLLM engine: vLLM starts a one-process gloo group, Lightning's epoch-level
        # check sees an initialised group and recommends sync_dist for every metric, while it drops sync_dist itself
        # because its own strategy is not distributed. Several processes log with sync_dist and never see this.
        warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\(.*sync_dist=True")
        kwargs.setdefault("check_val_every_n_epoch", None if kwargs.get("val_check_interval") else 1)
        kwargs["strategy"] = resolve_strategy(
            kwargs.get("strategy", "auto"), accelerator=kwargs.get("accelerator", "auto")
        )
        super().__init__(
            max_steps=max_steps,  # in GRPO steps until `fit` knows the module's optimizer steps per batch
            callbacks=[*run_callbacks(self, enable_progress_bar), *(callbacks or [])],
            logger=run_loggers(self.run_dir, logging),
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=False,
            enable_progress_bar=enable_progress_bar,
            use_distributed_sampler=False,  # ResumableBatchSampler shards whole groups by rank itself
            num_sanity_val_steps=0,
            enable_model_summary=False,  # ParameterSummary's one line instead: Lightning's FLOPs column is always 0
            default_root_dir=str(self.run_dir),
            **kwargs,
        )

    @property
    def stopped_by_signal(self) -> int | None:
        """The signal (SIGTERM, SIGINT) that ended training early, after saving a checkpoint."""
        return self.checkpoint.received

    def fit(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        weights_only: bool | None = None,
    ) -> None:
        """`Trainer.fit` behind the run directory's rules; `ckpt_path="auto"` resumes `run_dir`'s checkpoint."""
        lock = RunLock(self.run_dir)
        ckpt_path = self._preflight(model, datamodule, ckpt_path)
        if self.is_global_zero:
            lock.acquire()
            remove_stale_temporaries(checkpoint_dir(self.run_dir))
        try:
            self.fit_loop.epoch_loop.max_steps = self.max_grpo_steps * model.optimizer_steps_per_batch
            set_gradient_clipping(self.strategy, model.optim.grad_clip)
            set_resume_checkpoint(self.strategy, ckpt_path)
            if ckpt_path:
                log.info("resuming from %s", ckpt_path)
            super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only)
            validate_at_end = datamodule is not None and getattr(datamodule, "val_items", None)
            if validate_at_end and not self.val_check_interval_steps and self.stopped_by_signal is None:
                self.validate(model, datamodule=datamodule)
            if self.is_global_zero:
                write_plots(self.run_dir)
        finally:
            lock.release()

    @property
    def val_check_interval_steps(self) -> int | None:
        interval = self.settings.get("val_check_interval")
        return interval if isinstance(interval, int) else None

    def _preflight(self, module: LightningModule, datamodule: LightningDataModule | None, ckpt_path: Any) -> Any:
        """Every check that can fail without a model loaded: run directory, resume, context window, data, rewards."""
        if ckpt_path == "auto":
            ckpt_path = find_resumable(self.run_dir)
            if ckpt_path is None:
                log.info("resume=auto: no checkpoint in %s, starting fresh", self.run_dir / "checkpoints")
        elif ckpt_path is not None and Path(ckpt_path).exists():
            read_checkpoint_header(ckpt_path)
        elif ckpt_path is not None and ckpt_path not in ("last", "hpc", "registry"):
            raise ConfigError(f"resume={ckpt_path}: no such checkpoint file (resume=auto picks the run's latest)")
        if ckpt_path is None and not self.overwrite:
            refuse_to_replace(self.run_dir)
        if ckpt_path is not None:
            check_resume_world_size(ckpt_path, self.num_nodes * self.num_devices)  # world_size: only once launched
            identity = run_identity(module, datamodule)
            check_resume_compatible(ckpt_path, identity, self.resume_allow_changes, renamed=MOVED_KEYS, schema=Config)
        if self.is_global_zero:
            check_writable(self.run_dir)
        if datamodule is not None:
            check_context_window(
                module.model_config.name_or_path, datamodule.config.max_prompt_length, module.grpo.max_completion_length
            )
            datamodule.prepare_data()
            evaluations = [c for c in self.callbacks if isinstance(c, Evaluation)]
            if evaluations and isinstance(datamodule, MedZeroDataModule):
                datamodule.held_out_questions = normalised_questions(i for e in evaluations for i in e.items())
            datamodule.setup("fit")
            check_rewards(module.reward_set, datamodule.train_items)
        return str(ckpt_path) if ckpt_path is not None else None


def run_callbacks(trainer: MedZeroTrainer, progress_bar: bool) -> list[Callback]:
    """The callbacks every run has, whichever entry point built it."""
    callbacks: list[Callback] = [
        trainer.checkpoint,
        RunRecord(),
        ParameterSummary(),
        WeightSync(),
        CompletionStats(),
        LanguageMixing(),
        LearningRateMonitor(logging_interval="step"),  # logs `lr`, the rate each step trains with
    ]
    per_step = trainer.logging_config.log_completions
    if per_step:
        callbacks.append(CompletionSamples(trainer.run_dir / "completions.jsonl", per_step=per_step))
    if trainer.eval_config.benchmarks:
        callbacks.append(Evaluation(trainer.eval_config))
    best = trainer.checkpoint_config
    if best.best_metric:  # after the evaluation it reads
        callbacks.append(BestCheckpoint(best.best_metric, best.best_mode, trainer.run_dir / "checkpoints"))
    if progress_bar:
        callbacks.append(StepProgressBar())
    return callbacks


def run_loggers(run_dir: Path, logging: LoggingConfig) -> list[Logger]:
    """CSV always; W&B offline unless an API key is set (or as `logging.wandb` says).

    Each session (a fresh start or a resume) writes its own `csv/version_N/metrics.csv`: Lightning's CSV writer
    deletes an existing `metrics.csv` in its folder, which would lose the metrics of the steps before a resume.
    """
    result: list[Logger] = [CSVLogger(run_dir, name="csv")]
    mode = logging.wandb
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        result.append(
            WandbLogger(project=logging.project, save_dir=str(run_dir), offline=mode == "offline", name=run_dir.name)
        )
    return result


def write_plots(run_dir: Path) -> None:
    """Training-progress PNGs in `<run_dir>/plots` from the run's CSV logs (`scripts/plot_run.py` does the same)."""
    from medzero_pl.eval.plots import plot_run

    log.info("plots: %s", ", ".join(str(p) for p in plot_run(run_dir)))


class StepProgressBar(TQDMProgressBar):
    """Counts GRPO steps towards `max_steps` (the stream is endless, so there is no epoch length) in s/step."""

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_grpo_steps

    def init_train_tqdm(self):  # noqa: ANN201 - Lightning's signature
        bar = super().init_train_tqdm()
        bar.unit = "step"
        if bar.bar_format:  # Lightning always prints it/s; a GRPO step takes seconds, so show s/step when slow
            bar.bar_format = bar.bar_format.replace("{rate_noinv_fmt}", "{rate_fmt}")
        return bar

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        self.train_progress_bar.set_description("GRPO")


class RunRecord(Callback):
    """Write `<run_dir>/config.yaml` and `cli_config.yaml` once training starts, i.e. after everything was built
    and loaded: a run that fails to start leaves the previous run's record as it was."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or not isinstance(trainer, MedZeroTrainer):
            return
        cfg = config_of(trainer, pl_module, trainer.datamodule)
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        (trainer.run_dir / "config.yaml").write_text(to_yaml(cfg))
        (trainer.run_dir / "cli_config.yaml").write_text(yaml.safe_dump(cli_config(cfg), sort_keys=False))


# ------------------------------------------------------------------------------------ one config, both doors
def trainer_arguments(cfg: Config) -> dict[str, Any]:
    """`MedZeroTrainer` arguments of a config: what `fit.py` passes and what `cli_config.yaml` holds."""
    settings = dataclasses.asdict(cfg.trainer)
    extra = settings.pop("lightning")
    return {
        **settings,
        **extra,
        "run_dir": cfg.run_dir,
        "logging": dataclasses.asdict(cfg.logging),
        "evaluation": dataclasses.asdict(cfg.eval),
        "checkpointing": dataclasses.asdict(cfg.checkpoint),
    }


def cli_config(cfg: Config) -> dict[str, Any]:
    """The same run as a LightningCLI config: `python -m medzero_pl fit --config <run_dir>/cli_config.yaml`."""
    plain = dataclasses.asdict(cfg)
    layout = {
        "seed_everything": cfg.seed,
        "trainer": trainer_arguments(cfg),
        "model": {k: plain[k] for k in ("model", "grpo", "optim", "rewards", "rollout")} | {"seed": cfg.seed},
        "data": {"data": plain["data"], "prompt": plain["prompt"]},  # the CLI links data.tokenizer to the model
    }
    return redact_secrets(layout, env=os.environ)  # a written record: secrets as ${oc.env:NAME} or redacted


def config_of(trainer: MedZeroTrainer, module: Any, datamodule: Any) -> Config:
    """The `Config` of a built run, whichever door built it (so both write the same record)."""
    settings = dict(trainer.settings)
    logging_config = LoggingConfig(**settings.pop("logging"))
    eval_config = EvalConfig(**settings.pop("evaluation"))
    checkpoint_config = CheckpointConfig(**settings.pop("checkpointing"))
    run_dir = settings.pop("run_dir")
    own = {k: settings.pop(k) for k in TRAINER_FIELDS if k in settings}
    settings.pop("check_val_every_n_epoch", None)
    return Config(
        model=module.model_config,
        data=datamodule.config,
        prompt=datamodule.prompt,
        rewards=list(module.reward_specs),
        grpo=module.grpo,
        optim=module.optim,
        trainer=TrainerConfig(**own, lightning=settings),
        logging=logging_config,
        eval=eval_config,
        checkpoint=checkpoint_config,
        rollout=module.rollout_config,
        run_dir=run_dir,
        seed=module.seed,
    )


def run_identity(module: Any, datamodule: Any) -> dict[str, Any]:
    """The settings a checkpoint is compared against on resume: the module's and data module's hyperparameters."""
    identity = dict(module.hparams)
    if datamodule is not None:
        identity.update(datamodule.hparams)
    return identity
