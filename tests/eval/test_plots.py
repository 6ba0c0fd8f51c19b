"""Training-progress PNGs from a run's CSV logs (resumed runs read as one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from medzero_pl.eval.plots import plot_run, read_metrics

ROOT = Path(__file__).resolve().parents[2]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def fake_run(root: Path) -> Path:
    header = ["epoch", "step", "reward", "completions/mean_length", "completions/clipped_ratio", "language/mixed_ratio"]
    write_csv(
        root / "csv" / "version_0" / "metrics.csv", header, [[0, 0, 0.1, 50, 0.0, 0.0], [0, 1, 0.2, 60, 0.1, 0.0]]
    )
    header2 = ["epoch", "step", "reward", "eval/medqa/strict/accuracy", "completions/think_ratio"]
    write_csv(root / "csv" / "version_1" / "metrics.csv", header2, [[0, 2, 0.3, None, 0.9], [0, 2, None, 0.25, None]])
    return root


def test_metrics_of_all_sessions_are_merged_by_step(tmp_path):
    metrics = read_metrics(fake_run(tmp_path))
    assert metrics["reward"] == [(0.0, 0.1), (1.0, 0.2), (2.0, 0.3)]
    assert metrics["eval/medqa/strict/accuracy"] == [(2.0, 0.25)]


def test_one_png_per_figure_with_data(tmp_path):
    written = plot_run(fake_run(tmp_path))
    stems = sorted(p.stem for p in written)
    assert stems == [
        "completion_length",
        "eval_accuracy",
        "format",
        "language_mixing",
        "learning_curve",  # the run evaluated during training
        "reward",
        "truncated",
    ]
    assert all(p.parent == tmp_path / "plots" and p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_the_script(tmp_path):
    run = fake_run(tmp_path / "run")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_run.py"), str(run), str(tmp_path / "png")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "png" / "reward.png").is_file()
    empty = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_run.py"), str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert empty.returncode == 1 and "no metrics" in empty.stderr


def test_no_learning_curve_without_an_evaluation_during_training(tmp_path):
    write_csv(tmp_path / "csv" / "version_0" / "metrics.csv", ["epoch", "step", "reward"], [[0, 0, 0.1], [0, 1, 0.2]])
    assert [p.stem for p in plot_run(tmp_path)] == ["reward"]


def test_reasoning_and_answer_lengths_and_the_letter_share_get_their_own_figures(tmp_path):
    header = [
        "epoch",
        "step",
        "completions/mean_reasoning_length",
        "completions/mean_answer_length",
        "answers/top_letter_share",
        "answers/gold_top_letter_share",
    ]
    write_csv(tmp_path / "csv" / "version_0" / "metrics.csv", header, [[0, 0, 30, 2, 0.3, 0.3], [0, 1, 3, 1, 0.9, 0.3]])
    assert sorted(p.stem for p in plot_run(tmp_path)) == ["answer_letters", "reasoning_answer_length"]
