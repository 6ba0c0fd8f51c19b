"""`python -m medzero_pl fit|validate --config <file> [--ckpt_path ...]`: LightningCLI over the same dataclasses.

Every run of `python -m medzero_pl.fit` writes `<run_dir>/cli_config.yaml`, a config in this CLI's layout:

    python -m medzero_pl validate --config runs/default/cli_config.yaml --ckpt_path runs/default/checkpoints/last.ckpt
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from medzero_pl.callbacks.checkpointing import AtomicCheckpointIO, LastCheckpoint
from medzero_pl.callbacks.language import LanguageMixing
from medzero_pl.callbacks.samples import CompletionSamples
from medzero_pl.callbacks.stats import CompletionStats
from medzero_pl.data.datamodule import MedZeroDataModule
from medzero_pl.module import GRPOModule


class MedZeroCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # The data module tokenizes prompts with the policy's tokenizer: one setting, not two.
        parser.link_arguments("model", "data.tokenizer", compute_fn=_tokenizer_of, apply_on="instantiate")


def _tokenizer_of(module: GRPOModule) -> str:
    return module.model_config.name_or_path


def main(args: list[str] | None = None) -> MedZeroCLI:
    return MedZeroCLI(
        GRPOModule,
        MedZeroDataModule,
        parser_kwargs={"parser_mode": "omegaconf"},
        trainer_defaults={
            "enable_checkpointing": False,
            "use_distributed_sampler": False,
            "num_sanity_val_steps": 0,
            "plugins": [AtomicCheckpointIO()],
            "callbacks": [LastCheckpoint(), CompletionStats(), LanguageMixing(), CompletionSamples()],
        },
        save_config_kwargs={"overwrite": True},
        args=args,
    )


if __name__ == "__main__":
    main()
