"""Evaluation reports shaped like the seeds' tables: rows are models or checkpoints, columns are benchmarks.

``write_report(rows, out_dir)`` writes

* ``report.md``: one table per (scorer, metric), accuracy first, every table titled with its scorer, metric and
  sampling settings; a cell is the percentage with the number of questions, e.g. ``31.0 (n=500)``;
* ``report.json``: every number with its scorer, sample count and sampling settings (``rows -> benchmarks ->
  scorers -> metrics``);
* ``predictions/<row>/<benchmark>.jsonl``: each question's completions and grades (rank 0's share when run on
  several ranks).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

METRIC_ORDER = ("accuracy", "format_rate", "macro_f1", "top1", "top5")
COUNTS = ("scored", "malformed", "errors", "unscored")
"""Metrics that are counts, printed as numbers rather than percentages."""


def _metrics(rows: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for benchmarks in rows.values():
        for result in benchmarks.values():
            for scorer, values in result["scorers"].items():
                for metric in values:
                    seen[(scorer, metric)] = None

    def order(key: tuple[str, str]) -> tuple[int, str, str]:
        scorer, metric = key
        rank = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
        return (rank, metric, scorer)

    return sorted(seen, key=order)


def _sampling(rows: dict[str, dict[str, Any]]) -> str:
    settings = set()
    for benchmarks in rows.values():
        for result in benchmarks.values():
            s = result["sampling"]
            mode = "greedy" if s["temperature"] == 0 else f"temperature {s['temperature']}, top_p {s['top_p']}"
            settings.add(f"{mode}, k={result['samples_per_item']}")
    return "; ".join(sorted(settings))


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    """The Markdown report: one table per (scorer, metric), values in percent."""
    benchmarks = list(dict.fromkeys(name for results in rows.values() for name in results))
    parts = [f"Sampling: {_sampling(rows)}. Cells: percent (n = questions).", ""]
    for scorer, metric in _metrics(rows):
        unit = " (count)" if metric in COUNTS else ""
        parts += [f"### {metric}{unit} ({scorer} scorer)", ""]
        parts.append("| model | " + " | ".join(benchmarks) + " |")
        parts.append("|---|" + "---|" * len(benchmarks))
        for row, results in rows.items():
            cells = []
            for name in benchmarks:
                value = results.get(name, {}).get("scorers", {}).get(scorer, {}).get(metric)
                if value is None:
                    cells.append("-")
                elif metric in COUNTS:
                    cells.append(f"{value:.0f}")
                else:
                    cells.append(f"{100 * value:.1f} (n={results[name]['items']})")
            parts.append(f"| {row} | " + " | ".join(cells) + " |")
        parts.append("")
    lengths = ["| model | " + " | ".join(benchmarks) + " |", "|---|" + "---|" * len(benchmarks)]
    for row, results in rows.items():
        cells = [f"{results[n]['mean_length']:.0f}" if n in results else "-" for n in benchmarks]
        lengths.append(f"| {row} | " + " | ".join(cells) + " |")
    parts += ["### mean completion length (tokens)", "", *lengths, ""]
    return "\n".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "row"


def write_report(
    rows: dict[str, dict[str, Any]], out_dir: str | Path, meta: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.json`` and the predictions files; return the two report paths.

    Args:
        rows: Row label (a model or checkpoint) -> benchmark -> a result of ``evaluate_benchmark``.
        meta: Anything else worth keeping (models, checkpoints, command line, settings).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {}), "rows": {}}
    for row, results in rows.items():
        summary["rows"][row] = {name: {k: v for k, v in r.items() if k != "records"} for name, r in results.items()}
        for name, result in results.items():
            if result.get("records"):
                path = out / "predictions" / _slug(row) / f"{name}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_atomically(
                    path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in result["records"])
                )
    md, js = out / "report.md", out / "report.json"
    _write_atomically(md, "# Evaluation\n\n" + markdown_table(rows))
    _write_atomically(js, json.dumps(summary, indent=2, ensure_ascii=False))
    return md, js


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and rename: the report is rewritten after every benchmark, and a kill while
    writing must leave the previous version, not half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
