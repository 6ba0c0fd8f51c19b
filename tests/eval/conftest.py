"""Evaluation fixtures: benchmark paths in ../shared/data and a self-written GPQA file (GPQA is never shipped)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

GPQA_HEADER = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]


@pytest.fixture(scope="session")
def gpqa_file(tmp_path_factory) -> Path:
    """Three rows written for this test in GPQA's CSV layout (two Biology, one Physics)."""
    path = tmp_path_factory.mktemp("gpqa") / "gpqa_main.csv"
    rows = [
        ["Which organelle makes ATP?", "Mitochondrion", "Ribosome", "Golgi apparatus", "Lysosome", "Biology", "r1"],
        ["Which base pairs with adenine in DNA?", "Thymine", "Uracil", "Guanine", "Cytosine", "Biology", "r2"],
        ["What is the unit of force?", "Newton", "Joule", "Watt", "Pascal", "Physics", "r3"],
    ]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*GPQA_HEADER, "High-level domain", "Record ID"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def eval_paths(shared_data, gpqa_file) -> dict[str, str]:
    """Paths for the benchmarks whose default file is not in ../shared/data."""
    return {"gpqa_medical": str(gpqa_file), "rarearena": str(shared_data / "rarearena" / "RDC_synthetic.jsonl")}
