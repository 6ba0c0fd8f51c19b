"""Measured difficulty: each training question's pass rate under a model, kept in a sidecar file beside the run.

``python -m medzero_pl.difficulty`` writes the file (k samples per question through the evaluation runner); a run
reads it with ``data.pass_rates=<file>``. The user's data files are never modified: the pass rates are stamped into
the examples' metadata when they are loaded (``pass_rate``, and ``1 - pass_rate`` under ``data.difficulty_key`` so
that the curricula order by it), and ``data.pass_rate_range`` keeps the questions inside a band (open-r1's
``recipes/dataset_filtering`` keeps 0 < pass rate < 1: the questions a policy sometimes, but not always, solves).

One line per question, keyed by its source label and id::

    {"source": "phrases_no_exclude_train", "id": "medqa-17", "pass_rate": 0.375, "correct": 3, "samples": 8}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from medzero_pl.data.records import DataFormatError, Example

PASS_RATE_KEY = "pass_rate"
"""The metadata key the measured pass rate is stamped under."""


def question_key(example: Example) -> tuple[str, str]:
    return example.source, example.id


def write_pass_rates(path: str | Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """One JSON line per question (`source`, `id`, `pass_rate`, `correct`, `samples`); written whole, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(dict(row)) + "\n" for row in rows))
    partial.replace(path)
    return path


def read_pass_rates(path: str | Path) -> dict[tuple[str, str], float]:
    """(source, id) -> pass rate, from a file `write_pass_rates` wrote."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, None, "file not found (data.pass_rates: run python -m medzero_pl.difficulty)")
    rates = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rate = float(row[PASS_RATE_KEY])
            rates[(str(row["source"]), str(row["id"]))] = rate
        except (ValueError, KeyError, TypeError) as err:
            raise DataFormatError(path, number, None, f"expected {{source, id, pass_rate}}: {err}") from None
        if not 0 <= rate <= 1:
            raise DataFormatError(path, number, None, f"pass_rate {rate} is not in [0, 1]")
    return rates


def with_pass_rates(
    examples: Sequence[Example], rates: Mapping[tuple[str, str], float], source: str | Path, difficulty_key: str
) -> list[Example]:
    """The examples with `metadata["pass_rate"]` and `metadata[difficulty_key] = 1 - pass_rate`; every example must
    have been measured (`source` names the file in the error)."""
    missing = [f"{e.source}/{e.id}" for e in examples if question_key(e) not in rates]
    if missing:
        raise DataFormatError(
            source,
            None,
            None,
            f"{len(missing)} training questions have no pass rate (first: {', '.join(missing[:3])}); measure the "
            "same data sources with python -m medzero_pl.difficulty",
        )
    stamped = []
    for example in examples:
        rate = rates[question_key(example)]
        metadata = {**example.metadata, PASS_RATE_KEY: rate, difficulty_key: 1.0 - rate}
        stamped.append(dataclasses.replace(example, metadata=metadata))
    return stamped


def within_pass_rates(examples: Sequence[Example], low: float, high: float) -> list[Example]:
    """The examples whose stamped pass rate lies in [low, high]."""
    return [e for e in examples if low <= e.metadata[PASS_RATE_KEY] <= high]


def pass_rate_histogram(rates: Iterable[float], samples: int) -> list[tuple[str, int]]:
    """(pass rate as `correct/samples`, questions) for every possible value of k samples, lowest first."""
    counts = [0] * (samples + 1)
    for rate in rates:
        counts[round(rate * samples)] += 1
    return [(f"{c}/{samples}", n) for c, n in enumerate(counts)]
