"""The vLLM engine on CPU (real vLLM, in-process): weights pushed as named tensors land exactly, and it samples
what the policy would.

vLLM is a dependency of `make setup`; outside CI a missing vLLM skips these tests, in CI (`CI=true`) it fails them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

if not os.environ.get("CI"):
    pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")

from transformers import AutoModelForCausalLM, AutoTokenizer

from medzero_pl.grpo import completion_logprobs
from medzero_pl.rollout import HFRolloutEngine, SamplingParams, build_engine
from medzero_pl.rollout.config import RolloutConfig
from tests.tiny import make_tiny_model_dir

pytestmark = pytest.mark.slow  # each module starts a vLLM engine (12-30 s on 2 cores)
PROMPTS = [[5, 30, 31], [40], [12, 13, 14, 15, 16], [70, 2]]
GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)
VLLM = RolloutConfig(engine="vllm", max_model_len=256, kv_cache_gib=0.05)


def vllm_model_dir(path: Path) -> Path:
    """The tiny character-level Llama with head_dim 32 (vLLM's CPU attention supports 32, 64, ... only)."""
    return make_tiny_model_dir(path, hidden=128)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = vllm_model_dir(tmp_path_factory.mktemp("vllm") / "model")
    policy = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    engine = build_engine(VLLM, policy, tokenizer, str(path), seed=0)
    policy.initial = {name: p.detach().clone() for name, p in policy.named_parameters()}
    return engine, policy, tokenizer


def perturb(policy: torch.nn.Module, seed: int) -> None:
    """What an optimizer step does to the weights, only larger: greedy outputs change."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))


def in_engine_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF Llama weights in vLLM's names: q/k/v stacked into qkv_proj, gate/up into gate_up_proj."""
    out = {}
    for name, tensor in hf.items():
        if ".q_proj." in name:
            stacked = [hf[name.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            out[name.replace("q_proj", "qkv_proj")] = torch.cat(stacked)
        elif ".gate_proj." in name:
            out[name.replace("gate_proj", "gate_up_proj")] = torch.cat(
                [tensor, hf[name.replace("gate_proj", "up_proj")]]
            )
        elif not any(part in name for part in (".k_proj.", ".v_proj.", ".up_proj.")):
            out[name] = tensor
    return out


def test_greedy_rollouts_after_a_sync_equal_the_policys_own_generate(setup):
    engine, policy, tokenizer = setup
    hf = HFRolloutEngine(policy, tokenizer)
    assert engine.generate(PROMPTS, 1, GREEDY).completion_ids == hf.generate(PROMPTS, 1, GREEDY).completion_ids

    perturb(policy, seed=1)
    changed = hf.generate(PROMPTS, 1, GREEDY)
    assert engine.generate(PROMPTS, 1, GREEDY).completion_ids != changed.completion_ids  # the engine has old weights

    engine.update_weights(policy.named_parameters())
    synced = engine.generate(PROMPTS, 2, GREEDY)
    assert synced.completion_ids == [ids for ids in changed.completion_ids for _ in range(2)]
    assert synced.finish_reasons == [r for r in changed.finish_reasons for _ in range(2)]


def test_every_engine_weight_equals_the_policys_after_a_sync(setup, caplog):
    engine, policy, _ = setup
    perturb(policy, seed=2)
    reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    reload_log.addHandler(caplog.handler)  # vLLM's loggers do not propagate to the root logger
    try:
        engine.update_weights((f"module.{name}", p) for name, p in policy.named_parameters())  # wrapper prefixes go
    finally:
        reload_log.removeHandler(caplog.handler)
    assert not [r.getMessage() for r in caplog.records if "Failed to load weights" in r.getMessage()]
    expected = in_engine_layout({name: p.detach().cpu() for name, p in policy.named_parameters()})
    actual = engine.named_weights()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        got = actual[name][: tensor.shape[0]]  # vLLM pads the vocabulary rows of the embedding
        assert torch.equal(got, tensor), name


def test_sampler_logprobs_are_the_policys_at_the_sampling_temperature(setup):
    engine, policy, _ = setup
    perturb(policy, seed=3)
    engine.update_weights(policy.named_parameters())
    sampling = SamplingParams(max_new_tokens=10, temperature=0.7, seed=11)
    out = engine.generate(PROMPTS[:2], 3, sampling)
    assert out.logprobs is not None
    assert [len(lp) for lp in out.logprobs] == [len(ids) for ids in out.completion_ids]
    for i, (ids, sampler) in enumerate(zip(out.completion_ids, out.logprobs, strict=True)):
        prompt = PROMPTS[i // 3]
        with torch.no_grad():
            logits = policy(torch.tensor([prompt + ids])).logits[:, len(prompt) - 1 : -1]
        trainer = completion_logprobs(logits, torch.tensor([ids]), sampling.temperature)[0]
        assert torch.allclose(trainer, torch.tensor(sampler), atol=1e-4), (trainer, sampler)


def test_a_seed_replays_the_same_samples_and_another_seed_does_not(setup):
    engine, policy, _ = setup
    engine.update_weights(policy.initial.items())  # the random init: nearly flat, so samples differ
    sampling = SamplingParams(max_new_tokens=10, temperature=1.0, seed=5)
    first = engine.generate(PROMPTS, 4, sampling)
    assert engine.generate(PROMPTS, 4, sampling).completion_ids == first.completion_ids
    assert engine.generate(PROMPTS, 4, replace(sampling, seed=6)).completion_ids != first.completion_ids
    assert len(set(map(tuple, first.completion_ids[:4]))) > 1  # the n samples of a prompt differ
    for ids, reason in zip(first.completion_ids, first.finish_reasons, strict=True):
        assert (reason == "stop") == (ids[-1] in engine.eos_ids)


def test_rows_of_a_prompt_longer_than_a_kv_block_decode_as_the_policy_does(setup):
    """On CPU a KV block holds 32 tokens (vLLM's CPU default is 128), so the rows of a 100-token prompt share its three
    full blocks and each prefills only the last 4 tokens itself; what they decode must not change."""
    engine, policy, tokenizer = setup
    assert engine.llm.llm_engine.vllm_config.cache_config.block_size == 32
    engine.update_weights(policy.named_parameters())
    prompts = [[10 + (7 * j) % 60 for j in range(100)], [20 + (3 * j) % 50 for j in range(70)]]
    expected = HFRolloutEngine(policy, tokenizer).generate(prompts, 1, GREEDY)
    shared = engine.generate(prompts, 4, GREEDY)
    assert shared.completion_ids == [ids for ids in expected.completion_ids for _ in range(4)]


def test_the_process_still_sets_its_own_torch_threads_after_the_engine_started(setup):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert torch.get_num_threads() == threads + 1
    finally:
        torch.set_num_threads(threads)


def test_seeded_sampling_of_a_batch_larger_than_one_prefill_step(setup):
    """More prompt tokens than vLLM's default step budget (4,096): vLLM used to prefill a prompt in chunks and then
    rewind its seeded generator, which a CPU generator cannot do ("CPU Generator does not use offset")."""
    engine, _, _ = setup
    long_prompts = [[10 + (i + j) % 60 for j in range(150)] for i in range(40)]  # 6,000 prompt tokens
    out = engine.generate(long_prompts, 2, SamplingParams(max_new_tokens=3, temperature=1.0, seed=1))
    assert len(out.completion_ids) == 80 and all(1 <= len(ids) <= 3 for ids in out.completion_ids)
