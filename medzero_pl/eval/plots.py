"""Training-progress figures from a run's CSV logs, no W&B needed: ``plot_run(run_dir)`` writes PNGs to
``<run_dir>/plots``.

Figures (each written only when its metrics were logged): ``reward.png`` (total and per reward),
``eval_accuracy.png`` and ``eval_format.png`` (per benchmark and scorer, and the well-formed share),
``completion_length.png`` (mean / median / p95 / max, prompt length), ``reasoning_answer_length.png`` (the
``<think>`` and ``<answer>`` contents apart: a format reward gamed by a shrinking reasoning shows here),
``truncated.png`` (share of completions cut at the token budget), ``format.png`` (shares with ``<think>``, empty
``<think>``, ``<answer>``, text after ``</answer>``, reasoning copied from the prompt), ``answer_letters.png`` (the
most frequent answer letter's share against the gold letters'), ``language_mixing.png`` (mixed share per region),
and ``learning_curve.png`` (2 x 2: reward, well-formed share, accuracy, completion and reasoning length; training
samples next to the held-out evaluation) when the run evaluated during training. Every ``csv/version_*/metrics.csv`` of the run is read, so resumed runs plot as one.
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
    "eval_format": ("Benchmark format", "share", [r"^eval/[^/]+/well_formed_rate$", r"^eval/.+/format_rate$"]),
    "completion_length": (
        "Completion length",
        "tokens",
        [r"^completions/(mean|median|p95|max)_length$", r"^prompts/mean_length$"],
    ),
    "reasoning_answer_length": (
        "Reasoning and answer length",
        "tokens",
        [r"^completions/mean_(reasoning|answer)_length$", r"^eval/[^/]+/mean_reasoning_length$"],
    ),
    "truncated": ("Truncated completions", "share", [r"^completions/clipped_ratio$"]),
    "format": (
        "Format",
        "share",
        [
            r"^completions/(think|empty_think|answer|after_answer|copied_reasoning)_ratio$",
            r"^eval/[^/]+/copied_reasoning_rate$",
        ],
    ),
    "answer_letters": (
        "Most frequent answer letter",
        "share of answers",
        [r"^answers/(top|gold_top)_letter_share$", r"^eval/.+/top_letter_share$"],
    ),
    "language_mixing": ("Language mixing", "share", [r"^language/.+_ratio$"]),
}
"""File stem -> (title, y label, metric-name patterns)."""

LEARNING_CURVE: list[tuple[str, list[str]]] = [
    ("reward (training samples)", [r"^reward$", r"^rewards/.+/mean$"]),
    ("format: well-formed share", [r"^rewards/strict_format/mean$", r"^eval/[^/]+/well_formed_rate$"]),
    ("accuracy", [r"^rewards/mcq_accuracy/mean$", r"^eval/.+/accuracy$"]),
    (
        "completion and reasoning length (tokens)",
        [
            r"^completions/mean_length$",
            r"^completions/mean_reasoning_length$",
            r"^eval/[^/]+/mean_length$",
            r"^eval/[^/]+/mean_reasoning_length$",
        ],
    ),
]
"""Panels of ``learning_curve.png``: the one-figure summary of a run (training samples and held-out evaluation)."""


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
    curve = _learning_curve(plt, metrics, out)
    return written + ([curve] if curve else [])


def _learning_curve(plt, metrics: dict[str, list[tuple[float, float]]], out: Path) -> Path | None:
    """The 2 x 2 summary figure, when the run logged an evaluation next to its rewards."""
    panels = [
        (title, sorted(n for n in metrics if any(re.match(p, n) for p in pats))) for title, pats in LEARNING_CURVE
    ]
    if not any(name.startswith("eval/") for _, names in panels for name in names):
        return None
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (title, names) in zip(axes.flat, panels, strict=True):
        for name in names:
            steps, values = zip(*metrics[name], strict=True)
            held_out = name.startswith("eval/")
            ax.plot(steps, values, marker="o" if held_out else None, markersize=4, lw=2 if held_out else 1, label=name)
        ax.set(title=title, xlabel="GRPO steps trained")
        ax.grid(alpha=0.3)
        if names:
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "learning_curve.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
