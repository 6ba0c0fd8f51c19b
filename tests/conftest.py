"""Shared test fixtures: the real benchmark files in ../shared/data, and no network for Hugging Face libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # set before any test imports transformers or datasets: nothing is downloaded

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real benchmark files (project root/../shared/data); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark files not found at {SHARED_DATA} (expected shared/data beside the project)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> dict[str, Path]:
    """A tiny random character-level model and the 'say the letter' toy questions."""
    from tests.tiny import make_tiny_model_dir
    from tests.toy_task import write_toy_questions

    root = tmp_path_factory.mktemp("toy")
    return {"model": make_tiny_model_dir(root / "model"), "data": write_toy_questions(root / "toy.jsonl")}


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """Ranks and launchers a test started (tests/strategies/launch.py) are killed when it ends, passed or failed."""
    from tests.strategies.launch import kill_leftovers

    yield
    kill_leftovers()
