"""Real benchmark rows for the reward tests, read with plain json from the shared data folder (``../shared/data``
from the project root); tests that need them are skipped with the reason when the folder is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MEDQA = DATA / "medqa" / "phrases_no_exclude_test.jsonl"
MEDXPERTQA = DATA / "medxpertqa" / "MedXpertQA_test.jsonl"
RDC = DATA / "rarearena" / "RDC_synthetic.jsonl"
HYPERNYMS = DATA / "rarearena" / "orphanet_hypernym.json"


def _jsonl(path: Path, limit: int | None = None) -> list[dict]:
    if not path.exists():
        pytest.skip(f"shared benchmark data not found: {path} (tests read it from ../shared/data)")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:limit] if limit else rows


@pytest.fixture(scope="session")
def medqa_rows() -> list[dict]:
    """MedQA-USMLE test rows: ``{question, options{A-D}, answer, answer_idx, ...}``."""
    return _jsonl(MEDQA, 200)


@pytest.fixture(scope="session")
def medxpertqa_rows() -> list[dict]:
    """MedXpertQA Text rows: ``{id, question, options{A-J}, label, ...}``."""
    return _jsonl(MEDXPERTQA, 200)


@pytest.fixture(scope="session")
def rdc_rows() -> dict[str, dict]:
    """The synthetic RareArena RDC cases by ``_id``: ``{case_report, test_results, diagnosis, Orpha_name, ...}``."""
    return {row["_id"]: row for row in _jsonl(RDC)}


@pytest.fixture(scope="session")
def hypernym_path() -> Path:
    if not HYPERNYMS.exists():
        pytest.skip(f"shared benchmark data not found: {HYPERNYMS}")
    return HYPERNYMS
