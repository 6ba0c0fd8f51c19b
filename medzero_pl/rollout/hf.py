"""Rollouts with Hugging Face ``model.generate``: left-padded batches, KV cache, token ids in and out.

Choices worth knowing:

- Seeding. ``transformers`` samples with the global torch RNG, so when ``sampling.seed`` is set each call runs
  inside ``torch.random.fork_rng`` (CPU plus the model's accelerator) seeded with exactly that seed: the same
  seed replays the same completions and the caller's RNG stream is left untouched. The engine keeps no counter,
  so the caller varies the seed per call (the trainer derives it from the step, which makes resumed runs exact).
  Results also depend on ``batch_size`` (it decides which rows share a forward pass). Without a seed, sampling
  draws from (and advances) the global RNG.
- ``logprobs`` is None: ``generate`` can return scores, but only after logits processing (temperature, top-k,
  top-p), which are not the policy's log-probs. The trainer recomputes them with a forward pass.
- A completion ends after its first EOS token, which is kept (finish reason ``"stop"``); a completion without EOS
  ran to ``max_new_tokens`` (``"length"``). The padding ``generate`` appends to finished rows is dropped.
- Shared prefill (``shared_prefill=True``, the default). The ``n`` rows of a prompt are the same prompt: each distinct
  prompt of a chunk is prefilled once (all but its last token), its key/value cache is repeated along the batch, and
  ``generate`` continues from it. With ~330-token prompts and ``n = 4``, prefill is most of the generation FLOPs, and
  this does a quarter of it. The position ids are the ones ``generate`` itself derives from the attention mask, so
  the completions are those of the plain path up to float rounding (identical under greedy decoding in the tests).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.model.forward import pad_rows, prompt_groups
from medzero_pl.rollout.base import Placement, Rollouts, SamplingParams, repeat_each
from medzero_pl.rollout.config import RolloutConfig


class HFRolloutEngine:
    """Generate completions with ``model.generate``.

    Args:
        model: A causal LM; it is switched to eval mode while generating and restored afterwards.
        tokenizer: Supplies EOS / pad ids and decodes ``texts``.
        batch_size: Most sequences (prompts x n) per ``generate`` call; None puts everything in one call.
        shared_prefill: Prefill each distinct prompt once and repeat its KV cache for its ``n`` rows.
    """

    owns_weights = False  # it generates with the policy object itself
    has_weights = True  # always the policy's own

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int | None = None,
        shared_prefill: bool = True,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.shared_prefill = shared_prefill
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)

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
    ) -> HFRolloutEngine:
        """The engine `ENGINES["hf"]` builds: it generates with `policy` itself (on the policy's device, in its dtype)
        and has no settings of its own."""
        return cls(policy, tokenizer)

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingParams) -> Rollouts:
        """Return ``len(prompt_ids) * n`` completions, prompt-major (``i * n + j`` is sample ``j`` of prompt ``i``)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        rows = repeat_each(prompt_ids, n)
        step = self.batch_size or max(len(rows), 1)
        config = self._generation_config(sampling)
        device = self.model.device
        seeded = sampling.seed is not None
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        completions: list[list[int]] = []
        try:
            with (
                torch.no_grad(),
                torch.random.fork_rng([device] if device.type != "cpu" else [], seeded, device_type=device.type),
            ):
                if seeded:
                    torch.manual_seed(sampling.seed)
                for start in range(0, len(rows), step):
                    completions += self._generate_chunk(rows[start : start + step], config)
        finally:
            for module, training in modes:
                module.training = training
        cut = [self._cut_at_eos(ids) for ids in completions]
        completion_ids = [ids for ids, _ in cut]
        texts = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True) if cut else []
        return Rollouts(completion_ids=completion_ids, texts=texts, finish_reasons=[reason for _, reason in cut])

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """No-op: this engine generates with the policy object itself, so it always has its weights."""

    def sleep(self) -> None:
        """No-op: the weights are the policy's, there is nothing of the engine's own to free."""

    def _generation_config(self, sampling: SamplingParams) -> GenerationConfig:
        greedy = sampling.temperature == 0
        sample_args = {} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p}
        return GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            top_k=None if greedy or sampling.top_k == 0 else sampling.top_k,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            use_cache=True,
            **sample_args,
        )

    def _generate_chunk(self, rows: list[list[int]], config: GenerationConfig) -> list[list[int]]:
        input_ids, attention_mask = pad_rows(rows, self.pad_id, side="left")  # (B, T)
        width = input_ids.shape[1]
        device = self.model.device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        cache = self._shared_prefill(input_ids, attention_mask) if self.shared_prefill and width > 1 else None
        out = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, generation_config=config
        )
        return out[:, width:].tolist()  # (B, new tokens)

    def _shared_prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """KV cache of all but the last prompt token, computed once per distinct prompt, one entry per row.

        None when every row's prompt is distinct (nothing to share; ``generate`` prefills as usual).
        """
        group, first = prompt_groups(input_ids, attention_mask)
        if len(first) == len(input_ids):
            return None
        positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)  # as `generate` derives them
        prefix = self.model(
            input_ids=input_ids[first, :-1],
            attention_mask=attention_mask[first, :-1],
            position_ids=positions[first, :-1],
            use_cache=True,
            logits_to_keep=1,
        )
        cache = prefix.past_key_values
        cache.batch_select_indices(group)  # (U, ...) -> (B, ...)
        return cache

    def _cut_at_eos(self, ids: list[int]) -> tuple[list[int], str]:
        for k, token in enumerate(ids):
            if token in self.eos_ids:
                return ids[: k + 1], "stop"
        return ids, "length"


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """EOS ids from the generation config (may be a list, e.g. Qwen's ``<|im_end|>`` and ``<|endoftext|>``) and tokenizer."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer defines an EOS token")
    return ids
