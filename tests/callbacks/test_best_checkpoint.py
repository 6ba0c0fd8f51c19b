"""best.ckpt follows a held-out metric: written when the metric improves (max or min), never for a worse or a
repeated value, its score and step recorded beside it and restored on resume; and end to end, a run that validates
every step keeps the checkpoint of its best validation, which `python -m medzero_pl.export` reads."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from medzero_pl.callbacks.checkpointing import BestCheckpoint, is_better
from medzero_pl.config import compose
from medzero_pl.fit import build
from tests.toy_task import toy_overrides

ROOT = Path(__file__).resolve().parents[2]


class StubTrainer:
    """What BestCheckpoint uses of a Trainer: the metrics, the save, rank zero."""

    def __init__(self) -> None:
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.saved: list[int] = []
        self.is_global_zero = True
        self.module = SimpleNamespace(grpo_step=0)

    def save_checkpoint(self, path, weights_only=False) -> None:
        Path(path).write_text(f"step {self.module.grpo_step}")
        self.saved.append(self.module.grpo_step)

    def step(self, callback: BestCheckpoint, value: float | None) -> None:
        self.module.grpo_step += 1
        if value is not None:
            self.callback_metrics["val/score"] = torch.tensor(value)
        callback.on_train_batch_end(self, self.module)


@pytest.mark.parametrize(
    ("mode", "values", "saved_at", "best"),
    [
        ("max", [0.2, None, 0.5, 0.4, 0.5, 0.7, 0.1], [1, 3, 6], 0.7),  # None: no evaluation this step
        ("min", [0.2, None, 0.5, 0.1, 0.1, 0.3], [1, 4], 0.1),
        ("max", [float("nan"), 0.3], [2], 0.3),
    ],
)
def test_best_ckpt_follows_the_metric_across_evaluations(tmp_path, mode, values, saved_at, best):
    trainer, callback = StubTrainer(), BestCheckpoint("val/score", mode, tmp_path)
    for value in values:
        trainer.step(callback, value)
    assert trainer.saved == saved_at and callback.score == pytest.approx(best)
    record = json.loads((tmp_path / "best.json").read_text())
    assert record == {"metric": "val/score", "mode": mode, "score": pytest.approx(best), "step": saved_at[-1]}
    assert (tmp_path / "best.ckpt").read_text() == f"step {saved_at[-1]}"


def test_the_best_score_survives_a_resume_from_the_state_or_the_record(tmp_path):
    trainer, callback = StubTrainer(), BestCheckpoint("val/score", "max", tmp_path)
    for value in (0.2, 0.6):
        trainer.step(callback, value)
    state = callback.state_dict()  # what last.ckpt holds after step 2

    resumed, again = StubTrainer(), BestCheckpoint("val/score", "max", tmp_path)
    resumed.module.grpo_step = 2
    again.load_state_dict(state)
    again.on_train_start(resumed, resumed.module)
    resumed.step(again, 0.5)  # worse than before the resume: best.ckpt stays
    assert resumed.saved == [] and again.score == pytest.approx(0.6)

    # best.ckpt written after last.ckpt (a best step between two saves): best.json is the newer record
    (tmp_path / "best.json").write_text(json.dumps({"metric": "val/score", "mode": "max", "score": 0.9, "step": 3}))
    late, third = StubTrainer(), BestCheckpoint("val/score", "max", tmp_path)
    late.module.grpo_step = 2
    third.load_state_dict(state)
    third.on_train_start(late, late.module)
    late.step(third, 0.8)
    assert late.saved == [] and third.score == 0.9

    other = BestCheckpoint("val/other", "max", tmp_path)  # another metric: the old record does not apply
    other.load_state_dict(state)
    other.on_train_start(late, late.module)
    assert other.score is None


def test_better_is_strict():
    assert is_better(0.5, None, "max") and is_better(0.6, 0.5, "max") and not is_better(0.5, 0.5, "max")
    assert is_better(0.4, 0.5, "min") and not is_better(0.5, 0.5, "min")


def val_rewards(run_dir: Path) -> list[tuple[int, float]]:
    """(GRPO step, val/reward) of every validation the run logged, over all its sessions."""
    out = []
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row.get("val/reward"):
                out.append((int(row["step"]), float(row["val/reward"])))
    return out


def test_a_run_keeps_the_checkpoint_of_its_best_validation_and_exports_it(toy, tmp_path):
    settings = {
        "data.val_fraction": 0.25,
        "trainer.val_check_interval": 1,
        "trainer.max_steps": 4,
        "checkpoint.best_metric": "val/reward",
    }
    trainer, module, datamodule = build(compose(toy_overrides(toy, tmp_path, **settings)))
    trainer.fit(module, datamodule=datamodule)
    record = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    history = [v for _, v in val_rewards(tmp_path)]
    assert len(history) >= 4 and record["score"] == pytest.approx(max(history))
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] == record["step"] * module.grpo.num_iterations
    out = tmp_path / "exported"
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "medzero_pl.export", str(tmp_path / "checkpoints" / "best.ckpt"), str(out)]
    subprocess.run(command, check=True, env=env, cwd=ROOT, capture_output=True)
    assert (out / "config.json").is_file()


def test_a_best_metric_the_run_does_not_log_is_refused(toy, tmp_path):
    with pytest.raises(Exception, match="checkpoint.best_metric=val/reward: validation runs only at the end"):
        compose(toy_overrides(toy, tmp_path, **{"data.val_fraction": 0.25, "checkpoint.best_metric": "val/reward"}))
