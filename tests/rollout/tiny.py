"""A 2-layer random Llama and a word-level tokenizer (``w3`` ... ``w63``) for fast CPU tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

VOCAB = 64
PAD, EOS, BOS = 0, 1, 2


def tiny_tokenizer(with_pad: bool = True) -> PreTrainedTokenizerFast:
    vocab = {"<pad>": PAD, "<eos>": EOS, "<bos>": BOS, **{f"w{i}": i for i in range(3, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    pad = {"pad_token": "<pad>"} if with_pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", bos_token="<bos>", **pad)


def tiny_llama(seed: int = 0, eos_logit: float | None = None) -> LlamaForCausalLM:
    """Random tiny Llama. With ``eos_logit`` the head ignores its input: EOS gets that logit, pad -inf, others 0."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    model = LlamaForCausalLM(config)
    if eos_logit is not None:
        bias = torch.zeros(VOCAB)
        bias[EOS], bias[PAD] = eos_logit, float("-inf")
        with torch.no_grad():
            model.lm_head.weight.zero_()
        model.lm_head.bias = torch.nn.Parameter(bias)
    return model
