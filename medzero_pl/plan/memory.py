"""Per-rank memory of a GRPO run, from the model's shape and the run's settings alone: pure arithmetic, no torch.

Every term is the bytes one training process holds, named after what holds it:

- **policy, gradients, optimizer, master weights**: `N` parameters in the trained dtype; gradients in the same dtype,
  or float32 under ZeRO-3 with bf16 (`grad_accum_dtype=fp32`, `strategies/deepspeed.py`); AdamW's two float32
  moments; DeepSpeed's float32 master copy of half-precision parameters. ZeRO-3 divides all four by the world size;
  ZeRO-3 offload moves them to host memory.
- **reference** (`grpo.beta > 0`): `N` in `model.dtype`, sharded like the policy (its own ZeRO-3 inference engine).
- **activations** of the longest micro-batch (every completion at `grpo.max_completion_length`): tokens run x layers x
  what a Llama-style layer saves for backward (`ACTIVATION_ELEMENTS`); with the shared-prompt forward
  (`model/forward.py`) each distinct prompt runs once and every row keeps a gathered copy of its prompt's KV cache;
  with gradient checkpointing each layer keeps its input only, plus one layer recomputed in backward (the shared
  prompt falls back to the plain forward there).
- **head blocks**: the fused head (`model/lm_head.py`) holds one block of float32 logits at a time (`HEAD_BLOCK_NUMEL`,
  `grpo/logprobs.py`) times `HEAD_BLOCK_COPIES`; without it, the `(rows, completion, vocab)` float32 logits and their
  gradient.
- **DeepSpeed buffers** (ZeRO-3): the reduce bucket (Lightning's 2e8 elements, allocated whole on a GPU; on CPU only
  the pages written count), gathered parameters in use (a layer and the next one prefetched, plus the embedding),
  and, for a half-precision policy, a float32 copy of one sub-group of this rank's gradients at the optimizer step
  (`sub_group_size` 1e9; DeepSpeed's stage3.py).
- **rollout**: `hf` generates on the policy itself, its KV cache holding `G x prompts per rank` rows of prompt +
  completion; `vllm_server` runs elsewhere (a ZeRO-3 rank only gathers a chunk of weights to push); `vllm` on a GPU
  reserves `gpu_memory_utilization` of the device for weights and KV cache (freed while
  the trainer runs with `enable_sleep_mode`); on CPU it holds its own copy of the weights plus `kv_cache_gib`.

The peak is what stays (`resident`) plus the largest of the phases that do not overlap: rollout, forward/backward,
optimizer step. On CPU the device is the host, and a fixed `process` term (interpreter, torch, transformers,
Lightning, and vLLM's import when it is the engine; measured, see BENCHMARKS.md) is added; on a GPU it is the CUDA
context. Nothing here knows allocator fragmentation: `HEADROOM` of the device is kept free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import combinations

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GPUS = {"a100-40": 40.0, "a100-80": 80.0, "h100-80": 79.6, "h200": 140.4}
"""Usable GiB of each `--gpu` name (what `torch.cuda.mem_get_info` reports as total)."""
HEADROOM = 0.05
"""Share of the device kept free for the allocator's fragmentation and kernels' workspaces."""
CUDA_CONTEXT_BYTES = 1 * GIB
"""CUDA context, cuBLAS and NCCL workspaces of one process."""
CPU_PROCESS_BYTES = int(0.98 * GIB)
"""A training process on CPU beside its model: python, torch, transformers, Lightning, the data (peak RSS of a
2-layer, 128-wide model's run, whose own terms are under 10 MB; BENCHMARKS.md)."""
CPU_VLLM_PROCESS_BYTES = int(0.48 * GIB)
"""What vLLM's CPU engine adds beyond its weights and KV cache (the same tiny run with it: 1,547 MB against 1,006)."""
HEAD_BLOCK_NUMEL = {"cpu": 1 << 22, "gpu": 1 << 26}
"""Float32 logits per block of the fused head (`grpo/logprobs.py`: LINEAR_CHUNK_NUMEL, ..._ACCELERATOR)."""
HEAD_BLOCK_COPIES = 3
"""A block's working set: logits, their softmax and, in backward, their gradient."""
REDUCE_BUCKET_NUMEL = 200_000_000
"""Lightning's `DeepSpeedStrategy(reduce_bucket_size=2e8)`."""
GATHER_NUMEL = 2**27
"""Elements gathered at once to push weights to an engine (`strategies.GATHER_NUMEL`)."""
SUB_GROUP_NUMEL = 1_000_000_000
"""`ZeRO3Strategy(sub_group_size=1e9)`: gradients copied to float32 at once in the optimizer step."""


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's shape, as its `config.json` gives it."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    head_dim: int = 0
    """0: hidden / heads."""
    qkv_bias: bool = False

    @property
    def kv_width(self) -> int:
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @property
    def layer_params(self) -> int:
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_width
        if self.qkv_bias:
            attn += self.hidden + 2 * self.kv_width
        return attn + 3 * self.hidden * self.intermediate + 2 * self.hidden

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * self.layer_params + embeddings + self.hidden

    def lora_params(self, rank: int) -> int:
        """Adapter parameters at `rank` on every attention and MLP projection (`model.lora`'s default targets): each
        adapted (in x out) linear adds rank x (in + out)."""
        h, kv, ffn = self.hidden, self.kv_width, self.intermediate
        per_layer = 2 * (h + h) + 2 * (h + kv) + 3 * (h + ffn)
        return self.layers * rank * per_layer

    @property
    def kv_elements_per_token(self) -> int:
        """Key and value elements one token adds to the cache, over all layers."""
        return 2 * self.layers * self.kv_width


def shape_from_config(config: dict) -> ModelShape:
    """The shape of a Hugging Face `config.json` (Llama, Mistral, Qwen 2/3 and others with the same field names)."""
    heads = config["num_attention_heads"]
    return ModelShape(
        hidden=config["hidden_size"],
        layers=config["num_hidden_layers"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        intermediate=config["intermediate_size"],
        vocab=config["vocab_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        head_dim=config.get("head_dim") or 0,
        qkv_bias=config.get("model_type") == "qwen2" or bool(config.get("attention_bias", False)),
    )


@dataclass(frozen=True)
class RunShape:
    """What a run does to memory, per rank; `medzero_pl/plan/run.py` reads it from the composed config."""

    device: str
    """gpu or cpu."""
    world_size: int
    ranks_per_node: int
    zero3: bool
    offload: bool
    trained_dtype: str
    """The policy's dtype (`strategies.trained_dtype`)."""
    model_dtype: str
    """`model.dtype`: reference and vLLM engine."""
    compute_bytes: int
    """Bytes per activation element: 2 under bf16/fp16 autocast or half-precision weights, else 4."""
    master_weights: bool
    """DeepSpeed keeps a float32 copy (a half-precision policy under ZeRO)."""
    reference: bool
    gradient_checkpointing: bool
    shared_prompt: bool
    fused_head: bool
    micro_batch: int
    generations: int
    prompts_per_rank: int
    prompt_tokens: int
    completion_tokens: int
    engine: str
    """hf, vllm or vllm_server."""
    vllm_fraction: float = 0.5
    vllm_kv_cache_gib: float | None = None
    sleep_mode: bool = False
    lora_rank: int = 0
    """`model.lora.r`: 0 trains every parameter; else the base is frozen in `model.dtype` and only float32 adapters
    have gradients and optimizer state, and the reference is the policy with its adapters off (no copy)."""


@dataclass(frozen=True)
class Term:
    name: str
    bytes: int
    phase: str
    """resident (held throughout), rollout, train (forward/backward) or step (optimizer), or host (off the device)."""
    note: str = ""


ACTIVATION_ELEMENTS_HIDDEN = 8
"""Per token and layer, multiples of `hidden` a Llama-style layer saves for backward: two RMSNorms (their input and
normalised output: 2 each), the query, `rotate_half` of it and the rotated query, and the attention output."""
ACTIVATION_ELEMENTS_MLP = 4
"""... and multiples of `intermediate`: gate and up outputs, SiLU output, their product."""
ACTIVATION_ELEMENTS_KV = 4
"""... and multiples of the K/V width: k, `rotate_half` of it, the rotated k, and v."""


def layer_activation_elements(model: ModelShape) -> int:
    """Elements one token saves for backward in one decoder layer."""
    return (
        ACTIVATION_ELEMENTS_HIDDEN * model.hidden
        + ACTIVATION_ELEMENTS_MLP * model.intermediate
        + ACTIVATION_ELEMENTS_KV * model.kv_width
    )


def micro_batch_tokens(run: RunShape) -> tuple[int, int]:
    """`(tokens run through the decoder, prompt tokens whose KV cache is gathered per row)` of the longest
    micro-batch: with the shared prompt (not under checkpointing) each distinct prompt runs once."""
    rows, prompt, completion = run.micro_batch, run.prompt_tokens, run.completion_tokens
    if run.shared_prompt and not run.gradient_checkpointing:
        distinct = max(1, math.ceil(rows / run.generations))
        return distinct * prompt + rows * completion, rows * prompt
    return rows * (prompt + completion), 0


def activation_bytes(model: ModelShape, run: RunShape, checkpointing: bool) -> int:
    """Activations of the longest micro-batch, with or without gradient checkpointing."""
    run = replace(run, gradient_checkpointing=checkpointing)
    tokens, gathered = micro_batch_tokens(run)
    per_layer = tokens * layer_activation_elements(model) * run.compute_bytes
    if checkpointing:
        saved = model.layers * tokens * model.hidden * run.compute_bytes
        return saved + 2 * per_layer  # one layer recomputed, plus its gradients flowing back
    kv = gathered * model.kv_width * 2 * model.layers * run.compute_bytes
    return model.layers * per_layer + per_layer + kv  # + the backward's working set of one layer


def head_bytes(model: ModelShape, run: RunShape) -> int:
    """The LM head's log-prob working set: fused blocks, or full float32 logits and their gradient."""
    rows = run.micro_batch * run.completion_tokens
    if run.fused_head:
        block = min(HEAD_BLOCK_NUMEL[run.device], rows * model.vocab)
        return HEAD_BLOCK_COPIES * block * 4 + rows * model.hidden * 4  # + the hidden states' gradient
    return 2 * rows * model.vocab * 4


def estimate(model: ModelShape, run: RunShape) -> list[Term]:
    """Every term of one rank's memory; `peak` adds them up."""
    n = model.params
    shard = run.world_size if run.zero3 else 1
    off = "host" if run.offload else "resident"
    trained, ref = DTYPE_BYTES[run.trained_dtype], DTYPE_BYTES[run.model_dtype]
    grad_bytes = 4 if run.zero3 else trained
    if run.lora_rank:
        a = model.lora_params(run.lora_rank)
        terms = [
            Term("policy parameters (frozen base)", n * ref // shard, off, f"{n / 1e9:.2f}B x {ref} B / {shard}"),
            Term("LoRA adapters", a * 4 // shard, off, f"{a / 1e6:.1f}M x 4 B / {shard}, r={run.lora_rank}"),
            Term("gradients", a * 4 // shard, off, "adapters only"),
            Term("optimizer state (AdamW)", a * 8 // shard, off, "adapters only"),
        ]
    else:
        terms = [
            Term("policy parameters", n * trained // shard, off, f"{n / 1e9:.2f}B x {trained} B / {shard}"),
            Term("gradients", n * grad_bytes // shard, off, f"x {grad_bytes} B / {shard}"),
            Term("optimizer state (AdamW)", n * 8 // shard, off, f"x 8 B / {shard}"),
        ]
        if run.master_weights:
            terms.append(Term("float32 master weights", n * 4 // shard, off, f"x 4 B / {shard}"))
        if run.reference:
            terms.append(Term("reference", n * ref // shard, off, f"x {ref} B / {shard}"))
    with_gc = activation_bytes(model, run, True)
    without_gc = activation_bytes(model, run, False)
    tokens, _ = micro_batch_tokens(run)
    note = (
        f"{run.micro_batch} rows, {tokens} tokens; gradient checkpointing {'on' if run.gradient_checkpointing else 'off'}"
        f" (with: {with_gc / GIB:.2f} GiB, without: {without_gc / GIB:.2f} GiB)"
    )
    terms.append(Term("activations", with_gc if run.gradient_checkpointing else without_gc, "train", note))
    terms.append(
        Term("LM head log-prob blocks", head_bytes(model, run), "train", "fused" if run.fused_head else "full logits")
    )
    if run.zero3:
        largest = max(model.layer_params, model.vocab * model.hidden)
        gathered = (2 * model.layer_params + largest) * DTYPE_BYTES[run.model_dtype]
        terms.append(Term("DeepSpeed gathered parameters", gathered, "train", "two layers + the embedding"))
        bucket = REDUCE_BUCKET_NUMEL if run.device == "gpu" else min(REDUCE_BUCKET_NUMEL, n)  # CPU: pages touched
        terms.append(Term("DeepSpeed reduce bucket", bucket * DTYPE_BYTES[run.model_dtype], "train"))
        if run.trained_dtype != "float32" and not run.lora_rank:  # LoRA's adapters are float32 already
            step = 4 * min(SUB_GROUP_NUMEL, n // shard)
            terms.append(Term("DeepSpeed step sub-group", step, "host" if run.offload else "step", "float32 gradients"))
    terms += rollout_terms(model, run)
    if run.device == "cpu":
        base = CPU_PROCESS_BYTES + (CPU_VLLM_PROCESS_BYTES if run.engine == "vllm" else 0)
        terms.append(Term("process (python, torch, libraries)", base, "resident"))
    else:
        terms.append(Term("CUDA context", CUDA_CONTEXT_BYTES, "resident"))
    return terms


def rollout_terms(model: ModelShape, run: RunShape) -> list[Term]:
    rows = run.prompts_per_rank * run.generations
    context = run.prompt_tokens + run.completion_tokens
    kv = rows * context * model.kv_elements_per_token * DTYPE_BYTES[run.model_dtype]
    if run.engine == "hf":
        compute = DTYPE_BYTES[run.trained_dtype]
        kv = rows * context * model.kv_elements_per_token * compute
        logits = rows * model.vocab * 4 * 2
        note = f"{rows} rows x {context} tokens"
        terms = [Term("rollout KV cache (hf generate)", kv + logits, "rollout", note)]
        if run.zero3:
            gathered = (2 * model.layer_params + model.vocab * model.hidden) * DTYPE_BYTES[run.model_dtype]
            terms.append(Term("DeepSpeed gathered parameters (generate)", gathered, "rollout"))
        return terms
    if run.engine == "vllm_server":
        chunk = min(GATHER_NUMEL, model.params) * DTYPE_BYTES[run.model_dtype] if run.zero3 else 0
        return [Term("weight push to the vLLM server", chunk, "rollout", "the server runs on its own GPUs")]
    weights = model.params * DTYPE_BYTES[run.model_dtype]
    if run.device == "cpu":
        kv_cache = int((run.vllm_kv_cache_gib if run.vllm_kv_cache_gib is not None else 1.0) * GIB)
        return [
            Term("vLLM weights", weights, "resident", run.model_dtype),
            Term("vLLM KV cache", kv_cache, "resident", f"needs {kv / GIB:.2f} GiB for {rows} x {context} tokens"),
        ]
    note = (
        f"gpu_memory_utilization={run.vllm_fraction}: weights {weights / GIB:.1f} GiB, KV cache for {rows} x "
        f"{context} tokens {kv / GIB:.1f} GiB{', asleep while training' if run.sleep_mode else ''}"
    )
    return [Term("vLLM engine", 0, "rollout" if run.sleep_mode else "resident", note)]


def kv_needed_bytes(model: ModelShape, run: RunShape) -> int:
    """KV cache for every row of a rank's rollout at full length, in the engine's dtype."""
    rows = run.prompts_per_rank * run.generations
    context = run.prompt_tokens + run.completion_tokens
    return rows * context * model.kv_elements_per_token * DTYPE_BYTES[run.model_dtype]


def with_vllm_reservation(terms: list[Term], run: RunShape, capacity: int) -> list[Term]:
    """The vLLM engine's share of a GPU of `capacity` bytes filled in."""
    return [replace(t, bytes=int(run.vllm_fraction * capacity)) if t.name == "vLLM engine" else t for t in terms]


def peak(terms: list[Term]) -> int:
    """Resident terms plus the largest phase (rollout, forward/backward, optimizer step)."""
    resident = sum(t.bytes for t in terms if t.phase == "resident")
    phases = {p: sum(t.bytes for t in terms if t.phase == p) for p in ("rollout", "train", "step")}
    return resident + max(phases.values())


def host_bytes(terms: list[Term]) -> int:
    return sum(t.bytes for t in terms if t.phase == "host")


VLLM_OVERHEAD_BYTES = 2 * GIB
"""What a vLLM engine on a GPU needs beside weights and KV cache (activations of its profile run, CUDA graphs)."""


@dataclass(frozen=True)
class Verdict:
    """One rank's predicted peak on a device, and why it does or does not fit."""

    terms: list[Term]
    peak: int
    capacity: int
    problems: list[str]
    """Empty when it fits."""
    warnings: list[str]

    @property
    def fits(self) -> bool:
        return not self.problems


def judge(model: ModelShape, run: RunShape, capacity: int) -> Verdict:
    """Whether one rank of `run` fits a device of `capacity` bytes (the host's RAM on CPU)."""
    terms = with_vllm_reservation(estimate(model, run), run, capacity) if run.device == "gpu" else estimate(model, run)
    total = peak(terms)
    usable = int(capacity * (1 - HEADROOM))
    problems, warnings = [], []
    if total > usable:
        problems.append(f"predicted peak {total / GIB:.1f} GiB per rank > {usable / GIB:.1f} GiB usable")
    if run.engine == "vllm" and run.device == "gpu":
        weights = model.params * DTYPE_BYTES[run.model_dtype]
        room = int(run.vllm_fraction * capacity) - weights - VLLM_OVERHEAD_BYTES
        if room <= 0:
            problems.append(
                f"rollout.gpu_memory_utilization={run.vllm_fraction} leaves vLLM no KV cache: "
                f"{weights / GIB:.1f} GiB of weights + {VLLM_OVERHEAD_BYTES / GIB:.0f} GiB of overhead"
            )
        elif room < kv_needed_bytes(model, run):
            warnings.append(
                f"vLLM's KV cache ({room / GIB:.1f} GiB) holds less than the {kv_needed_bytes(model, run) / GIB:.1f} "
                "GiB a whole rollout needs: it will generate in several waves (slower, not out of memory)"
            )
    return Verdict(terms, total, capacity, problems, warnings)


@dataclass(frozen=True)
class Change:
    """One way to need less memory: the overrides that make it and what it does to the run."""

    key: str
    """What it changes; a suggestion changes each key once."""
    overrides: tuple[str, ...]
    apply: Callable[[RunShape], RunShape]


def vllm_fraction_needed(model: ModelShape, run: RunShape, capacity: int) -> float:
    """The smallest `gpu_memory_utilization` (in steps of 0.05) whose engine holds weights, overhead and a whole
    rollout's KV cache: lower than the run's frees memory for the trainer, higher gives vLLM room to start."""
    need = model.params * DTYPE_BYTES[run.model_dtype] + VLLM_OVERHEAD_BYTES + kv_needed_bytes(model, run)
    return math.ceil(need / capacity * 20) / 20


def changes(model: ModelShape, run: RunShape, capacity: int) -> list[Change]:
    """Every change the planner may suggest, cheapest first (in speed given up)."""
    found = []
    rows = run.prompts_per_rank * run.generations
    smaller = [d for d in range(run.micro_batch - 1, 0, -1) if rows % d == 0]
    for size in smaller[:1] + smaller[-1:] if smaller else []:
        found.append(
            Change("micro_batch", (f"grpo.micro_batch_size={size}",), lambda r, s=size: replace(r, micro_batch=s))
        )
    if not run.gradient_checkpointing:
        found.append(
            Change(
                "checkpointing",
                ("model.gradient_checkpointing=true",),
                lambda r: replace(r, gradient_checkpointing=True),
            )
        )
    if run.engine == "vllm" and run.device == "gpu":
        fraction = vllm_fraction_needed(model, run, capacity)
        if fraction != run.vllm_fraction and fraction <= 1 - HEADROOM:
            found.append(
                Change(
                    "vllm_fraction",
                    (f"rollout.gpu_memory_utilization={fraction}",),
                    lambda r: replace(r, vllm_fraction=fraction),
                )
            )
        if not run.sleep_mode:
            found.append(Change("sleep", ("rollout.enable_sleep_mode=true",), lambda r: replace(r, sleep_mode=True)))
    if not run.zero3 and run.world_size > 1:
        found.append(
            Change(
                "strategy",
                ("trainer.strategy=deepspeed_stage3",),
                lambda r: replace(r, zero3=True, master_weights=r.trained_dtype != "float32"),
            )
        )
    if run.engine == "vllm" and run.device == "gpu":
        found.append(
            Change(
                "engine",
                ("rollout.engine=vllm_server",),
                lambda r: replace(r, engine="vllm_server"),
            )
        )
    if not run.offload:
        found.append(
            Change(
                "strategy",
                ("trainer.strategy=deepspeed_stage3_offload",),
                lambda r: replace(r, zero3=True, offload=True, master_weights=r.trained_dtype != "float32"),
            )
        )
    return found


def cheapest_fix(model: ModelShape, run: RunShape, capacity: int, most: int = 3) -> tuple[str, ...] | None:
    """The overrides of the fewest, cheapest changes (at most `most`) after which `run` fits, or None."""
    options = changes(model, run, capacity)
    for count in range(1, most + 1):
        for combo in sorted(combinations(range(len(options)), count), key=lambda c: (max(c), c)):
            if len({options[i].key for i in combo}) < count:
                continue
            changed = run
            for i in combo:
                changed = options[i].apply(changed)
            if judge(model, changed, capacity).fits:
                return tuple(o for i in combo for o in options[i].overrides)
    return None
