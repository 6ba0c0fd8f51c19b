"""The training forward pass: per-token log-probs (and entropies) of completions given their prompts.

Rows are `(prompt, completion)` pairs packed as `pack` does: prompts left-padded to a common width, completions
right-padded after them, in prompt-major order (the G completions of a prompt are consecutive rows). Two things make
this cheaper than running the model on every padded row, and neither changes a single log-prob:

- **Trimming.** A micro-batch is cut to its own extent: leading columns where every row is prompt padding and trailing
  columns where every row is completion padding are dropped; log-probs are zero-padded back to the full width.
  Position ids are passed explicitly, so every kept token keeps the position it had in the untrimmed batch.
- **Shared prompt** (`shared_prompt=True`). Rows with the same prompt run the prompt once: a forward pass over the
  distinct prompts fills a key/value cache, the cache is gathered along the batch to one entry per row
  (`DynamicCache.batch_select_indices`, a differentiable index), and the completions run against it. Gradients of the
  completions' loss flow back through the gathered cache into the prompt pass. With MedQA prompts of ~330 tokens,
  completions of ~64 and G = 4, the tokens the model runs per group drop from 4 x 394 to 330 + 4 x 64 (about 2.7x
  fewer FLOPs). Both passes are ordinary `model(...)` calls, so sharded wrappers (FSDP, ZeRO-3) gather parameters as
  in any forward. Their input embeddings come from one lookup (`embed_once`), so backward writes one dense gradient of
  the embedding matrix, not one per pass.

The prompt pass stops one token short of the prompt: the last prompt token leads the completion segment, so the
completion pass returns exactly the `C` positions that score the `C` completion tokens and nothing needs
concatenating.

For the common architectures (`medzero_pl.model.lm_head.SPLIT_MODEL_TYPES`: Llama, Mistral, Qwen 2/3) both passes run the
decoder alone and the LM head scores its hidden states a chunk of positions at a time (`medzero_pl/model/lm_head.py`), so
the `(B, C, V)` logits and their gradient are never held whole. Other models run their own forward and are scored
from full logits.

Limitation: Hugging Face layers drop any KV cache under gradient checkpointing (`GradientCheckpointingLayer`), so a
checkpointed model in training mode falls back to the plain forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.utils import ModelOutput

from medzero_pl.model.lm_head import head_logprobs_and_entropy, logprobs_and_entropy, split_lm_head


def pad_rows(
    rows: Sequence[Sequence[float]],
    value: float,
    *,
    side: Literal["left", "right"] = "right",
    width: int | None = None,
    dtype: torch.dtype = torch.long,
) -> tuple[Tensor, Tensor]:
    """Rows of different lengths as one `(B, width)` tensor and its `(B, width)` mask (1 on real entries).

    `side="left"` puts the padding `value` before each row (prompts, which generation continues), `"right"` after it
    (completions). `width` defaults to the longest row.
    """
    width = max(map(len, rows), default=0) if width is None else width
    values = torch.full((len(rows), width), value, dtype=dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        cols = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        if len(row):
            values[i, cols] = torch.tensor(row, dtype=dtype)
            mask[i, cols] = 1
    return values, mask


def pack(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int
) -> dict[str, Tensor]:
    """Prompt `i` left-padded and completion `i` right-padded after it, as one `(B, Lp + Lc)` row.

    Returns `input_ids` and `attention_mask` `(B, Lp + Lc)`, `completion_ids` and `completion_mask` `(B, Lc)`, with
    `Lc >= 1` so a batch of empty completions still has a shape.
    """
    prompts, prompt_mask = pad_rows(prompt_ids, pad_id, side="left")  # (B, Lp)
    width = max(1, max(map(len, completion_ids), default=0))
    completions, completion_mask = pad_rows(completion_ids, pad_id, width=width)  # (B, Lc)
    return {
        "input_ids": torch.cat([prompts, completions], dim=1),
        "attention_mask": torch.cat([prompt_mask, completion_mask], dim=1),
        "completion_ids": completions,
        "completion_mask": completion_mask,
    }


def prompt_groups(prompt_ids: Tensor, prompt_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Runs of consecutive rows with the same (padded) prompt.

    Args:
        prompt_ids: `(B, P)` left-padded prompt ids.
        prompt_mask: `(B, P)` their attention mask.

    Returns:
        `(group, first)`: `group[i]` is the run index of row `i` (`(B,)`), `first[k]` the first row of run `k` (`(U,)`).
    """
    same = (prompt_ids[1:] == prompt_ids[:-1]).all(1) & (prompt_mask[1:] == prompt_mask[:-1]).all(1)  # (B-1,)
    starts = torch.cat([same.new_ones(1), ~same])  # (B,)
    return starts.long().cumsum(0) - 1, starts.nonzero().squeeze(1)


def trim_columns(attention_mask: Tensor, n_completion: int) -> tuple[int, int]:
    """`(start, n_kept)`: the first column holding any prompt token, and the completion columns holding any token.

    At least one completion column is kept, so a micro-batch of empty completions still has a shape.
    """
    real = attention_mask.bool()
    n_prompt = attention_mask.shape[1] - n_completion
    prompt_cols = real[:, :n_prompt].any(0).nonzero()  # (k, 1)
    start = int(prompt_cols[0]) if len(prompt_cols) else 0
    completion_cols = real[:, n_prompt:].any(0).nonzero()  # (k, 1)
    n_kept = int(completion_cols[-1]) + 1 if len(completion_cols) else 1
    return start, max(1, n_kept)


def plain_forward(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, positions: Tensor, **kwargs
) -> ModelOutput:
    """One pass over every row, all but the last token (it predicts nothing); `kwargs` go to the model."""
    return model(
        input_ids=input_ids[:, :-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, :-1],
        use_cache=False,
        **kwargs,
    )


def shared_prompt_forward(
    model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, positions: Tensor, n: int, **prompt_kwargs
) -> ModelOutput:
    """The pass over the last `n` positions of every row, each distinct prompt (all but the last `n` tokens) run once.

    Args:
        model: a Hugging Face causal LM or decoder (any model whose forward takes `past_key_values` as a
            `DynamicCache`).
        input_ids: `(B, P + n)` rows, the prompt part left-padded.
        attention_mask: `(B, P + n)`.
        positions: `(1, P + n)` position ids.
        n: completion width; needs `P >= 2`.
        prompt_kwargs: extra arguments of the prompt pass.

    Returns:
        The completion pass's output: `n` positions, position t predicting the t-th of the last `n` tokens.
    """
    head = input_ids.shape[1] - n - 1  # the prompt minus its last token (that one leads the completion segment)
    group, first = prompt_groups(input_ids[:, : head + 1], attention_mask[:, : head + 1])
    prompt_embeds, completion_embeds = embed_once(model, input_ids[first, :head], input_ids[:, head:-1])
    prompt = model(
        inputs_embeds=prompt_embeds,
        attention_mask=attention_mask[first, :head],
        position_ids=positions[:, :head],
        use_cache=True,
        **prompt_kwargs,
    )
    cache = prompt.past_key_values
    cache.batch_select_indices(group)  # (U, H, head, D) -> (B, H, head, D) per layer; gradients sum back per prompt
    return model(
        inputs_embeds=completion_embeds,  # last prompt token + completion minus its last token: n tokens
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, head:-1],
        past_key_values=cache,
        use_cache=True,
    )


def embed_once(model: torch.nn.Module, *ids: Tensor) -> list[Tensor]:
    """The input embeddings of several id tensors from one lookup.

    Each lookup's backward writes a dense `(vocab, d)` gradient of the embedding matrix (113 MB for SmolLM2, 0.9 GB at
    Qwen's 152k x 1,536), which autograd then adds to the others: one lookup for both passes of the shared-prompt
    forward makes one such gradient instead of two.
    """
    flat = model.get_input_embeddings()(torch.cat([t.reshape(-1) for t in ids]))  # (sum of numels, d)
    return [part.view(*t.shape, -1) for part, t in zip(flat.split([t.numel() for t in ids]), ids, strict=True)]


def _cache_usable(model: torch.nn.Module) -> bool:
    """False when HF layers would silently drop the cache (gradient checkpointing while training)."""
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    return not (model.training and checkpointing)


def completion_logprobs_and_entropy(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_ids: Tensor,
    temperature: float,
    *,
    shared_prompt: bool = False,
    fused_head: bool = False,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Per-token log-probs (and entropies) of the completion tokens of a micro-batch, trimmed to its extent.

    Args:
        model: a causal LM.
        input_ids: `(B, P + C)` left-padded prompts followed by right-padded completions.
        attention_mask: `(B, P + C)`.
        completion_ids: `(B, C)` the completion part of `input_ids`.
        temperature: the sampling temperature the logits are divided by.
        shared_prompt: run each distinct prompt once and its completions against its KV cache.
        fused_head: score with the LM head fused into the log-softmax (`medzero_pl/model/lm_head.py`) when the model
            splits into decoder and head; otherwise from the model's full logits.
        with_entropy: also return token entropies.
        entropy_grad: build a graph for the entropies (only when they are part of the loss).

    Returns:
        `(logp, entropy)`, each `(B, C)` float32 (zero past a micro-batch's longest completion), entropy None unless
        asked for.
    """
    n_completion = completion_ids.shape[1]
    start, n = trim_columns(attention_mask, n_completion)
    end = input_ids.shape[1] - n_completion + n
    ids, attn = input_ids[:, start:end], attention_mask[:, start:end]
    positions = torch.arange(start, end, device=ids.device).unsqueeze(0)  # (1, L): the untrimmed positions
    split = split_lm_head(model) if fused_head else None  # (decoder, head): hidden states, scored block by block
    out = _completion_outputs(split[0] if split else model, ids, attn, positions, n, shared_prompt, split is None)
    target, scores = completion_ids[:, :n], {"with_entropy": with_entropy, "entropy_grad": entropy_grad}
    if split:
        logp, entropy = head_logprobs_and_entropy(
            split[1], out.last_hidden_state[:, -n:], target, temperature, **scores
        )
    else:
        logp, entropy = logprobs_and_entropy(out.logits, target, temperature, **scores)
    pad = (0, n_completion - n)
    return F.pad(logp, pad), F.pad(entropy, pad) if entropy is not None else None


def _completion_outputs(
    model: torch.nn.Module, ids: Tensor, attn: Tensor, positions: Tensor, n: int, shared: bool, logits: bool
) -> ModelOutput:
    """The outputs (logits of a causal LM when `logits`, else hidden states) that predict the last `n` tokens."""
    if shared and ids.shape[1] - n >= 2 and _cache_usable(model):
        return shared_prompt_forward(model, ids, attn, positions, n, **({"logits_to_keep": 1} if logits else {}))
    return plain_forward(model, ids, attn, positions, **({"logits_to_keep": n} if logits else {}))
