"""`training_step` returns the step's results, and the statistics/samples callbacks see them in both entry points."""

from __future__ import annotations

import json

from lightning.pytorch import Callback

from medzero_pl.__main__ import main as cli
from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.fit import main as fit
from tests.toy_task import toy_overrides


class Capture(Callback):
    def __init__(self) -> None:
        self.outputs = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.outputs.append(outputs)


def test_the_step_returns_one_entry_per_completion(toy, tmp_path):
    cfg = compose(toy_overrides(toy, tmp_path, **{"trainer.max_steps": 1}))
    trainer, module, datamodule = build(cfg)
    capture = Capture()
    trainer.callbacks.append(capture)
    trainer.fit(module, datamodule=datamodule)
    (out,) = capture.outputs
    n = cfg.data.prompts_per_step * cfg.grpo.num_generations
    for key in ("prompts", "completions", "completion_ids", "completion_lengths", "prompt_lengths", "truncated"):
        assert len(out[key]) == n, key
    assert out["completion_lengths"] == [len(ids) for ids in out["completion_ids"]]
    assert out["truncated"] == [r == "length" for r in out["finish_reasons"]]
    assert set(out["rewards"]) == {"letter_share"} and len(out["reward"]) == len(out["advantages"]) == n
    assert out["columns"]["answer"][:8] == [out["columns"]["answer"][0]] * 8  # prompt-major groups
    assert abs(sum(out["advantages"][:8])) < 1e-5  # group-normalised
    assert trainer.callback_metrics["completions/mean_length"] == sum(out["completion_lengths"]) / n
    assert "completions/think_ratio" in trainer.callback_metrics
    assert "language/after_answer_mixed_ratio" in trainer.callback_metrics


def test_the_lightning_cli_logs_statistics_and_samples_too(toy, tmp_path):
    assert fit(toy_overrides(toy, tmp_path, **{"trainer.max_steps": 1})) == 0
    rows = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert rows and "advantage" in rows[0] and "reward/letter_share" in rows[0]
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"completions/mean_length", "completions/p95_length", "completions/think_ratio"} <= set(header)
    assert {"reward.png", "completion_length.png", "format.png", "language_mixing.png"} <= {
        p.name for p in (tmp_path / "plots").iterdir()
    }  # fit writes the training-progress figures at the end

    cli_dir = tmp_path / "cli"
    config = tmp_path / "cli_config.yaml"
    result = cli(["fit", "--config", str(config), "--trainer.max_steps", "1", "--trainer.run_dir", str(cli_dir)])
    assert "completions/p95_length" in result.trainer.callback_metrics
    assert (cli_dir / "completions.jsonl").is_file()
