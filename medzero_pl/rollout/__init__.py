"""Rollout engines behind the ``RolloutEngine`` interface (``base.py``), chosen by name from ``ENGINES``; vLLM is
imported lazily in ``vllm.py``."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.rollout.base import ENGINES, EngineUnavailable, RolloutEngine, Rollouts, SamplingParams, engine_class
from medzero_pl.rollout.config import RolloutConfig
from medzero_pl.rollout.hf import HFRolloutEngine


def build_engine(
    rollout: RolloutConfig,
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_path: str,
    *,
    seed: int = 0,
) -> RolloutEngine:
    """The engine `rollout.engine` names, generating for `policy`.

    `model_path` is the directory an engine with its own copy of the model (vLLM) builds it from; `seed` seeds the
    engine (pass one per rank). The HF engine generates with `policy` itself.
    """
    return engine_class(rollout.engine).from_config(rollout, policy, tokenizer, model_path, seed=seed)


__all__ = [
    "ENGINES",
    "EngineUnavailable",
    "HFRolloutEngine",
    "RolloutConfig",
    "RolloutEngine",
    "Rollouts",
    "SamplingParams",
    "build_engine",
]
