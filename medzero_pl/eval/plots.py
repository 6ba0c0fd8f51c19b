"""Training-progress figures from a run's CSV logs, no W&B needed: ``plot_run(run_dir)`` writes PNGs to
``<run_dir>/plots``.

Figures (each written only when its metrics were logged): ``reward.png`` (total and per reward),
``eval_accuracy.png`` (per benchmark and scorer), ``completion_length.png`` (mean / median / p95 / max, prompt
length), ``truncated.png`` (share of completions cut at the token budget), ``format.png`` (shares with
``<think>``, empty ``<think>``, ``<answer>``, text after ``</answer>``) and ``language_mixing.png`` (mixed share
per region). Every ``csv/version_*/metrics.csv`` of the run is read, so resumed runs plot as one.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

FIGURES: dict[str, tuple[str, str, list[str]]] = {
    "reward": ("Reward", "reward", [r"^reward$", r"^rewards/.+/mean$"]),
    "eval_accuracy": ("Benchmark accuracy", "accuracy", [r"^eval/.+/accuracy$"]),
    "completion_length": (
        "Completion length",
        "tokens",
        [r"^completions/(mean|median|p95|max)_length$", r"^prompts/mean_length$"],
    ),
    "truncated": ("Truncated completions", "share", [r"^completions/clipped_ratio$"]),
    "format": ("Format", "share", [r"^completions/(think|empty_think|answer|after_answer)_ratio$"]),
    "language_mixing": ("Language mixing", "share", [r"^language/.+_ratio$"]),
}
"""File stem -> (title, y label, metric-name patterns)."""


def read_metrics(run_dir: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Metric name -> sorted (step, value) pairs from every ``metrics.csv`` under ``run_dir``."""
    series: dict[str, dict[float, float]] = defaultdict(dict)
    for path in sorted(Path(run_dir).rglob("metrics.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                step = row.get("step")
                if not step:
                    continue
                for name, value in row.items():
                    if name in ("step", "epoch") or value in ("", None):
                        continue
                    number = float(value)
                    if math.isfinite(number):
                        series[name][float(step)] = number
    return {name: sorted(points.items()) for name, points in series.items()}


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the figures whose metrics the run logged; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "plots"
    written = []
    for stem, (title, ylabel, patterns) in FIGURES.items():
        names = sorted(n for n in metrics if any(re.match(p, n) for p in patterns))
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for name in names:
            steps, values = zip(*metrics[name], strict=True)
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=name)
        ax.set(title=title, xlabel="GRPO step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
