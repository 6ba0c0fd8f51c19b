"""Tiny random Llamas for fast CPU tests: one config builder, a character-level model saved as a Hugging Face
directory (end-to-end runs), and an in-memory word-level model with an optional EOS-biased head (rollouts)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<eos>"]
VOCAB = 64  # the word-level model: <pad>, <eos>, <bos>, w3 ... w63
PAD, EOS, BOS = 0, 1, 2


def tiny_config(**overrides) -> LlamaConfig:
    """A 2-layer Llama config small enough that a forward pass takes milliseconds."""
    settings = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
    }
    return LlamaConfig(**(settings | overrides))


CHARS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:;?!()<>/\n'-")


def make_tiny_model_dir(path: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a random 2-layer Llama with a character vocabulary (~80 tokens) and its tokenizer to `path`."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = tiny_config(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        max_position_embeddings=4096,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<eos>"],
        bos_token_id=vocab["<eos>"],
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def tiny_tokenizer(with_pad: bool = True) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over ``w3`` ... ``w63`` (whitespace-separated)."""
    vocab = {"<pad>": PAD, "<eos>": EOS, "<bos>": BOS, **{f"w{i}": i for i in range(3, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    pad = {"pad_token": "<pad>"} if with_pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", bos_token="<bos>", **pad)


def tiny_llama(seed: int = 0, eos_logit: float | None = None) -> LlamaForCausalLM:
    """Random tiny Llama. With ``eos_logit`` the head ignores its input: EOS gets that logit, pad -inf, others 0."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD))
    if eos_logit is not None:
        bias = torch.zeros(VOCAB)
        bias[EOS], bias[PAD] = eos_logit, float("-inf")
        with torch.no_grad():
            model.lm_head.weight.zero_()
        model.lm_head.bias = torch.nn.Parameter(bias)
    return model
