"""Completion log-probs (and entropies) from the decoder's hidden states, the LM head fused into the log-softmax.

Scoring completions from the model's logits materialises `(B, C, V)` float32 logits and keeps them until backward,
which then adds their gradient of the same size. At SmolLM2's 49k vocabulary, one micro-batch of 4 rows x 128 tokens
holds 100 MB of logits and, in backward, 100 MB of their gradient; at Qwen's 152k vocabulary and DiagnosisZero's
1,024-token answers, 0.6 GB per row. Here the decoder runs alone and `linear_logprobs_and_entropy` scores its hidden
states a block of positions at a time: forward keeps the hidden states and two floats per token, backward recomputes
one block of logits at a time. The cost is one more head matmul in backward.

The fused function runs as the head's own forward (its `forward` swapped for the call, as Lightning's forward
redirection does), so the hooks a sharding wrapper put on the head fire as in any forward: ZeRO-3 gathers the weight
for forward and again before backward, and reduces its gradient after. A head tied to the input embeddings is the
same parameter and receives both gradients, as before.

Only architectures whose logits are exactly `lm_head(last_hidden_state)` are split (`SPLIT_MODEL_TYPES`). Models that
scale or soft-cap their logits (Gemma 2, Cohere, Granite, ...) keep their own forward and full logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medzero_pl.grpo import completion_logprobs, linear_logprobs_and_entropy, token_entropy

SPLIT_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
"""Hugging Face `model_type`s whose causal-LM forward is `lm_head(model(...).last_hidden_state)`, nothing more."""


def split_lm_head(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """`(backbone, head)` of a causal LM whose logits are `head(backbone(...).last_hidden_state)`, else None.

    A LoRA policy (`PeftModel`) is split through the causal LM it wraps, whose layers carry the adapters; a head
    with adapters or trained fully (`model.lora.modules_to_save`) is no plain `nn.Linear` and keeps full logits.
    """
    if hasattr(model, "get_base_model"):  # PeftModel: its own `base_model` is peft's LoraModel, not the decoder
        model = model.get_base_model()
    if getattr(getattr(model, "config", None), "model_type", None) not in SPLIT_MODEL_TYPES:
        return None
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear) or model.base_model is model:
        return None
    return model.base_model, head


def logprobs_and_entropy(
    logits: Tensor, completion_ids: Tensor, temperature: float, *, with_entropy: bool, entropy_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of `completion_ids` under `softmax(logits / temperature)` and, if asked, its entropies.

    `logits[..., t, :]` predicts `completion_ids[..., t]`. The entropies get a graph only with `entropy_grad`
    (they are logged always but are part of the loss only with an entropy bonus).
    """
    logp = completion_logprobs(logits, completion_ids, temperature)
    if not with_entropy:
        return logp, None
    with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
        return logp, token_entropy(logits, temperature)


def head_logprobs_and_entropy(
    head: nn.Linear,
    hidden: Tensor,
    completion_ids: Tensor,
    temperature: float,
    *,
    with_entropy: bool,
    entropy_grad: bool,
    chunk_rows: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """`logprobs_and_entropy(head(hidden), ...)` with the head fused into the log-softmax (logits never held whole).

    Runs as `head`'s forward, so hooks on the head (ZeRO-3's gathering) fire as in `head(hidden)`.

    Args:
        head: the LM head.
        hidden: `(B, C, d)` hidden states; position t predicts `completion_ids[:, t]`.
        completion_ids: `(B, C)`.
        temperature: the sampling temperature.
        with_entropy: also return entropies.
        entropy_grad: make the entropies differentiable.
        chunk_rows: positions per block (see `linear_logprobs_and_entropy`).

    Returns:
        `(logp, entropy)`, each `(B, C)` float32, entropy None unless asked for.
    """

    def fused(hidden: Tensor, completion_ids: Tensor) -> tuple[Tensor, Tensor | None]:
        return linear_logprobs_and_entropy(
            hidden,
            head.weight,
            head.bias,
            completion_ids,
            temperature,
            with_entropy=with_entropy,
            entropy_grad=entropy_grad,
            chunk_rows=chunk_rows,
        )

    own_forward = head.__dict__.get("forward")
    head.forward = fused
    try:
        return head(hidden, completion_ids)
    finally:
        if own_forward is None:
            del head.forward
        else:
            head.forward = own_forward
