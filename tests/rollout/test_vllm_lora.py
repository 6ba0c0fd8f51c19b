"""A LoRA policy's merged weights in the vLLM engine (real vLLM on CPU): it then generates what the policy does with
its adapters on, and holds exactly the merged weights.

vLLM is a dependency of `make setup`; outside CI a missing vLLM skips these tests, in CI (`CI=true`) it fails them.
"""

from __future__ import annotations

import os

import pytest
import torch

if not os.environ.get("CI"):
    pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")

from transformers import AutoModelForCausalLM, AutoTokenizer

from medzero_pl.model.lora import LoRAConfig, apply_lora, lora_scalings, merged_named_parameters, sync_parameters
from medzero_pl.rollout import HFRolloutEngine, build_engine
from tests.rollout.test_vllm import GREEDY, PROMPTS, VLLM, in_engine_layout, vllm_model_dir

pytestmark = pytest.mark.slow  # starts a vLLM engine (12-30 s on 2 cores)


def test_after_a_merged_sync_the_engine_generates_like_the_policy_with_adapters_and_holds_the_merged_weights(
    tmp_path,
):
    path = vllm_model_dir(tmp_path / "model")
    policy = apply_lora(AutoModelForCausalLM.from_pretrained(path), LoRAConfig(r=8, alpha=16.0)).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = build_engine(VLLM, policy, tokenizer, str(path), seed=0)
    torch.manual_seed(1)
    with torch.no_grad():  # what training does to the adapters, only larger: greedy outputs change
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    hf = HFRolloutEngine(policy, tokenizer)
    adapted = hf.generate(PROMPTS, 1, GREEDY)
    assert engine.generate(PROMPTS, 1, GREEDY).completion_ids != adapted.completion_ids  # still the base weights

    engine.update_weights(sync_parameters(policy, policy.named_parameters()))
    assert engine.generate(PROMPTS, 1, GREEDY).completion_ids == adapted.completion_ids

    merged = dict(merged_named_parameters(policy.named_parameters(), lora_scalings(policy)))
    expected = in_engine_layout({name: t.detach() for name, t in merged.items()})
    actual = engine.named_weights()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name][: tensor.shape[0]], tensor), name
