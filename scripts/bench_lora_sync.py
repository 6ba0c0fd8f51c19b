"""How a LoRA policy's weights should reach a colocated vLLM engine: merged weights (what `model.lora` does) or
vLLM's own adapters (`enable_lora` plus a `LoRARequest` per sync). Measured per mode in its own process:

    python scripts/bench_lora_sync.py --mode merged
    python scripts/bench_lora_sync.py --mode lora_request

Each mode syncs `--syncs` times (new adapter values each time, as after an optimizer step), then samples
`--prompts` x `--n` completions of `--tokens` tokens. It prints one JSON line: engine start-up, seconds per sync,
seconds per rollout and completion tokens/s, and whether greedy outputs equal the policy's own `generate` with its
adapters on (BENCHMARKS.md, "LoRA: merged sync or vLLM's LoRARequest").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medzero_pl.model.loading import resolve_model
from medzero_pl.model.lora import LoRAConfig, apply_lora, sync_parameters
from medzero_pl.rollout import HFRolloutEngine, SamplingParams
from medzero_pl.rollout.base import Placement
from medzero_pl.rollout.config import RolloutConfig
from medzero_pl.rollout.vllm import VLLMEngine, engine_kwargs

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
QUESTION = (
    "A 34-year-old woman presents with fatigue, weight gain and cold intolerance for six months. "
    "Which laboratory test best confirms the most likely diagnosis? Think step by step."
)


def step_adapters(policy: torch.nn.Module, seed: int) -> None:
    """What an optimizer step does to the adapters, only larger: the outputs change."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["merged", "lora_request"], required=True)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--syncs", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    policy = apply_lora(
        AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32),
        LoRAConfig(r=args.rank, alpha=2.0 * args.rank, target_modules=TARGETS),
    ).eval()
    chat = [{"role": "user", "content": f"{QUESTION} (case {i})"} for i in range(args.prompts)]
    texts = [tokenizer.apply_chat_template([m], add_generation_prompt=True, tokenize=False) for m in chat]
    prompts = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    sample = SamplingParams(max_new_tokens=args.tokens, temperature=1.0, seed=0)
    greedy = SamplingParams(max_new_tokens=32, temperature=0.0)
    settings = RolloutConfig(engine="vllm", max_model_len=1024)

    started = time.perf_counter()
    if args.mode == "merged":
        engine = VLLMEngine(path, [tokenizer.eos_token_id], settings, dtype="float32")
        llm, request = engine.llm, None
    else:
        from vllm import LLM

        kwargs = engine_kwargs(path, settings, Placement(), cuda=torch.cuda.is_available())
        engine, llm = None, LLM(**kwargs, enable_lora=True, max_lora_rank=args.rank, max_loras=1)
    startup = time.perf_counter() - started

    sync_s, rollout_s, tokens, adapter_dir = [], [], 0, tempfile.mkdtemp(prefix="lora_sync_")
    for k in range(args.syncs):
        step_adapters(policy, k)
        t = time.perf_counter()
        if engine is not None:
            engine.update_weights(sync_parameters(policy, policy.named_parameters()))
        else:
            from vllm.lora.request import LoRARequest

            policy.save_pretrained(adapter_dir)  # the adapter only: a new id makes vLLM load it afresh
            request = LoRARequest(f"policy-{k}", k + 1, adapter_dir)
        sync_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        rollouts = generate(llm, engine, prompts, args.n, sample, request)
        rollout_s.append(time.perf_counter() - t)
        tokens += sum(len(ids) for ids in rollouts)

    ours = generate(llm, engine, prompts, 1, greedy, request)
    reference = HFRolloutEngine(policy, tokenizer).generate(prompts, 1, greedy).completion_ids
    eos = tokenizer.eos_token_id
    ours, reference = ([ids[:-1] if ids[-1:] == [eos] else ids for ids in rows] for rows in (ours, reference))
    print(
        json.dumps(
            {
                "mode": args.mode,
                "rank": args.rank,
                "startup_s": round(startup, 2),
                "sync_s": [round(s, 3) for s in sync_s],
                "rollout_s": [round(s, 2) for s in rollout_s],
                "completion_tokens_per_s": round(tokens / sum(rollout_s), 1),
                "greedy_equals_policy": ours == reference,
            }
        )
    )


def generate(
    llm: Any,
    engine: VLLMEngine | None,
    prompts: list[list[int]],
    n: int,
    sampling: SamplingParams,
    request: Any,
) -> list[list[int]]:
    """Completion ids: through our engine (merged weights) or straight through vLLM with the adapter request."""
    if engine is not None:
        return engine.generate(prompts, n, sampling).completion_ids
    from vllm import SamplingParams as VLLMSampling

    greedy = sampling.temperature == 0
    params = [
        VLLMSampling(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_k=0 if greedy else -1,
            seed=None if sampling.seed is None else sampling.seed + k,
        )
        for k in range(len(prompts) * n)
    ]
    rows = [{"prompt_token_ids": p} for p in prompts for _ in range(n)]
    outputs = llm.generate(rows, params, use_tqdm=False, lora_request=request)
    return [list(o.outputs[0].token_ids) for o in outputs]


if __name__ == "__main__":
    main()
