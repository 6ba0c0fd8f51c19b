"""Rollout engines behind the ``RolloutEngine`` interface (``base.py``); vLLM is imported lazily in ``vllm.py``."""

from medzero_pl.rollout.base import RolloutEngine, Rollouts, SamplingParams
from medzero_pl.rollout.hf import HFRolloutEngine

__all__ = ["HFRolloutEngine", "RolloutEngine", "Rollouts", "SamplingParams"]
