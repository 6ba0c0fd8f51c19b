"""The narrow interface between the trainer and whatever generates completions.

Engines work on token ids only. For P prompts and ``n`` samples each they return P*n completions in
prompt-major order: completion ``i * n + j`` is sample ``j`` of prompt ``i`` (``repeat_each`` lays per-prompt
values out the same way).

``ENGINES`` names every engine by the dotted path of its class, imported only when that engine is built (as verl's
``workers/rollout/base.py``): config validation, the eval CLI's ``--engine`` and ``build_engine`` all read it, so a new
engine is an entry here and its own file.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from medzero_pl.errors import UserError

ENGINES: dict[str, str] = {
    "hf": "medzero_pl.rollout.hf.HFRolloutEngine",
    "vllm": "medzero_pl.rollout.vllm.VLLMEngine",
    "vllm_server": "medzero_pl.rollout.vllm_server.VLLMServerEngine",
}
"""Engine name -> its class. Each class builds itself with ``from_config(rollout, policy, tokenizer, model_path, *,
seed, placement, dtype)``, reading the `RolloutConfig` fields it needs."""


class EngineUnavailable(UserError):
    """The configured rollout engine cannot be built on this machine."""


def engine_class(name: str) -> Any:
    """The class ``ENGINES[name]`` names, imported now."""
    module, _, cls = ENGINES[name].rpartition(".")
    return getattr(importlib.import_module(module), cls)


@dataclass(frozen=True)
class Placement:
    """This training process among the others; its engine is built for it."""

    rank: int = 0
    local_rank: int = 0
    """The device index this rank's engine runs on (vLLM reads it from LOCAL_RANK): Lightning's root device index on
    CUDA, which is the launcher's local rank unless `trainer.devices` lists GPU ids; the local rank on CPU."""
    world_size: int = 1

    @classmethod
    def of(cls, rank: int, local_rank: int, world_size: int, device: torch.device) -> Placement:
        """The placement of a training process that trains on `device`: its engine goes on the same GPU."""
        index = device.index if device.type == "cuda" and device.index is not None else local_rank
        return cls(rank=rank, local_rank=index, world_size=world_size)

    @property
    def launched(self) -> bool:
        """Several training processes: each engine joins them through vLLM's `external_launcher` executor."""
        return self.world_size > 1


def repeat_each(values: list[Any], n: int) -> list[Any]:
    """[a, b] -> [a, a, b, b] for n=2: per-prompt values in the prompt-major layout of a generation batch."""
    return [v for v in values for _ in range(n)]


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled. ``temperature`` is also the divisor the trainer applies to its logits."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None


@dataclass
class Rollouts:
    """P*n completions. ``logprobs`` holds the sampler's per-token log-probs when the engine has them."""

    completion_ids: list[list[int]]
    texts: list[str]
    finish_reasons: list[str]  # "stop" (EOS or stop string) or "length" (hit max_new_tokens)
    logprobs: list[list[float]] | None = None

    def __len__(self) -> int:
        return len(self.completion_ids)


class RolloutEngine(Protocol):
    """Generates completions; the module never looks inside it.

    An engine that holds its own copy of the weights (vLLM) receives the policy's as `(name, tensor)` pairs after each
    optimizer step; `sleep` frees its accelerator memory while the trainer runs, and the engine wakes itself in
    `update_weights` and `generate`. Engines that generate with the policy itself (HF) implement `update_weights` and
    `sleep` as no-ops and set `owns_weights = False`, so nothing is gathered for them.
    """

    owns_weights: bool
    """True when the engine keeps its own copy of the weights, which `update_weights` must refresh."""

    has_weights: bool
    """False while the engine holds no usable weights (vLLM's sleep discards them) and only `update_weights` can
    make it generate again."""

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingParams) -> Rollouts: ...

    def update_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None: ...

    def sleep(self) -> None: ...
