"""The chunked LM head scores completions as the full logits do, with the same gradients, one chunk at a time."""

from __future__ import annotations

import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, Qwen2Config, Qwen2ForCausalLM

from medzero_pl.grpo import completion_logprobs
from medzero_pl.model.forward import completion_logprobs_and_entropy
from medzero_pl.model.lm_head import head_logprobs_and_entropy, logprobs_and_entropy, split_lm_head
from tests.tiny import tiny_config, tiny_llama

TEMPERATURE = 0.7
TOL = 1e-5
SMALL = {k: v for k, v in tiny_config().to_dict().items() if k in ("hidden_size", "intermediate_size", "vocab_size")}
SMALL |= {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8}


def _scored(chunk_rows: int | None, entropy_grad: bool):
    """Log-probs and entropies of a (3, 5) batch through a 64-word head, and the gradients of a loss on both."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 64, bias=True)
    hidden = torch.randn(3, 5, 16, requires_grad=True)
    ids = torch.randint(0, 64, (3, 5))
    if chunk_rows is None:
        logp, entropy = logprobs_and_entropy(
            head(hidden), ids, TEMPERATURE, with_entropy=True, entropy_grad=entropy_grad
        )
    else:
        logp, entropy = head_logprobs_and_entropy(
            head,
            hidden,
            ids,
            TEMPERATURE,
            with_entropy=True,
            entropy_grad=entropy_grad,
            chunk_rows=chunk_rows,
        )
    loss = (logp * torch.linspace(-1, 1, 15).reshape(3, 5)).sum() + (0.1 * entropy.sum() if entropy_grad else 0)
    loss.backward()
    return logp.detach(), entropy.detach(), hidden.grad, head.weight.grad, head.bias.grad


@pytest.mark.parametrize("entropy_grad", [False, True], ids=["logged-entropy", "entropy-bonus"])
@pytest.mark.parametrize("chunk_rows", [1, 4, 15, 64])  # 4 does not divide the 15 positions
def test_chunked_head_gives_the_full_logits_values_and_gradients(chunk_rows, entropy_grad):
    full = _scored(None, entropy_grad)
    chunked = _scored(chunk_rows, entropy_grad)
    for name, got, expected in zip(("logp", "entropy", "d hidden", "d weight", "d bias"), chunked, full, strict=True):
        torch.testing.assert_close(got, expected, atol=TOL, rtol=TOL, msg=name)


def test_autograd_keeps_no_logits_and_the_head_runs_as_its_own_module():
    """Hooks on the head (ZeRO-3 gathers its weight in them) fire once; nothing of the logits' size is kept."""
    head = torch.nn.Linear(16, 64)
    calls = []
    head.register_forward_pre_hook(lambda *args: calls.append(1))
    hidden = torch.randn(3, 5, 16, requires_grad=True)
    kept: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        logp, entropy = head_logprobs_and_entropy(
            head, hidden, torch.randint(0, 64, (3, 5)), 1.0, with_entropy=True, entropy_grad=True, chunk_rows=4
        )
    assert calls == [1]
    params = {p.data_ptr() for p in head.parameters()}
    assert max(t.numel() for t in kept if t.data_ptr() not in params) < 15 * 64  # the logits are 15 x 64
    (logp.sum() + entropy.sum()).backward()
    assert head(hidden).shape == (3, 5, 64)  # the head's own forward is back


def _qwen2() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**SMALL, tie_word_embeddings=True))


def _gemma2() -> Gemma2ForCausalLM:
    torch.manual_seed(0)
    return Gemma2ForCausalLM(Gemma2Config(**SMALL, final_logit_softcapping=1.0, query_pre_attn_scalar=8))


def test_llama_and_qwen_split_into_decoder_and_head_and_soft_capped_models_do_not():
    llama, qwen = tiny_llama(0), _qwen2()
    assert split_lm_head(llama) == (llama.model, llama.lm_head)
    assert split_lm_head(qwen) == (qwen.model, qwen.lm_head)
    assert split_lm_head(_gemma2()) is None  # its logits are tanh-capped: head(hidden) would score the wrong thing
    assert split_lm_head(torch.nn.Linear(2, 2)) is None


def _rows():
    """2 prompts x 2 completions: prompts left-padded to 6, completions right-padded to 4."""
    torch.manual_seed(1)
    ids = torch.randint(3, 64, (4, 10))
    attn = torch.ones_like(ids)
    attn[2:, :2] = 0  # the second prompt is 4 tokens
    ids[2:, :2] = 0
    ids[3] = ids[2]
    ids[1, :6] = ids[0, :6]
    attn[1, 8:] = attn[3, 9:] = 0
    return ids, attn, ids[:, 6:], attn[:, 6:]


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
@pytest.mark.parametrize("make", [_qwen2, _gemma2], ids=["qwen2-split", "gemma2-full-logits"])
def test_completion_log_probs_equal_the_models_own_logits(make, shared):
    model = make().float().eval()
    ids, attn, completion_ids, mask = _rows()
    logp, entropy = completion_logprobs_and_entropy(
        model, ids, attn, completion_ids, TEMPERATURE, shared_prompt=shared, fused_head=True, with_entropy=True
    )
    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=completion_ids.shape[1] + 1).logits[:, :-1]
    torch.testing.assert_close(
        logp * mask, completion_logprobs(logits, completion_ids, TEMPERATURE) * mask, atol=TOL, rtol=0
    )
    assert entropy.shape == logp.shape
