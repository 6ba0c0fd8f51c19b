"""MedZeroDataModule: reads, mixes, splits and renders the prompts; serves batches that resume exactly (the stream
starts at the module's `data_position`, which a resumed run restores before the data loader is built).

A training batch is a dict of lists, one entry per prompt: ``prompt_ids`` (token ids), ``prompts`` (rendered
text) and every gold column of `Example.columns()` that the rewards read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from medzero_pl.data.config import DataConfig
from medzero_pl.data.difficulty import read_pass_rates, with_pass_rates, within_pass_rates
from medzero_pl.data.mixing import apply_curriculum, load_sources, mix, train_val_split
from medzero_pl.data.prompts import PromptTemplate, render_prompt
from medzero_pl.data.readers import resolve_path
from medzero_pl.data.records import DataFormatError, Example
from medzero_pl.model.loading import load_tokenizer
from medzero_pl.redaction import redact_secrets

log = logging.getLogger(__name__)


class ResumableBatchSampler(Sampler[list[int]]):
    """An endless stream of batches: epoch 0 in curriculum order, later epochs reshuffled with (seed, epoch).

    Its whole state is the number of batches already consumed, so a resumed run continues with the same next
    batch. Incomplete tail batches are dropped so that every step sees the same number of prompts. With several
    ranks each takes every `world_size`-th prompt of the global batch, so whole groups stay on one rank.
    """

    def __init__(
        self, first_epoch: list[int], batch_size: int, seed: int, consumed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if len(first_epoch) < batch_size:
            raise ValueError(
                f"data.prompts_per_step={batch_size} is larger than the training set ({len(first_epoch)} examples)"
            )
        self.first_epoch = first_epoch
        self.batch_size = batch_size
        self.seed = seed
        self.consumed = consumed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = len(first_epoch) // batch_size

    def epoch_order(self, epoch: int) -> list[int]:
        if epoch == 0:
            return self.first_epoch
        generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return [self.first_epoch[i] for i in torch.randperm(len(self.first_epoch), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        position = self.consumed
        while True:
            epoch, offset = divmod(position, self.batches_per_epoch)
            order = self.epoch_order(epoch)
            for b in range(offset, self.batches_per_epoch):
                yield order[b * self.batch_size : (b + 1) * self.batch_size][self.rank :: self.world_size]
            position = (epoch + 1) * self.batches_per_epoch


class MedZeroDataModule(LightningDataModule):
    """Serves MCQ and diagnosis prompts with their gold fields; nothing is downloaded."""

    def __init__(
        self,
        data: DataConfig | None = None,
        prompt: PromptTemplate | None = None,
        tokenizer: str = "smollm2-135m-instruct",
    ) -> None:
        super().__init__()
        self.config = data or DataConfig()
        self.prompt = prompt or PromptTemplate()
        # Saved in checkpoints, so a resume can tell whether the data stream changed (plain containers only).
        self.save_hyperparameters(redact_secrets({"data": asdict(self.config), "prompt": asdict(self.prompt)}))
        self.tokenizer_name = tokenizer
        self.train_items: list[dict[str, Any]] = []
        self.val_items: list[dict[str, Any]] = []
        self.held_out_questions: set[str] = set()
        """Questions training must not see (the evaluation's items; set by the trainer before `setup`)."""
        self._tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer

    def prepare_data(self) -> None:
        """Check that every source file exists before anything is built (no downloads happen here)."""
        for source in [*self.config.sources, *self.config.val_sources]:
            path = resolve_path(source.path)
            if not path.exists():
                raise DataFormatError(path, None, None, f"file not found (data source format={source.format!r})")

    def setup(self, stage: str | None = None) -> None:
        if self.train_items or self.val_items:
            return
        cfg = self.config
        train = mix(load_sources(cfg.sources), cfg.sources, seed=cfg.seed, train_size=cfg.train_size)
        if cfg.val_sources:
            val = [ex for group in load_sources(cfg.val_sources) for ex in group]
        elif cfg.val_fraction > 0:
            train, val = train_val_split(train, cfg.val_fraction, seed=cfg.seed)
        else:
            val = []
        if cfg.exclude_eval_questions and self.held_out_questions:
            train = drop_held_out(train, self.held_out_questions)
            if not train:
                sources = ", ".join(source.path for source in cfg.sources)
                raise DataFormatError(sources, None, None, "every training question is an evaluation item (eval.*)")
        if cfg.pass_rates:
            train = with_pass_rates(train, read_pass_rates(cfg.pass_rates), cfg.pass_rates, cfg.difficulty_key)
            if cfg.pass_rate_range is not None:
                low, high = cfg.pass_rate_range
                measured = len(train)
                train = within_pass_rates(train, low, high)
                log.info(
                    "data: %d of %d training questions have a pass rate in [%g, %g]", len(train), measured, low, high
                )
                if not train:
                    raise DataFormatError(cfg.pass_rates, None, None, f"no question has a pass rate in [{low}, {high}]")
        train = apply_curriculum(
            train,
            cfg.curriculum,
            seed=cfg.seed,
            key=cfg.difficulty_key,
            batch_size=cfg.prompts_per_step,
            easy_share=cfg.easy_share,
            hard_above=cfg.hard_above,
        )
        report_duplicates(train, val)
        self.train_items = [self._render(ex) for ex in train]
        self.val_items = [self._render(ex) for ex in val]
        log.info("data: %d training prompts, %d validation prompts", len(self.train_items), len(self.val_items))
        cut = [item["id"] for item in self.train_items + self.val_items if item.pop("truncated")]
        if cut:
            log.warning(
                "%d prompts were longer than data.max_prompt_length=%d tokens and keep only their last tokens "
                "(first: %s)",
                len(cut),
                self.config.max_prompt_length,
                ", ".join(cut[:5]),
            )

    def _render(self, example: Example) -> dict[str, Any]:
        text = render_prompt(example, self.prompt, self.tokenizer)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.config.max_prompt_length
        return {"prompt_ids": ids[-limit:], "prompts": text, "truncated": len(ids) > limit, **example.columns()}

    def train_dataloader(self) -> DataLoader:
        """The endless stream of training batches, from the module's `data_position` on (restored first on resume)."""
        sampler = ResumableBatchSampler(
            list(range(len(self.train_items))),
            self.config.prompts_per_step,
            seed=self.config.seed,
            consumed=self.trainer.lightning_module.data_position if self.trainer else 0,
            rank=self.trainer.global_rank if self.trainer else 0,
            world_size=self.trainer.world_size if self.trainer else 1,
        )
        return DataLoader(self.train_items, batch_sampler=sampler, collate_fn=collate, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_items, batch_size=self.config.val_batch_size, collate_fn=collate, num_workers=0)


def report_duplicates(train: list[Example], val: list[Example]) -> None:
    """Warn about repeated ids and about validation questions that also sit in training (a leaked evaluation)."""
    seen: dict[tuple[str, str], int] = {}
    for ex in train:
        seen[(ex.source, ex.id)] = seen.get((ex.source, ex.id), 0) + 1
    repeated = [f"{source}/{id_}" for (source, id_), n in seen.items() if n > 1]
    if repeated:
        log.warning("%d ids occur more than once in the training data: %s", len(repeated), ", ".join(repeated[:5]))
    train_questions = normalised_questions(train)
    leaked = [ex.id for ex in val if _normalised(ex.question) in train_questions]
    if leaked:
        log.warning(
            "%d of %d validation questions also occur in the training data (validation is not held out): %s",
            len(leaked),
            len(val),
            ", ".join(leaked[:5]),
        )


def drop_held_out(train: list[Example], held_out: set[str]) -> list[Example]:
    """`train` without the examples whose question is in `held_out` (normalised texts)."""
    kept = [ex for ex in train if _normalised(ex.question) not in held_out]
    if len(kept) < len(train):
        log.info("data: %d training questions are evaluation items and were left out", len(train) - len(kept))
    return kept


def normalised_questions(examples: Iterable[Example]) -> set[str]:
    """The case- and whitespace-insensitive question texts that `exclude_eval_questions` compares."""
    return {_normalised(ex.question) for ex in examples}


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def collate(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A dict of lists (no tensors): prompts have different lengths and the gold fields are not numeric."""
    return {key: [item[key] for item in items] for key in items[0]}
