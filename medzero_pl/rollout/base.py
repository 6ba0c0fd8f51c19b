"""The narrow interface between the trainer and whatever generates completions.

Engines work on token ids only. For P prompts and ``n`` samples each they return P*n completions in
prompt-major order: completion ``i * n + j`` is sample ``j`` of prompt ``i``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


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
