"""The Evaluation callback during training (every N steps) and on validate (both entry points), with its report."""

from __future__ import annotations

import json

import pytest
import yaml

from medzero_pl.__main__ import main as cli
from medzero_pl.config import ConfigError, compose
from medzero_pl.eval.plots import read_metrics
from medzero_pl.fit import build
from medzero_pl.fit import main as fit
from tests.toy_task import toy_overrides


def eval_overrides(toy, run_dir, shared_data, **fields):
    settings = {
        "eval.benchmarks": "[medqa,pubmedqa]",
        "eval.data_root": shared_data,
        "eval.limit": 3,
        "eval.max_new_tokens": 4,
        "eval.max_prompt_length": 128,
        "eval.prompt": "r1_zero_base",  # plain text: the tiny model has no chat template
    }
    return toy_overrides(toy, run_dir, **(settings | fields))


def test_evaluation_logs_each_benchmark_and_scorer_before_training_and_every_n_steps(toy, tmp_path, shared_data):
    cfg = compose(eval_overrides(toy, tmp_path, shared_data, **{"trainer.max_steps": 2, "eval.every_n_steps": 2}))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    metrics = read_metrics(tmp_path)
    for name in ("medqa", "pubmedqa"):
        for scorer in ("strict", "lenient"):
            assert [step for step, _ in metrics[f"eval/{name}/{scorer}/accuracy"]] == [0, 2]  # steps trained
            assert all(0 <= value <= 1 for _, value in metrics[f"eval/{name}/{scorer}/format_rate"])
        assert all(0 < value <= 4 for _, value in metrics[f"eval/{name}/mean_length"])
        assert all(0 <= value <= 1 for _, value in metrics[f"eval/{name}/well_formed_rate"])
    assert "eval/pubmedqa/strict/macro_f1" in metrics


def test_validate_through_the_lightning_cli_writes_the_report(toy, tmp_path, shared_data):
    overrides = eval_overrides(toy, tmp_path, shared_data, **{"trainer.max_steps": 1, "data.val_fraction": 0.25})
    assert fit(overrides) == 0
    config = yaml.safe_load((tmp_path / "cli_config.yaml").read_text())
    assert config["trainer"]["evaluation"]["benchmarks"] == ["medqa", "pubmedqa"]
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    cli(["validate", "--config", str(tmp_path / "cli_config.yaml"), "--ckpt_path", str(ckpt)])
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| last.ckpt |" in report and "### accuracy (lenient scorer)" in report
    summary = json.loads((tmp_path / "eval" / "report.json").read_text())
    result = summary["rows"]["last.ckpt"]["medqa"]
    assert result["items"] == 3 and result["sampling"]["max_new_tokens"] == 4 and "strict" in result["scorers"]


def test_bad_eval_settings_fail_at_config_time(toy, tmp_path):
    with pytest.raises(ConfigError, match="eval.benchmarks.0='medqb': expected one of medqa"):
        compose(toy_overrides(toy, tmp_path, **{"eval.benchmarks": "[medqb]"}))
    with pytest.raises(ConfigError, match="greedy samples are identical"):
        compose(toy_overrides(toy, tmp_path, **{"eval.benchmarks": "[medqa]", "eval.samples": 4}))


def test_validate_logs_without_lightnings_sync_dist_warning_under_a_process_group(toy, tmp_path, shared_data):
    """The colocated vLLM engine starts a one-process gloo group; Lightning then warns about every epoch-level metric
    logged without `sync_dist` (the evaluation's are global already)."""
    import warnings

    import torch.distributed as dist

    from tests.strategies.launch import free_port

    overrides = eval_overrides(toy, tmp_path, shared_data, **{"trainer.max_steps": 1, "data.val_fraction": 0.25})
    trainer, module, datamodule = build(compose(overrides))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings(record=True) as caught:  # keeps the filters in place, records what passes
            trainer.validate(module, datamodule=datamodule)
    finally:
        dist.destroy_process_group()
    assert not [str(w.message)[:120] for w in caught if "sync_dist=True" in str(w.message)]
    assert "eval/medqa/strict/accuracy" in trainer.callback_metrics
