"""`python -m medzero_pl.export` of a single-process checkpoint (the ZeRO-3 directory case is in tests/strategies)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medzero_pl.checkpoints import policy_state
from medzero_pl.config import compose
from medzero_pl.export import main
from medzero_pl.fit import build
from tests.toy_task import toy_overrides


def test_an_exported_checkpoint_loads_and_generates_like_the_trained_policy(toy, tmp_path):
    cfg = compose(toy_overrides(toy, tmp_path / "run", **{"trainer.max_steps": 2}))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)

    assert main([str(trainer.checkpoint.path), str(tmp_path / "hf")]) == 0
    files = {p.name for p in (tmp_path / "hf").iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= files
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf", padding_side="left")
    ids = tokenizer(["Say C", "Say A then B"], return_tensors="pt", padding=True)
    greedy = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    policy = module.policy.eval()
    assert torch.equal(exported.generate(**ids, **greedy), policy.generate(**ids, **greedy))
    start = AutoModelForCausalLM.from_pretrained(toy["model"])
    assert not torch.equal(exported.model.embed_tokens.weight, start.model.embed_tokens.weight)  # it trained


def test_a_checkpoint_of_something_else_is_refused(tmp_path):
    torch.save({"state_dict": {"layer.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a medzero_pl checkpoint"):
        policy_state(tmp_path / "other.ckpt")
    with pytest.raises(FileNotFoundError):
        policy_state(tmp_path / "missing.ckpt")
