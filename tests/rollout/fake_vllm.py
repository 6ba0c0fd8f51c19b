"""A recording stand-in for the `vllm` package: `VLLMEngine` runs unchanged on top of it, in milliseconds.

`install(monkeypatch)` puts it in `sys.modules` (and records `torch.cuda.empty_cache` calls) and returns it: `events`
lists the calls in order (`LLM`, `sleep(level=2)`, `wake_up(['weights'])`, `load_weights`, `reset_prefix_cache`,
`wake_up(['kv_cache'])`, `generate`, `empty_cache`), `built` every `LLM`, whose `kwargs` and `env` keep what it was
built with. Every completion is two tokens (id 10) with log-prob -1 each, cut at `max_tokens`.
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import sys
import types
from types import SimpleNamespace
from typing import Any

import torch

LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


class _Model(torch.nn.Module):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.events = events

    def load_weights(self, weights: Any) -> None:
        self.loaded = [name for name, _ in weights]
        self.events.append("load_weights")


def install(monkeypatch: Any) -> types.ModuleType:
    # The engine sets VLLM_LOGGING_LEVEL and vLLM's logger level (quiet_vllm_logs): both are put back after the test.
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", os.environ.get("VLLM_LOGGING_LEVEL", ""))
    monkeypatch.delenv("VLLM_LOGGING_LEVEL")
    monkeypatch.setattr(logging.getLogger("vllm"), "level", logging.getLogger("vllm").level)
    events: list[str] = []
    built: list[Any] = []

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            events.append("LLM")
            self.kwargs = kwargs
            self.env = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}
            model = _Model(events)
            self.llm_engine = SimpleNamespace(
                apply_model=lambda fn: [fn(model)],
                model_config=SimpleNamespace(hf_config=SimpleNamespace(tie_word_embeddings=False)),
            )
            built.append(self)

        def sleep(self, level: int = 1) -> None:
            events.append(f"sleep(level={level})")

        def wake_up(self, tags: list[str] | None = None) -> None:
            events.append(f"wake_up({tags})")

        def reset_prefix_cache(self) -> None:
            events.append("reset_prefix_cache")

        def generate(self, prompts: list[dict], params: list[Any], use_tqdm: bool = False) -> list[Any]:
            events.append("generate")
            outputs = []
            for p in params:
                tokens = [10] * min(2, p.max_tokens)
                completion = SimpleNamespace(
                    token_ids=tokens,
                    text="A" * len(tokens),
                    finish_reason="length" if len(tokens) == p.max_tokens else "stop",
                    logprobs=[{t: SimpleNamespace(logprob=-1.0)} for t in tokens],
                )
                outputs.append(SimpleNamespace(outputs=[completion]))
            return outputs

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            self.__dict__.update(kwargs)

    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    vllm.LLM, vllm.SamplingParams, vllm.events, vllm.built = LLM, SamplingParams, events, built
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: events.append("empty_cache"))
    return vllm
