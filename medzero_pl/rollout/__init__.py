"""Rollout engines behind the ``RolloutEngine`` interface (``base.py``), chosen by name from ``ENGINES``; vLLM is
imported lazily in ``vllm.py``."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.rollout.base import (
    ENGINES,
    EngineUnavailable,
    Placement,
    RolloutEngine,
    Rollouts,
    SamplingParams,
    engine_class,
)
from medzero_pl.rollout.config import RolloutConfig
from medzero_pl.rollout.hf import HFRolloutEngine


def build_engine(
    rollout: RolloutConfig,
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_path: str,
    *,
    seed: int = 0,
    placement: Placement | None = None,
    dtype: str | None = None,
) -> RolloutEngine:
    """The engine `rollout.engine` names, generating for `policy`.

    `model_path` is the directory an engine with its own copy of the model (vLLM) builds it from, in `dtype` (default:
    the policy's; a training run passes `model.dtype`, since its policy may be float32 for the optimizer's sake);
    `seed` seeds the engine (the run's seed: each rank's engine adds its own offset); `placement` is this training
    process among the others (default: the only one). The HF engine generates with `policy` itself.
    """
    return engine_class(rollout.engine).from_config(
        rollout, policy, tokenizer, model_path, seed=seed, placement=placement, dtype=dtype
    )


__all__ = [
    "ENGINES",
    "EngineUnavailable",
    "HFRolloutEngine",
    "Placement",
    "RolloutConfig",
    "RolloutEngine",
    "Rollouts",
    "SamplingParams",
    "build_engine",
]
