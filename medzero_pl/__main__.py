"""`python -m medzero_pl fit|validate --config <file> [--ckpt_path ...]`: LightningCLI over the same run.

The trainer is `MedZeroTrainer` (medzero_pl/run.py), the same one `python -m medzero_pl.fit` builds, so both entry
points give the same run. Every fit writes `<run_dir>/cli_config.yaml`, a config in this CLI's layout:

    python -m medzero_pl validate --config runs/default/cli_config.yaml --ckpt_path runs/default/checkpoints/last.ckpt
    python -m medzero_pl fit --config runs/default/cli_config.yaml --ckpt_path auto     # resume the run
"""

from __future__ import annotations

import sys

from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import LightningCLI

from medzero_pl.data.datamodule import MedZeroDataModule
from medzero_pl.errors import report_user_errors
from medzero_pl.module import GRPOModule
from medzero_pl.run import MedZeroTrainer


class MedZeroCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # The data module tokenizes prompts with the policy's tokenizer: one setting, not two.
        parser.link_arguments("model", "data.tokenizer", compute_fn=_tokenizer_of, apply_on="instantiate")


def _tokenizer_of(module: GRPOModule) -> str:
    return module.model_config.name_or_path


def main(args: list[str] | None = None) -> MedZeroCLI:
    # `--model.grpo.help GRPOConfig` (and every other settings class) shows each field's docstring, as `fit --help`.
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    return MedZeroCLI(
        GRPOModule,
        MedZeroDataModule,
        trainer_class=MedZeroTrainer,
        save_config_callback=None,  # the run writes <run_dir>/config.yaml and cli_config.yaml itself
        parser_kwargs={"parser_mode": "omegaconf"},
        args=args,
    )


def exit_code(args: list[str] | None = None) -> int:
    """0, 2 for a user error (one `error:` line), or 128 + signal when a signal stopped training."""

    def run() -> int:
        signal = main(args).trainer.stopped_by_signal
        return 128 + signal if signal is not None else 0

    return report_user_errors(run)


if __name__ == "__main__":
    sys.exit(exit_code())
