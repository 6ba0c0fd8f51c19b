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
