"""`plan.*`: the start-up memory check `fit` makes on CUDA (`medzero_pl/plan/run.py`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PlanConfig:
    """The memory planner's check at start-up."""

    check: bool = True
    """On CUDA, refuse a run the planner predicts will not fit the GPU (one line naming the cheapest change that
    makes it fit); false runs it anyway. See docs/planner.md."""
