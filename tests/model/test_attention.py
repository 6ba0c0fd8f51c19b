"""`medzero_sdpa`: grouped-query attention without per-head copies of K/V on CPU. It gives Hugging Face's `sdpa`
outputs and gradients, keeps less for backward, and is what `model.attn_implementation=auto` selects on CPU."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F

import medzero_pl.model.attention as attention
from medzero_pl.config import ConfigError, compose
from medzero_pl.errors import UserError
from medzero_pl.model.attention import ATTENTION, resolve_attn_implementation
from medzero_pl.model.forward import completion_logprobs_and_entropy
from medzero_pl.model.loading import load_causal_lm
from tests.tiny import tiny_llama

TOL = 1e-5


def _pair(kv_heads: int = 2) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same random Llama (4 query heads) twice: Hugging Face's `sdpa`, and `medzero_sdpa`."""
    model = tiny_llama(0).float()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    if kv_heads != model.config.num_key_value_heads:
        model = type(model)(model.config.__class__(**(model.config.to_dict() | {"num_key_value_heads": kv_heads})))
    other = type(model)(copy.deepcopy(model.config))  # its own config: the attention implementation lives there
    other.load_state_dict(model.state_dict())
    model.set_attn_implementation("sdpa")
    other.set_attn_implementation(ATTENTION)
    assert model.config._attn_implementation == "sdpa"
    return model, other


def _padded_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Four rows of two prompts, left-padded, with completions of different lengths right-padded."""
    ids = torch.randint(3, 64, (4, 12), generator=torch.Generator().manual_seed(0))
    attn = torch.ones_like(ids)
    attn[2:, :3] = 0  # the second prompt is 3 tokens shorter
    ids[2:] = ids[2]
    ids[:2, :7] = ids[0, :7]
    attn[1, 10:] = attn[3, 9:] = 0
    return ids, attn


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared-prompt"])
def test_log_probs_and_gradients_equal_huggingface_sdpa(shared):
    ids, attn = _padded_rows()
    results = []
    for model in _pair():
        logp, _ = completion_logprobs_and_entropy(model, ids, attn, ids[:, 7:], 0.7, shared_prompt=shared)
        (logp * attn[:, 7:]).sum().backward()
        results.append((logp.detach(), _grads(model)))
    (logp_a, grads_a), (logp_b, grads_b) = results
    torch.testing.assert_close(logp_b, logp_a, atol=TOL, rtol=0)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, atol=TOL, rtol=TOL, msg=name)


def test_keys_and_values_reach_the_kernel_once_per_kv_head(monkeypatch):
    """With a mask on CPU, K/V keep their 2 KV heads and the kernel broadcasts them to the 4 query heads."""
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(query, key, value, **kwargs):
        seen.append((query.shape[1], key.shape[1], kwargs.get("enable_gqa", False)))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    _, model = _pair()
    ids, attn = _padded_rows()
    model(input_ids=ids, attention_mask=attn)
    assert seen == [(4, 2, True)] * model.config.num_hidden_layers


def test_backward_keeps_less_than_with_repeated_keys_and_values():
    ids, attn = _padded_rows()
    saved = []
    models = _pair(kv_heads=2)  # 4 query heads, 2 KV heads: Hugging Face copies K/V to 4 heads
    for model in models:
        params = {p.data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(t, storages=storages, params=params):
            if t.data_ptr() not in params:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, attention_mask=attn).logits.sum()
        saved.append(sum(storages.values()))
    extra_heads = 2 * 4 * (4 - 2) * 12 * 8 * 4  # (K and V) x rows x copied heads x positions x head_dim x fp32 bytes
    assert saved[1] <= saved[0] - extra_heads * models[0].config.num_hidden_layers


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["no-grouping", "grouped"])
def test_without_a_mask_or_grouping_huggingface_sdpa_runs_unchanged(kv_heads, monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "sdpa_attention_forward", lambda *a, **k: calls.append(1) or (None, None))
    _, model = _pair(kv_heads)
    module = model.model.layers[0].self_attn
    q, kv = torch.randn(1, 4, 3, 8), torch.randn(1, kv_heads, 3, 8)
    mask = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    attention.grouped_sdpa_attention(module, q, kv, kv, None)
    attention.grouped_sdpa_attention(module, q, kv, kv, mask)
    assert len(calls) == (2 if kv_heads == 4 else 1)


def test_greedy_generation_is_unchanged():
    ids, attn = _padded_rows()
    outputs = [m.generate(ids[:, :7], attention_mask=attn[:, :7], max_new_tokens=6, do_sample=False) for m in _pair()]
    assert torch.equal(outputs[0], outputs[1])


def test_load_causal_lm_selects_it_and_saved_configs_do_not_name_it(tmp_path):
    tiny_llama(0).save_pretrained(tmp_path / "model")
    model = load_causal_lm(str(tmp_path / "model"))
    assert model.config._attn_implementation == ATTENTION
    model.save_pretrained(tmp_path / "saved")
    assert ATTENTION not in (tmp_path / "saved" / "config.json").read_text()
    assert "attn_implementation" not in json.loads((tmp_path / "saved" / "config.json").read_text())


def _machine(monkeypatch, cuda: bool, flash_attn: bool) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (object() if flash_attn else None) if name == "flash_attn" else real_find_spec(name, *a),
    )


@pytest.mark.parametrize(
    ("cuda", "flash_attn", "expected"),
    [(True, True, "flash_attention_2"), (True, False, "sdpa"), (False, False, ATTENTION), (False, True, ATTENTION)],
)
def test_auto_is_flash_attention_on_cuda_with_the_package_medzero_sdpa_without_cuda_else_sdpa(
    monkeypatch, cuda, flash_attn, expected
):
    _machine(monkeypatch, cuda, flash_attn)
    assert resolve_attn_implementation("auto") == expected
    for name in ("sdpa", "eager", ATTENTION):
        assert resolve_attn_implementation(name) == name


def test_flash_attention_without_the_package_and_unknown_names_are_refused_in_one_line(monkeypatch):
    _machine(monkeypatch, cuda=True, flash_attn=False)
    with pytest.raises(
        UserError, match="flash_attention_2 needs the flash_attn package.*model.attn_implementation=sdpa"
    ):
        resolve_attn_implementation("flash_attention_2")
    with pytest.raises(ConfigError, match="flash_attention_2 needs the flash_attn package"):
        compose(["model.attn_implementation=flash_attention_2"])
    with pytest.raises(ConfigError, match=r"model.attn_implementation='flash': expected one of auto \| sdpa \| eager"):
        compose(["model.attn_implementation=flash"])
    _machine(monkeypatch, cuda=True, flash_attn=True)
    assert resolve_attn_implementation("flash_attention_2") == "flash_attention_2"


def test_the_chosen_attention_reaches_policy_and_reference(toy, tmp_path):
    from medzero_pl.module import GRPOModule
    from tests.toy_task import toy_overrides

    cfg = compose(toy_overrides(toy, tmp_path, **{"model.attn_implementation": "eager", "grpo.beta": 0.04}))
    module = GRPOModule(cfg.model, cfg.grpo, cfg.optim, cfg.rewards, rollout=cfg.rollout)
    module.configure_model()
    assert module.policy.config._attn_implementation == module.reference.config._attn_implementation == "eager"
