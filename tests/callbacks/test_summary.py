"""The one-line parameter summary that replaces Lightning's model-summary table (whose FLOPs column is always 0)."""

from __future__ import annotations

import logging

import torch
from lightning.pytorch.callbacks import ModelSummary

from medzero_pl.callbacks.summary import ParameterSummary, parameter_counts
from medzero_pl.config import compose
from medzero_pl.fit import build
from tests.toy_task import toy_overrides


class Frozen(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(100, 100)  # 10,100 frozen
        self.head = torch.nn.Linear(100, 4)  # 404 trainable
        self.body.requires_grad_(False)


def test_counts_split_total_and_trainable_and_read_the_full_size_of_a_partitioned_parameter():
    model = Frozen()
    assert parameter_counts(model) == (10_504, 404)
    model.head.weight.ds_numel = 4_000  # ZeRO-3 leaves a 0-element local tensor and records the full size
    model.head.weight.data = torch.empty(0)
    assert parameter_counts(model) == (10_504 - 400 + 4_000, 4 + 4_000)


def test_a_run_logs_one_summary_line_and_no_flops_table(toy, tmp_path, caplog):
    trainer, module, _ = build(compose(toy_overrides(toy, tmp_path)))
    assert not [c for c in trainer.callbacks if isinstance(c, ModelSummary)]
    module.policy = Frozen()
    with caplog.at_level(logging.INFO, logger="medzero_pl.callbacks.summary"):
        ParameterSummary().on_fit_start(trainer, module)
    lines = [r.getMessage() for r in caplog.records if r.name == "medzero_pl.callbacks.summary"]
    assert lines == ["policy Frozen: 10,504 parameters, 404 trainable (3.85%), float32"]
