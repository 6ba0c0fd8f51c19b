"""GPU smoke check: what the CPU test suite cannot show, measured in one run of at most 10 minutes on one GPU.

    PYTHONPATH=. python scripts/gpu_smoke.py --out gpu_smoke.json             # GPU: 7B widths, bf16
    PYTHONPATH=. python scripts/gpu_smoke.py --device cpu --tiny --out x.json  # CPU: tiny sizes (CI runs this)

A GPU machine that lacks DeepSpeed, omegaconf or rapidfuzz gets them as wheels built here: `scripts/gpu_wheels.sh`
prints the command that installs them there and runs this script.

Models are built from configs with random weights: nothing is downloaded. Checks (one function each):

- `fused_head`: `linear_logprobs_and_entropy` at Qwen's 152,064-word vocabulary and 7B width (3,584) in bf16
  against plain autograd (full logits + log_softmax), both measured against an fp64 reference computed from the
  same bf16 inputs: log-probs and entropies within `HEAD_LOGP_TOL`, head-gradient relative error at most
  `HEAD_GRAD_RTOL` and no worse than plain's, forward+backward at most `HEAD_TIME_RATIO` x plain's time, lower
  peak memory.
- `forward_equivalence`: `completion_logprobs_and_entropy` on a left-padded batch through a 2-layer Qwen2 at 7B
  widths in bf16, with the fused head on/off, the shared prompt on/off and each attention implementation there
  (sdpa, eager, medzero_sdpa, flash_attention_2 if installed): log-probs, entropies and gradients against an fp32
  copy of the model.
- `long_row`: one row of 1,024 prompt + 8,192 completion tokens with gradient checkpointing: finite log-probs and
  gradients, peak memory within `long_row_budget` (parameters + gradients + `LONG_ROW_ACTIVATIONS`).
- `rollout_determinism`: the HF engine (`medzero_pl/rollout/hf.py`) samples the same completions for the same seed.
- `zero3_training`: `python -m medzero_pl.fit`'s path (`fit.build`, `MedZeroTrainer`, `GRPOModule`) on one rank
  with `trainer.strategy=deepspeed_stage3` (NCCL on a GPU, gloo on CPU) against the same run without DeepSpeed,
  three micro-batches per step: gathered parameters bit-exact (`full_named_parameters`), the same global
  grad norms and weights (the gradient of the mean loss over the micro-batches), grad norms finite.
- `zero3_export`: `python -m medzero_pl.export` of that run's checkpoint loads in transformers with exactly the
  trained policy's weights.

Every check runs even when an earlier one failed; each measurement goes to `--out` (JSON, rewritten after every
check, so a run cut short keeps what it measured), and the exit status is 1 if any expectation failed. On CPU
(`--tiny`, the default without CUDA) shapes are tiny and time and memory are recorded but not judged.
`NOT_COVERED` lists what this run does not check.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30

HEAD_LOGP_TOL = 0.05
"""Nats. bf16 rounds a logit of magnitude 5 by up to 0.01; log-probs and entropies may be off by a few of those."""
HEAD_GRAD_RTOL = 1e-2
"""Relative (Frobenius) error of the head's gradients against fp64."""
HEAD_GRAD_SLACK = 1.1
"""'No worse than plain autograd' allows 10%: two bf16 computations of one gradient round differently."""
HEAD_TIME_RATIO = 1.5
"""The fused head's forward+backward may take at most this multiple of plain autograd's."""
FORWARD_LOGP_TOL = 0.2
"""Nats, the largest over the batch: a bf16 forward (two decoder layers, any attention kernel) against an fp32 copy
of the same weights. On CPU at 7B widths over 28 tokens: 0.04 (the largest grows with the token count). A token
scored at a wrong position or under a wrong mask is off by about a nat: log-probs spread by 1.5 nats here."""
FORWARD_GRAD_RTOL = 5e-2
"""Relative error of all parameter gradients of a bf16 training forward against the fp32 copy's (CPU, 7B widths:
1.8e-2)."""
LONG_ROW_ACTIVATIONS = 4 * GiB
"""Memory budget of the long row beyond parameters and gradients. With checkpointing, activations are the layer
inputs plus one layer's recomputation (about 1.5 GiB at 9,216 tokens and 7B widths); the full `(8,192, 152,064)`
logits and their gradient would need 2.3 GiB each in bf16 and twice that in fp32."""
NOT_COVERED = [
    "vLLM on a GPU (rollout.engine=vllm: weight sync, sleep mode, tensor parallelism)",
    "several ranks: ZeRO-3 partitioning across GPUs, NCCL all-gathers and reduce-scatters between devices",
    "several nodes (scripts/torchrun_example.sh, scripts/slurm_grpo.sbatch)",
    "ZeRO-3 with CPU offload (deepspeed_stage3_offload) on a GPU",
    "real pretrained weights and tokenizers (HuatuoGPT-o1-7B, Qwen2.5): every model here is random",
    "a full-size model: decoders here have 2 layers",
    "bf16 training through DeepSpeed (precision=bf16-*): the ZeRO-3 run is fp32 so that it can be compared exactly",
    "throughput and memory of a whole GRPO step at the papers' batch sizes",
    "evaluation callbacks and benchmark scoring on a GPU",
]


# ----------------------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
    """The shapes of one mode."""

    head_rows: int
    head_hidden: int
    head_vocab: int
    decoder: dict[str, int]
    """Qwen2Config fields of the decoder the forward, long-row and rollout checks run."""
    prompt_lengths: tuple[int, ...]
    completion_lengths: tuple[int, ...]
    """Of the left-padded batch: `len(completion_lengths) // len(prompt_lengths)` completions per prompt."""
    long_prompt: int
    long_completion: int
    rollout_prompts: int
    rollout_samples: int
    rollout_tokens: int
    zero3_model: dict[str, int]
    zero3_completion: int


QWEN_7B_WIDTHS = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 152064,
}
FULL = Sizes(
    head_rows=4096,
    head_hidden=3584,
    head_vocab=152064,
    decoder=QWEN_7B_WIDTHS,
    prompt_lengths=(300, 180),
    completion_lengths=(400, 250, 320, 64),
    long_prompt=1024,
    long_completion=8192,
    rollout_prompts=2,
    rollout_samples=4,
    rollout_tokens=64,
    zero3_model={
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "vocab_size": 152064,
    },
    zero3_completion=32,
)
TINY_DECODER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 128,
}
TINY = Sizes(
    head_rows=160,
    head_hidden=64,
    head_vocab=32768,  # a block of `linear_logprobs_and_entropy`'s default size is 128 rows: one full, one partial
    decoder=TINY_DECODER,
    prompt_lengths=(7, 4),
    completion_lengths=(5, 3, 6, 2),
    long_prompt=64,
    long_completion=512,
    rollout_prompts=2,
    rollout_samples=4,
    rollout_tokens=8,
    zero3_model=TINY_DECODER,
    zero3_completion=8,
)


@dataclass
class Context:
    """What every check gets: where it runs, at which sizes, and a scratch directory."""

    device: torch.device
    sizes: Sizes
    tiny: bool
    scratch: Path
    shared: dict[str, Any] = field(default_factory=dict)
    """Objects one check hands to a later one (the ZeRO-3 run to the export check)."""

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def repeats(self) -> int:
        """Timed calls per measurement (tiny sizes are not timed for a verdict)."""
        return 1 if self.tiny else 3

    @property
    def accelerator(self) -> str:
        return "gpu" if self.cuda else "cpu"


# ---------------------------------------------------------------------------------------------- recording
@dataclass
class Check:
    """What one check measured and what it expected; a failed expectation does not stop the check."""

    name: str
    status: str = "not run"
    seconds: float = 0.0
    measurements: dict[str, Any] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def measure(self, **values: Any) -> None:
        self.measurements.update(values)

    def expect(self, what: str, ok: bool, *, judged: bool = True, why_not: str = "") -> bool:
        """Record an expectation; when not `judged` (tiny sizes, no CUDA) its outcome is kept but cannot fail."""
        status = ("pass" if ok else "fail") if judged else f"not judged ({why_not})"
        self.expectations.append({"what": what, "status": status, "held": bool(ok)})
        return bool(ok)

    def finish(self) -> None:
        failed = self.error is not None or any(e["status"] == "fail" for e in self.expectations)
        self.status = "fail" if failed else "pass"


def run_checks(
    checks: list[tuple[str, Callable[[Check, Context], None]]], ctx: Context, report: Callable[[list[Check]], None]
) -> list[Check]:
    """Run every check, each isolated from the others' failures; `report` is called after each one."""
    done: list[Check] = []
    for name, fn in checks:
        check = Check(name)
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            fn(check, ctx)
        except Exception:
            check.error = traceback.format_exc(limit=-12)  # the innermost frames
        check.seconds = round(time.perf_counter() - start, 2)
        check.finish()
        release_memory()
        done.append(check)
        print_check(check)
        report(done)
    return done


def print_check(check: Check) -> None:
    print(f"{check.status.upper()} {check.name} ({check.seconds:.1f} s)", flush=True)
    for e in check.expectations:
        if e["status"] != "pass":
            print(f"  {e['status']}: {e['what']}", flush=True)
    if check.error:
        print("  error: " + check.error.strip().replace("\n", "\n  "), flush=True)


# ---------------------------------------------------------------------------------------------- helpers
def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak bytes allocated while `fn` runs, above what was allocated before; None without CUDA."""
    if device.type != "cuda":
        fn()
        return None
    synchronize(device)
    release_memory()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def rel_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Frobenius norm of the difference over that of `expected`, in float64."""
    expected = expected.double()
    return float((got.double() - expected).norm() / expected.norm().clamp_min(1e-300))


def gib(n: int | None) -> float | None:
    return None if n is None else round(n / GiB, 3)


SPECIALS = ["<pad>", "<eos>"]
CHARS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:;?!()<>/\n'-")


def char_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """One token per character (prompts of the GRPO run are text), then filler tokens up to `vocab_size`, so every
    id a random model samples decodes."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    vocab |= {f"<{i}>": i for i in range(len(vocab), vocab_size)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")


def qwen2_config(fields: dict[str, int], **extra: Any) -> Qwen2Config:
    return Qwen2Config(**fields, max_position_embeddings=16384, pad_token_id=0, eos_token_id=1, bos_token_id=1, **extra)


def random_model(config: Qwen2Config, device: torch.device, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """A causal LM with Hugging Face's random initialisation, built on `device`."""
    torch.manual_seed(seed)
    with device:
        return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


def decoder(ctx: Context) -> torch.nn.Module:
    """The bf16 decoder of the forward, long-row and rollout checks, built once."""
    if "decoder" not in ctx.shared:
        config = qwen2_config(ctx.sizes.decoder, tie_word_embeddings=False)
        ctx.shared["decoder"] = random_model(config, ctx.device, torch.bfloat16)
    return ctx.shared["decoder"]


def packed_batch(
    prompt_lengths: tuple[int, ...], completion_lengths: tuple[int, ...], vocab: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(input_ids, attention_mask, completion_ids, completion_mask)` packed as `GRPOModule._pack` does: prompts
    left-padded, completions right-padded, the completions of one prompt in consecutive rows."""
    g = torch.Generator().manual_seed(1)
    group = len(completion_lengths) // len(prompt_lengths)
    width, n_completion = max(prompt_lengths), max(completion_lengths)
    ids = torch.zeros(len(completion_lengths), width + n_completion, dtype=torch.long)
    attn = torch.zeros_like(ids)
    prompts = [torch.randint(2, vocab, (n,), generator=g) for n in prompt_lengths]
    for i, c in enumerate(completion_lengths):
        prompt = prompts[i // group]
        ids[i, width - len(prompt) : width], attn[i, width - len(prompt) : width] = prompt, 1
        ids[i, width : width + c], attn[i, width : width + c] = torch.randint(2, vocab, (c,), generator=g), 1
    ids, attn = ids.to(device), attn.to(device)
    return ids, attn, ids[:, width:], attn[:, width:]


# ------------------------------------------------------------------------------------------- fused head
def check_fused_head(check: Check, ctx: Context) -> None:
    """The fused LM head against plain autograd at the real vocabulary and width, in bf16."""
    from medzero_pl.grpo.logprobs import linear_logprobs_and_entropy

    s, device = ctx.sizes, ctx.device
    g = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(s.head_rows, s.head_hidden, device=device, generator=g).bfloat16()
    weight = (0.02 * torch.randn(s.head_vocab, s.head_hidden, device=device, generator=g)).bfloat16()
    ids = torch.randint(0, s.head_vocab, (s.head_rows,), device=device, generator=g)
    coef = torch.randn(s.head_rows, device=device, generator=g)  # advantage-like weights of a GRPO loss

    def plain() -> tuple[torch.Tensor, ...]:
        h, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
        logq = torch.log_softmax(F.linear(h, w).float(), dim=-1)  # (N, V): the full logits, then log_softmax
        logp = logq.gather(-1, ids[:, None]).squeeze(-1)
        with torch.no_grad():  # logged, not trained (entropy_coef = 0), as in the project's full-logits path
            entropy = -(logq.exp() * logq).sum(-1)
        (coef * logp).sum().backward()
        return logp.detach(), entropy, h.grad, w.grad

    def fused(chunk_rows: int | None = None) -> tuple[torch.Tensor, ...]:
        h, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
        logp, entropy = linear_logprobs_and_entropy(h, w, None, ids, with_entropy=True, chunk_rows=chunk_rows)
        (coef * logp).sum().backward()
        return logp.detach(), entropy, h.grad, w.grad

    reference = _fp64_head(hidden, weight, ids, coef)
    judged = {"judged": not ctx.tiny, "why_not": "tiny sizes"}
    results = {}
    for name, fn in (("plain", plain), ("fused", fused)):
        logp, entropy, grad_hidden, grad_weight = fn()
        errors = {
            "logp_max_abs_error": float((logp.double() - reference[0]).abs().max()),
            "entropy_max_abs_error": float((entropy.double() - reference[1]).abs().max()),
            "grad_hidden_rel_error": rel_error(grad_hidden, reference[2]),
            "grad_weight_rel_error": rel_error(grad_weight, reference[3]),
        }
        del logp, entropy, grad_hidden, grad_weight
        errors["seconds"] = timed(fn, device, ctx.repeats)
        errors["peak_gib"] = gib(peak_bytes(fn, device))
        results[name] = errors
    # Measured, not judged: blocks sized for a GPU (the default is sized for CPU caches).
    results["fused_1024_rows"] = {
        "seconds": timed(lambda: fused(1024), device, ctx.repeats),
        "peak_gib": gib(peak_bytes(lambda: fused(1024), device)),
    }
    check.measure(rows=s.head_rows, hidden=s.head_hidden, vocab=s.head_vocab, **results)
    p, f = results["plain"], results["fused"]
    for key in ("logp_max_abs_error", "entropy_max_abs_error"):
        check.expect(f"fused {key} {f[key]:.2e} <= {HEAD_LOGP_TOL}", f[key] <= HEAD_LOGP_TOL)
    for key in ("grad_weight_rel_error", "grad_hidden_rel_error"):
        check.expect(f"fused {key} {f[key]:.2e} <= {HEAD_GRAD_RTOL}", f[key] <= HEAD_GRAD_RTOL)
        check.expect(
            f"fused {key} {f[key]:.2e} no worse than plain's {p[key]:.2e} (x{HEAD_GRAD_SLACK})",
            f[key] <= HEAD_GRAD_SLACK * p[key],
        )
    ratio = f["seconds"] / p["seconds"]
    check.measure(time_ratio=round(ratio, 3))
    check.expect(
        f"fused forward+backward {ratio:.2f}x plain's <= {HEAD_TIME_RATIO}x", ratio <= HEAD_TIME_RATIO, **judged
    )
    memory_judged = {"judged": ctx.cuda, "why_not": "no CUDA memory statistics"}
    check.expect(
        f"fused peak {f['peak_gib']} GiB < plain's {p['peak_gib']} GiB",
        ctx.cuda and f["peak_gib"] < p["peak_gib"],
        **memory_judged,
    )


def _fp64_head(hidden: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor, coef: torch.Tensor) -> tuple:
    """Log-probs, entropies and the gradients of `sum(coef * logp)`, in float64 from the same bf16 inputs."""
    h, w = hidden.double().requires_grad_(), weight.double().requires_grad_()
    logq = torch.log_softmax(F.linear(h, w), dim=-1)
    logp = logq.gather(-1, ids[:, None]).squeeze(-1)
    entropy = -(logq.exp() * logq).sum(-1)
    (coef.double() * logp).sum().backward()
    return logp.detach(), entropy.detach(), h.grad, w.grad


# ------------------------------------------------------------------------------------ training forward
def attention_implementations(device: torch.device) -> list[str]:
    """Those this machine can run: flash_attention_2 only with CUDA and the flash_attn package."""
    import medzero_pl.model.attention  # noqa: F401 - registers medzero_sdpa

    found = ["sdpa", "eager", "medzero_sdpa"]
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        found.append("flash_attention_2")
    return found


def check_forward_equivalence(check: Check, ctx: Context) -> None:
    """Every training-forward variant in bf16 scores a left-padded batch as the fp32 model does."""
    from medzero_pl.model.forward import completion_logprobs_and_entropy

    model = decoder(ctx)
    batch = packed_batch(ctx.sizes.prompt_lengths, ctx.sizes.completion_lengths, model.config.vocab_size, ctx.device)
    mask = batch[3].bool()
    coef = torch.linspace(-1, 1, mask.shape[0], device=ctx.device)[:, None]  # (B, 1) advantage-like weights

    def score(m: torch.nn.Module, shared: bool, fused: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        m.zero_grad(set_to_none=True)
        logp, entropy = completion_logprobs_and_entropy(
            m, *batch[:3], 0.7, shared_prompt=shared, fused_head=fused, with_entropy=True
        )
        ((coef * logp)[mask].sum() / mask.sum()).backward()
        grads = {n: p.grad for n, p in m.named_parameters()}
        return logp.detach().float(), entropy.detach().float(), grads

    reference_model = copy.deepcopy(model).float()
    reference_model.set_attn_implementation("eager")
    ref_logp, ref_entropy, ref_grads = score(reference_model, shared=False, fused=False)
    ref_grads = {n: g.detach().clone() for n, g in ref_grads.items()}
    del reference_model
    release_memory()
    check.measure(
        tokens=int(batch[1].sum()),
        completion_tokens=int(mask.sum()),
        reference_logp_std=float(ref_logp[mask].std()),  # the spread the errors are small against
    )
    variants = {}
    try:
        for attention in attention_implementations(ctx.device):
            model.set_attn_implementation(attention)
            for shared in (False, True):
                for fused in (False, True):
                    logp, entropy, grads = score(model, shared, fused)
                    name = f"{attention}/shared={shared}/fused={fused}"
                    variants[name] = {
                        "logp_max_abs_error": float((logp - ref_logp)[mask].abs().max()),
                        "logp_mean_abs_error": float((logp - ref_logp)[mask].abs().mean()),
                        "entropy_max_abs_error": float((entropy - ref_entropy)[mask].abs().max()),
                        "grad_rel_error": _global_rel_error(grads, ref_grads),
                    }
    finally:
        model.zero_grad(set_to_none=True)
        model.set_attn_implementation("sdpa")
    check.measure(variants=variants)
    for name, v in variants.items():
        worst = max(v["logp_max_abs_error"], v["entropy_max_abs_error"])
        check.expect(f"{name}: log-prob/entropy error {worst:.2e} <= {FORWARD_LOGP_TOL}", worst <= FORWARD_LOGP_TOL)
        check.expect(
            f"{name}: gradient error {v['grad_rel_error']:.2e} <= {FORWARD_GRAD_RTOL}",
            v["grad_rel_error"] <= FORWARD_GRAD_RTOL,
        )


def _global_rel_error(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """Relative error of all gradients taken as one vector."""
    diff = sum(float((grads[n].double() - r.double()).square().sum()) for n, r in reference.items())
    norm = sum(float(r.double().square().sum()) for r in reference.values())
    return math.sqrt(diff / max(norm, 1e-300))


def long_row_budget(model: torch.nn.Module) -> int:
    """Bytes the long row may take: its parameters' gradients (the parameters were allocated before) plus
    `LONG_ROW_ACTIVATIONS`."""
    return sum(p.numel() * p.element_size() for p in model.parameters()) + LONG_ROW_ACTIVATIONS


def check_long_row(check: Check, ctx: Context) -> None:
    """One DiagnosisZero-length row (1,024 + 8,192 tokens) through the training forward with checkpointing."""
    from medzero_pl.model.forward import completion_logprobs_and_entropy

    s, model = ctx.sizes, decoder(ctx)
    batch = packed_batch((s.long_prompt,), (s.long_completion,), model.config.vocab_size, ctx.device)
    out: dict[str, Any] = {}

    def step() -> None:
        model.zero_grad(set_to_none=True)
        logp, _ = completion_logprobs_and_entropy(
            model, *batch[:3], 1.0, shared_prompt=True, fused_head=True, with_entropy=True
        )
        (-logp.mean()).backward()
        out["logp"] = logp.detach()

    model.train()
    model.gradient_checkpointing_enable()
    try:
        start = time.perf_counter()
        peak = peak_bytes(step, ctx.device)
        seconds = time.perf_counter() - start
        grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
        with_grad = sum(p.grad is not None for p in model.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.gradient_checkpointing_disable()
        model.eval()
    budget = long_row_budget(model)
    check.measure(
        prompt=s.long_prompt,
        completion=s.long_completion,
        seconds=round(seconds, 3),
        peak_gib=gib(peak),
        budget_gib=gib(budget),
        mean_logp=float(out["logp"].mean()),
    )
    check.expect("log-probs finite", bool(torch.isfinite(out["logp"]).all()))
    check.expect("every parameter got a finite gradient", grads_finite and with_grad == len(list(model.parameters())))
    check.expect(
        f"peak {gib(peak)} GiB <= budget {gib(budget)} GiB",
        peak is not None and peak <= budget,
        judged=ctx.cuda,
        why_not="no CUDA memory statistics",
    )


# ------------------------------------------------------------------------------------------- rollouts
def check_rollout_determinism(check: Check, ctx: Context) -> None:
    """`HFRolloutEngine`: the same seed gives the same completions; another seed, others."""
    from medzero_pl.rollout.base import SamplingParams
    from medzero_pl.rollout.hf import HFRolloutEngine

    s, model = ctx.sizes, decoder(ctx)
    engine = HFRolloutEngine(model, char_tokenizer(model.config.vocab_size))
    g = torch.Generator().manual_seed(2)
    prompts = [
        torch.randint(2, model.config.vocab_size, (5 + 3 * i,), generator=g).tolist() for i in range(s.rollout_prompts)
    ]

    def sample(seed: int) -> list[list[int]]:
        sampling = SamplingParams(max_new_tokens=s.rollout_tokens, temperature=1.0, seed=seed)
        return engine.generate(prompts, s.rollout_samples, sampling).completion_ids

    first, again, other = sample(1234), sample(1234), sample(4321)
    check.measure(completions=len(first), tokens=sum(map(len, first)))
    check.expect("same seed, same completions", first == again)
    check.expect("another seed, other completions", first != other)


# -------------------------------------------------------------------------------------------- ZeRO-3
class ScriptedEngine:
    """Completions that depend only on (prompt, sample index): both runs train on the same batch."""

    owns_weights = False

    def __init__(self, tokenizer: PreTrainedTokenizerFast, max_new_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: Any) -> Any:
        from medzero_pl.rollout.base import Rollouts

        ids, reasons = [], []
        for prompt in prompt_ids:
            g = torch.Generator().manual_seed(zlib.crc32(str(prompt).encode()))
            for _ in range(n):
                length = int(torch.randint(1, self.max_new_tokens + 1, (1,), generator=g))
                tokens = torch.randint(2, 2 + len(CHARS), (length,), generator=g).tolist()
                stop = length < self.max_new_tokens
                ids.append(tokens[:-1] + [self.tokenizer.eos_token_id] if stop else tokens)
                reasons.append("stop" if stop else "length")
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Rollouts(completion_ids=ids, texts=texts, finish_reasons=reasons)

    def update_weights(self, named_tensors: Any) -> None:
        """No weights of its own."""

    def sleep(self) -> None:
        """Nothing to free."""

    def wake_up(self) -> None:
        """Nothing to restore."""


SMALL_GATHER = 3000
"""Elements per gather in the second round trip: the model is gathered in many blocks."""


def _recorder() -> Any:
    from lightning.pytorch import Callback

    from medzero_pl.strategies import full_named_parameters

    class Recorder(Callback):
        """Swaps in the scripted engine, keeps the gathered start weights and every step's loss and grad norm."""

        def __init__(self) -> None:
            self.initial: dict[str, torch.Tensor] = {}
            self.initial_blocks: dict[str, torch.Tensor] = {}
            self.losses: list[float] = []
            self.grad_norms: list[float] = []

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            pl_module.engine = ScriptedEngine(pl_module.tokenizer, pl_module.grpo.max_completion_length)
            self.initial = {n: t.cpu().clone() for n, t in full_named_parameters(pl_module.policy)}
            self.initial_blocks = {n: t.cpu().clone() for n, t in full_named_parameters(pl_module.policy, SMALL_GATHER)}

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            self.losses.append(float(trainer.callback_metrics["loss"]))
            self.grad_norms.append(float(trainer.callback_metrics["grad_norm"]))

    return Recorder()


def write_run_inputs(ctx: Context) -> tuple[Path, Path]:
    """A random fp32 Qwen2 with a character tokenizer, and 12 MedQA-layout questions."""
    model_dir, data = ctx.scratch / "zero3_model", ctx.scratch / "questions.jsonl"
    config = qwen2_config(ctx.sizes.zero3_model, tie_word_embeddings=True)
    random_model(config, torch.device("cpu"), torch.float32, seed=3).save_pretrained(model_dir)
    char_tokenizer(config.vocab_size).save_pretrained(model_dir)
    options = {letter: f"letter {letter}" for letter in "ABCD"}
    with open(data, "w") as f:
        for i in range(12):
            gold = "ABCD"[i % 4]
            f.write(json.dumps({"question": f"Say {gold}", "options": options, "answer_idx": gold}) + "\n")
    return model_dir, data


def run_overrides(ctx: Context, model_dir: Path, data: Path, run_dir: Path, strategy: str) -> list[str]:
    """A `python -m medzero_pl.fit` run: 2 GRPO steps of 3 prompts x 4 completions in micro-batches of 4."""
    budget = ctx.sizes.zero3_completion
    settings = {
        "model.name_or_path": model_dir,
        "data.sources": f"[{{path: {data}, format: medqa}}]",
        "data.val_fraction": 0,
        "data.prompts_per_step": 3,
        "prompt.system": "null",
        "prompt.user": "'{question}{choices}'",
        # DAPO's length penalty in tokens: the scripted completions' lengths give every group a reward spread.
        "rewards": f"[{{name: soft_overlong, kwargs: {{max_length: {budget}, cache: {budget - 1}, unit: tokens}}}}]",
        "grpo.num_generations": 4,
        "grpo.max_completion_length": budget,
        "grpo.micro_batch_size": 4,
        "optim.lr": 1e-3,
        "optim.warmup_steps": 0,
        "optim.scheduler": "constant",
        "rollout.engine": "hf",
        "trainer.max_steps": 2,
        "trainer.accelerator": ctx.accelerator,
        "trainer.devices": 1,
        "trainer.strategy": strategy,
        "trainer.enable_progress_bar": "false",
        "logging.wandb": "disabled",
        "logging.log_completions": 0,
        "run_dir": run_dir,
    }
    return [f"{k}={v}" for k, v in settings.items()]


def train(ctx: Context, model_dir: Path, data: Path, run_dir: Path, strategy: str) -> dict[str, Any]:
    """One run as `python -m medzero_pl.fit` builds it; what the recorder saw and the final gathered weights."""
    from medzero_pl.config import compose
    from medzero_pl.fit import build
    from medzero_pl.strategies import full_named_parameters

    trainer, module, datamodule = build(compose(run_overrides(ctx, model_dir, data, run_dir, strategy)))
    recorder = _recorder()
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule)
    return {
        "initial": recorder.initial,
        "initial_blocks": recorder.initial_blocks,
        "losses": recorder.losses,
        "grad_norms": recorder.grad_norms,
        "final": {n: t.cpu().clone() for n, t in full_named_parameters(module.policy)},
        "checkpoint": trainer.checkpoint.path,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def without_plots_if_no_matplotlib(check: Check) -> Iterator[None]:
    """`MedZeroTrainer.fit` ends by plotting the run with matplotlib, which the GPU machine may lack: the plots
    are no part of this check, so without matplotlib they are skipped (and the skip recorded)."""
    import medzero_pl.run

    if importlib.util.find_spec("matplotlib") is not None:
        yield
        return
    check.measure(plots="skipped: matplotlib is not installed")
    original = medzero_pl.run.write_plots
    medzero_pl.run.write_plots = lambda run_dir: None
    try:
        yield
    finally:
        medzero_pl.run.write_plots = original


def check_zero3_training(check: Check, ctx: Context) -> None:
    """One rank of ZeRO-3 through the project's strategy against the same run without DeepSpeed."""
    model_dir, data = write_run_inputs(ctx)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    if not ctx.cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed is imported (resolve_strategy does too)
    with without_plots_if_no_matplotlib(check):
        plain = train(ctx, model_dir, data, ctx.scratch / "plain_run", "auto")
        zero3 = train(ctx, model_dir, data, ctx.scratch / "zero3_run", "deepspeed_stage3")
    ctx.shared["zero3"] = zero3
    mismatched = {n: _max_abs(zero3["final"][n], t) for n, t in plain["final"].items()}
    check.measure(
        backend=torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        micro_batches=3,
        plain_losses=plain["losses"],
        zero3_losses=zero3["losses"],
        plain_grad_norms=plain["grad_norms"],
        zero3_grad_norms=zero3["grad_norms"],
        max_abs_weight_difference=max(mismatched.values()),
        parameters_differing=sum(d > 0 for d in mismatched.values()),
    )
    for label, gathered in (("whole", zero3["initial"]), (f"{SMALL_GATHER}-element blocks", zero3["initial_blocks"])):
        exact = list(gathered) == list(plain["initial"]) and all(
            torch.equal(gathered[n], t) for n, t in plain["initial"].items()
        )
        check.expect(f"gathered start parameters ({label}) bit-exact", exact)
    check.expect(
        "global grad norms finite and > 0",
        len(zero3["grad_norms"]) == 2 and all(math.isfinite(x) and x > 0 for x in zero3["grad_norms"]),
    )
    check.expect(
        "three micro-batches: grad norms as plain autograd on the mean loss (rtol 1e-4)",
        _close(zero3["grad_norms"], plain["grad_norms"], 1e-4),
    )
    weights_close = all(torch.allclose(zero3["final"][n], t, rtol=1e-4, atol=1e-6) for n, t in plain["final"].items())
    check.expect("three micro-batches: weights after 2 steps as plain autograd's (rtol 1e-4)", weights_close)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def _close(got: list[float], expected: list[float], rtol: float) -> bool:
    return len(got) == len(expected) > 0 and all(
        math.isclose(a, b, rel_tol=rtol, abs_tol=1e-7) for a, b in zip(got, expected, strict=True)
    )


def check_zero3_export(check: Check, ctx: Context) -> None:
    """`python -m medzero_pl.export` of the ZeRO-3 checkpoint, loaded back with transformers."""
    run = ctx.shared.get("zero3")
    if run is None:
        raise RuntimeError("no ZeRO-3 run to export (zero3_training failed before finishing it)")
    out = ctx.scratch / "exported"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "medzero_pl.export", str(run["checkpoint"]), str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    check.measure(export_seconds=round(time.perf_counter() - start, 2), export_exit=done.returncode)
    if not check.expect("export exits 0", done.returncode == 0):
        check.measure(export_stderr=done.stderr[-3000:])
        return
    exported = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    trained = run["final"]
    check.measure(tensors=len(trained))
    check.expect("the export holds every trained tensor", set(trained) <= set(exported))
    check.expect(
        "its weights equal the trained policy's (bit-exact)",
        all(n in exported and torch.equal(exported[n], t) for n, t in trained.items()),
    )
    check.expect("training changed the weights", any(not torch.equal(run["initial"][n], t) for n, t in trained.items()))


# ------------------------------------------------------------------------------------------------ main
CHECKS: list[tuple[str, Callable[[Check, Context], None]]] = [
    ("fused_head", check_fused_head),
    ("forward_equivalence", check_forward_equivalence),
    ("long_row", check_long_row),
    ("rollout_determinism", check_rollout_determinism),
    ("zero3_training", check_zero3_training),
    ("zero3_export", check_zero3_export),
]


def environment(device: torch.device) -> dict[str, Any]:
    versions = {}
    for name in ("torch", "transformers", "lightning", "deepspeed", "accelerate", "peft", "flash_attn"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    git = ["git", "-C", str(ROOT), "rev-parse", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() if shutil.which("git") else ""
    info: dict[str, Any] = {
        "commit": commit or None,  # the GPU machine's copy of the tree may have no .git
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }
    if device.type == "cuda":
        info |= {
            "gpu": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "gpu_memory_gib": gib(torch.cuda.get_device_properties(device).total_memory),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_smoke.json"), help="JSON file of every measurement")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: CUDA when there")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (always on CPU)")
    parser.add_argument(
        "--checks", default=",".join(name for name, _ in CHECKS), help="comma-separated subset, in the order above"
    )
    args = parser.parse_args(argv)
    unknown = set(args.checks.split(",")) - {name for name, _ in CHECKS}
    if unknown:
        parser.error(f"--checks: unknown {sorted(unknown)}; expected names from {[name for name, _ in CHECKS]}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model is built here: nothing may be downloaded
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type == "cpu"
    if device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    selected = [(name, fn) for name, fn in CHECKS if name in args.checks.split(",")]
    started = time.perf_counter()
    header = {
        "mode": "cpu-tiny" if device.type == "cpu" else ("gpu-tiny" if tiny else "gpu"),
        "environment": environment(device),
        "sizes": asdict(TINY if tiny else FULL),
    }
    print(json.dumps(header["environment"]), flush=True)

    def report(done: list[Check]) -> None:
        failed = [c.name for c in done if c.status != "pass"]
        result = header | {
            "seconds": round(time.perf_counter() - started, 1),
            "checks": [asdict(c) for c in done],
            "not_run": [name for name, _ in selected[len(done) :]],
            "failed": failed,
            "passed": not failed and len(done) == len(selected),
            "not_covered": NOT_COVERED,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))

    with tempfile.TemporaryDirectory(prefix="gpu_smoke-") as scratch:
        ctx = Context(device=device, sizes=TINY if tiny else FULL, tiny=tiny, scratch=Path(scratch))
        checks = run_checks(selected, ctx, report)
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    failed = [c.name for c in checks if c.status != "pass"]
    print("not covered by this run:\n" + "\n".join(f"  - {item}" for item in NOT_COVERED))
    print(
        f"gpu_smoke: {len(checks) - len(failed)} of {len(checks)} checks passed in "
        f"{time.perf_counter() - started:.0f} s; results in {args.out}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
