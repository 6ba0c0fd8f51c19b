"""`python -m medzero_pl.fit [key=value ...]`: compose the config, build everything, check it, then fit.

python -m medzero_pl.fit                                   # embedded default: SmolLM2-135M on the demo MCQs
python -m medzero_pl.fit data=dataset2 grpo.beta=0.04      # pick a recipe, override a field
python -m medzero_pl.fit experiment=rarearena_1.5b print_config=true
python -m medzero_pl.fit resume=auto                       # continue from the run directory's last.ckpt
python -m medzero_pl.fit --help                            # every field with its default and meaning
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger

from medzero_pl.callbacks.checkpointing import AtomicCheckpointIO, LastCheckpoint, latest_checkpoint
from medzero_pl.callbacks.samples import CompletionSamples
from medzero_pl.callbacks.weight_sync import WeightSync
from medzero_pl.config import Config, ConfigError, compose, field_help, to_yaml
from medzero_pl.data.datamodule import MedZeroDataModule
from medzero_pl.module import GRPOModule

log = logging.getLogger("medzero_pl")


class StepProgressBar(TQDMProgressBar):
    """The training stream is endless, so the bar counts towards `max_steps` instead of an epoch length."""

    @property
    def total_train_batches(self) -> int | float:
        mu = self.trainer.lightning_module.grpo.num_iterations
        return self.trainer.max_steps // mu if self.trainer.max_steps > 0 else float("inf")


def trainer_kwargs(cfg: Config) -> dict[str, Any]:
    """Lightning `Trainer` arguments from our `TrainerConfig` (shared by `fit.py` and the LightningCLI)."""
    t = cfg.trainer
    return {
        # Lightning counts optimizer steps; every generation batch makes `num_iterations` of them.
        "max_steps": t.max_steps * cfg.grpo.num_iterations,
        "accelerator": t.accelerator,
        "devices": t.devices,
        "strategy": t.strategy,
        "precision": t.precision,
        "log_every_n_steps": t.log_every_n_steps,
        "val_check_interval": t.val_check_interval,
        "check_val_every_n_epoch": None if t.val_check_interval else 1,
        "limit_val_batches": t.limit_val_batches,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,  # LastCheckpoint does it, atomically and resumably
        "enable_progress_bar": t.enable_progress_bar,
        "use_distributed_sampler": False,  # ResumableBatchSampler shards whole groups by rank itself
        "default_root_dir": cfg.run_dir,
    }


def build(cfg: Config) -> tuple[Trainer, GRPOModule, MedZeroDataModule, LastCheckpoint]:
    """Every object of a run, built from one config. Raises on any problem before training starts."""
    seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    datamodule = MedZeroDataModule(cfg.data, cfg.prompt, tokenizer=cfg.model.name_or_path)
    module = GRPOModule(cfg.model, cfg.grpo, cfg.optim, cfg.rewards, seed=cfg.seed, rollout=cfg.rollout)
    checkpoint = LastCheckpoint(run_dir / "checkpoints", every_n_steps=cfg.trainer.checkpoint_every_n_steps)
    callbacks: list[Callback] = [checkpoint]
    if cfg.logging.log_completions:
        callbacks.append(CompletionSamples(run_dir / "completions.jsonl", per_step=cfg.logging.log_completions))
    if cfg.trainer.enable_progress_bar:
        callbacks.append(StepProgressBar())
    if cfg.rollout.engine != "hf":  # an engine with its own copy of the weights
        callbacks.append(WeightSync())
    trainer = Trainer(**trainer_kwargs(cfg), callbacks=callbacks, logger=loggers(cfg), plugins=[AtomicCheckpointIO()])
    return trainer, module, datamodule, checkpoint


def loggers(cfg: Config) -> list[Logger]:
    """CSV always; W&B offline unless an API key is set (or as `logging.wandb` says).

    Each session (a fresh start or a resume) writes its own `csv/version_N/metrics.csv`: Lightning's CSV writer
    deletes an existing `metrics.csv` in its folder, which would lose the metrics of the steps before a resume.
    """
    run_dir = Path(cfg.run_dir)
    result: list[Logger] = [CSVLogger(run_dir, name="csv")]
    mode = cfg.logging.wandb
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        result.append(
            WandbLogger(
                project=cfg.logging.project, save_dir=str(run_dir), offline=mode == "offline", name=run_dir.name
            )
        )
    return result


def cli_config(cfg: Config) -> dict[str, Any]:
    """The same run as a LightningCLI config: `python -m medzero_pl validate --config <run_dir>/cli_config.yaml`."""
    plain = dataclasses.asdict(cfg)
    trainer = {
        k: v for k, v in trainer_kwargs(cfg).items() if k not in ("enable_checkpointing", "use_distributed_sampler")
    }
    return {
        "seed_everything": cfg.seed,
        "trainer": trainer,
        "model": {k: plain[k] for k in ("model", "grpo", "optim", "rewards", "rollout")} | {"seed": cfg.seed},
        "data": {"data": plain["data"], "prompt": plain["prompt"]},  # the CLI links data.tokenizer to the model
    }


def resolve_resume(cfg: Config) -> str | None:
    if cfg.resume in (None, ""):
        return None
    if cfg.resume == "auto":
        found = latest_checkpoint(cfg.run_dir)
        if found is None:
            log.info("resume=auto: no checkpoint in %s/checkpoints, starting fresh", cfg.run_dir)
        return str(found) if found else None
    if not Path(cfg.resume).is_file():
        raise ConfigError(f"resume={cfg.resume}: no such checkpoint file (use resume=auto to pick the latest)")
    return cfg.resume


def print_help() -> None:
    print(__doc__)
    print("Fields (key=default: meaning):")
    for key, default, doc in field_help():
        print(f"  {key}={default}\n      {doc}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = compose(argv)
        if cfg.print_config:
            print(to_yaml(cfg))
            return 0
        ckpt_path = resolve_resume(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    (run_dir / "cli_config.yaml").write_text(yaml.safe_dump(cli_config(cfg), sort_keys=False))
    trainer, module, datamodule, checkpoint = build(cfg)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if checkpoint.received is not None:
        log.warning("stopped by signal %d; resume with: python -m medzero_pl.fit ... resume=auto", checkpoint.received)
        return 128 + checkpoint.received
    if datamodule.val_items and not cfg.trainer.val_check_interval:
        trainer.validate(module, datamodule=datamodule)
    log.info("done: checkpoint %s, metrics %s", checkpoint.path, Path(trainer.logger.log_dir) / "metrics.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
