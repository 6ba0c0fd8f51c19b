"""`rollout.*`: which engine generates the completions, and the settings of the engines that have their own.

One class for the config file, the LightningCLI and the engines themselves: `build_engine` hands it to the engine
class `ENGINES` names, which reads the fields it needs (the vLLM ones and the `server_*` ones below).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medzero_pl.errors import expect
from medzero_pl.rollout.base import ENGINES
from medzero_pl.rollout.transfer import SERVER_TRANSFERS

EngineName = Literal[tuple(ENGINES)]
ServerTransfer = Literal[("auto", *SERVER_TRANSFERS)]


@dataclass
class RolloutConfig:
    """The rollout engine and its settings."""

    engine: EngineName = "hf"
    """What generates the rollouts: hf (`model.generate` on the policy), vllm (colocated vLLM, weights synced after
    every optimizer step; needs the `vllm` extra) or vllm_server (a vLLM server on another device or machine, started
    with `python -m medzero_pl.serve`; weights pushed to it after every optimizer step)."""
    gpu_memory_utilization: float = 0.5
    """vllm: fraction of GPU memory the engine may take (weights + KV cache); the rest is the trainer's."""
    max_model_len: int = 2048
    """vllm: longest prompt + completion, in tokens; at least data.max_prompt_length + grpo.max_completion_length."""
    tensor_parallel_size: int = 1
    """vllm: GPUs per engine. Only 1: every training process runs one whole engine on its own GPU (the ranks of a
    larger TP group would have to submit identical batches, which is not implemented)."""
    enforce_eager: bool | None = None
    """vllm: no CUDA graphs (faster start, about twice slower decoding); None: off on GPU, on on CPU."""
    enable_sleep_mode: bool = False
    """vllm, GPU only: while the trainer runs, the engine frees all its GPU memory (weights discarded, KV cache
    dropped; the weight sync before each rollout loads them again). For a model whose training state and engine do
    not fit on one GPU together."""
    kv_cache_gib: float | None = None
    """vllm: KV cache size; None derives it from gpu_memory_utilization on GPU and uses 1 GiB on CPU."""
    block_size: int | None = None
    """vllm: tokens per KV-cache block; None: 32 on CPU, vLLM's default on GPU. The G rows of a prompt share only its
    full blocks, so smaller blocks leave less of each prompt to prefill again (vLLM's CPU attention needs multiples
    of 32; its CPU default is 128)."""
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    """vllm: the level of vLLM's own log lines. At info it prints several lines per step (weight reloads, prefix-cache
    resets) between the progress bar's updates; VLLM_LOGGING_LEVEL, when set, wins."""
    server_url: str = "http://127.0.0.1:8000"
    """vllm_server: the server's address (`python -m medzero_pl.serve MODEL --port 8000` starts one)."""
    server_timeout_s: float = 600.0
    """vllm_server: longest wait for one answer of the server (a generate call, a step of a weight update); a dead or
    hung server ends the run with one `error:` line after at most this long."""
    server_startup_timeout_s: float = 600.0
    """vllm_server: how long to wait at start-up for the server's /health (it may still be loading the model)."""
    server_transfer: ServerTransfer = "auto"
    """vllm_server: how weights reach the server: gloo (TCP; CPU or GPU), nccl (GPU only) or auto (nccl when this
    process has CUDA, else gloo). The server's `--transfer` must match."""

    def problems(self) -> list[str]:
        """Settings the chosen engine cannot honour, each as `field=value: expected ...` (an engine's fields only
        matter when it is the engine)."""
        if self.engine == "vllm_server":
            return [
                *expect(
                    self.server_url.startswith(("http://", "https://")),
                    "server_url",
                    self.server_url,
                    "http://HOST:PORT",
                ),
                *expect(self.server_timeout_s > 0, "server_timeout_s", self.server_timeout_s, "> 0 seconds"),
                *expect(
                    self.server_startup_timeout_s > 0,
                    "server_startup_timeout_s",
                    self.server_startup_timeout_s,
                    "> 0 seconds",
                ),
            ]
        if self.engine != "vllm":
            return []
        return [
            *expect(
                0 < self.gpu_memory_utilization <= 1,
                "gpu_memory_utilization",
                self.gpu_memory_utilization,
                "0 < value <= 1",
            ),
            *expect(
                self.tensor_parallel_size == 1,
                "tensor_parallel_size",
                self.tensor_parallel_size,
                "1 (one whole engine per training process; tensor-parallel engines are not supported)",
            ),
            *expect(
                self.kv_cache_gib is None or self.kv_cache_gib > 0, "kv_cache_gib", self.kv_cache_gib, "> 0 or null"
            ),
            *expect(
                self.block_size is None or self.block_size >= 1,
                "block_size",
                self.block_size,
                "a positive number of tokens or null",
            ),
        ]
