"""`python -m medzero_pl.fit [key=value ...]`: compose the config, build the run, check it, then fit.

python -m medzero_pl.fit                                   # embedded default: SmolLM2-135M on the demo MCQs
python -m medzero_pl.fit data=dataset2 grpo.beta=0.04      # pick a recipe, override a field
python -m medzero_pl.fit experiment=rarearena_1.5b print_config=true
python -m medzero_pl.fit resume=auto                       # continue from the run directory's checkpoint
python -m medzero_pl.fit --help                            # every field with its default and meaning

On CUDA, a run the memory planner (`python -m medzero_pl.plan`) predicts cannot fit is refused before anything is
built, with the cheapest change that makes it fit; `plan.check=false` runs it anyway.

What a run is (callbacks, loggers, checkpointing, the run directory's rules) is defined once in
`medzero_pl/run.py` and shared with the LightningCLI (`python -m medzero_pl fit|validate`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from lightning.pytorch import seed_everything

from medzero_pl.config import Config, compose, field_help, to_yaml
from medzero_pl.data.datamodule import MedZeroDataModule
from medzero_pl.errors import report_user_errors
from medzero_pl.module import GRPOModule
from medzero_pl.plan.run import check_fits
from medzero_pl.run import MedZeroTrainer, trainer_arguments
from medzero_pl.strategies import leave_process_group

log = logging.getLogger("medzero_pl")


def build(cfg: Config) -> tuple[MedZeroTrainer, GRPOModule, MedZeroDataModule]:
    """Every object of a run, built from one config."""
    seed_everything(cfg.seed, workers=True)
    datamodule = MedZeroDataModule(cfg.data, cfg.prompt, tokenizer=cfg.model.name_or_path)
    module = GRPOModule(cfg.model, cfg.grpo, cfg.optim, cfg.rewards, seed=cfg.seed, rollout=cfg.rollout)
    trainer = MedZeroTrainer(
        **trainer_arguments(cfg), overwrite=cfg.overwrite, resume_allow_changes=cfg.resume_allow_changes
    )
    return trainer, module, datamodule


def check_memory(cfg: Config) -> None:
    """On CUDA, refuse a run the memory planner predicts cannot fit this machine's GPUs (`plan.check=false` skips it;
    `python -m medzero_pl.plan` prints the whole plan)."""
    if cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available():
        return
    check_fits(cfg, torch.cuda.mem_get_info()[1], devices_if_auto=torch.cuda.device_count())


def print_help() -> None:
    print(__doc__)
    print("Fields (key=default: meaning):")
    for key, default, doc in field_help():
        print(f"  {key}={default}\n      {doc}")


def run(argv: list[str]) -> int:
    """Compose, build and fit; the exit code is 0, or 128 + signal when a signal stopped the run."""
    cfg = compose(argv)
    if cfg.print_config:
        print(to_yaml(cfg))
        return 0
    check_memory(cfg)
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume or None)
    leave_process_group()
    if trainer.stopped_by_signal is not None:
        log.warning(
            "stopped by signal %d; resume with: python -m medzero_pl.fit ... resume=auto", trainer.stopped_by_signal
        )
        return 128 + trainer.stopped_by_signal
    log.info("done: checkpoint %s, metrics %s", trainer.checkpoint.path, Path(trainer.logger.log_dir) / "metrics.csv")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return report_user_errors(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
