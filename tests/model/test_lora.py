"""LoRA adapters (`model.lora`): merged weights, the reference as "adapters off", the fused head, refusals, and
end-to-end runs on the toy task (learning, frozen base, adapter-only checkpoints, exact resume, export, eval)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from medzero_pl.checkpoints import policy_state
from medzero_pl.config import ConfigError, compose
from medzero_pl.errors import UserError
from medzero_pl.export import main as export_main
from medzero_pl.fit import build
from medzero_pl.model.forward import completion_logprobs_and_entropy
from medzero_pl.model.lora import (
    LoRAConfig,
    apply_lora,
    check_mergeable,
    check_trainable_state,
    lora_scalings,
    merged_named_parameters,
    reference_of,
    trainable_state,
)
from medzero_pl.rollout import HFRolloutEngine, SamplingParams
from tests.test_training import run
from tests.tiny import tiny_config, tiny_llama, tiny_tokenizer
from tests.toy_task import toy_overrides

ALL_LINEAR_AND_HEAD = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head]"


def lora_llama(seed: int = 0, **settings) -> torch.nn.Module:
    """A tiny Llama with r=4 adapters set to random values (peft starts them at B = 0, i.e. no change)."""
    model = apply_lora(tiny_llama(seed), LoRAConfig(**({"r": 4, "alpha": 8.0} | settings)))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two prompt+completion rows: ids `(2, 9)`, mask, completion ids `(2, 4)`."""
    ids = torch.tensor([[0, 0, 5, 6, 7, 8, 9, 10, 11], [3, 4, 5, 6, 7, 12, 13, 1, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 0]])
    return ids, mask, ids[:, 5:]


def logprobs(model: torch.nn.Module, fused: bool = True) -> torch.Tensor:
    ids, mask, completion = batch()
    return completion_logprobs_and_entropy(model, ids, mask, completion, 1.0, fused_head=fused)[0]


# ------------------------------------------------------------------------------------------------------ units
def test_merged_weights_equal_peft_merge_and_unload_under_the_base_models_names():
    model = lora_llama(modules_to_save=["lm_head"])
    merged = dict(merged_named_parameters(model.named_parameters(), lora_scalings(model)))
    reference = copy.deepcopy(model).merge_and_unload()
    expected = dict(reference.named_parameters())
    assert merged.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor.detach(), rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(merged["lm_head.weight"], model.base_model.model.lm_head.original_module.weight)


def test_weight_sync_sends_a_lora_policys_merged_weights_and_a_plain_policys_own():
    from types import SimpleNamespace

    from medzero_pl.callbacks.weight_sync import named_parameters_for_sync

    model = lora_llama()
    sent = dict(named_parameters_for_sync(None, SimpleNamespace(policy=model)))
    expected = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    assert sent.keys() == expected.keys()
    assert all(torch.allclose(sent[name], t.detach(), rtol=0, atol=1e-6) for name, t in expected.items())
    plain = tiny_llama(0)
    sent = dict(named_parameters_for_sync(None, SimpleNamespace(policy=plain)))
    assert sent.keys() == dict(plain.named_parameters()).keys()
    assert all(torch.equal(sent[name], p) for name, p in plain.named_parameters())


def test_the_reference_is_the_base_model_with_adapters_disabled_to_1e6():
    base = tiny_llama(0).eval()
    model = lora_llama(0).eval()
    with torch.no_grad(), reference_of(model, None) as reference:
        ref = logprobs(reference)
    with torch.no_grad():
        torch.testing.assert_close(ref, logprobs(base), rtol=0, atol=1e-6)
        assert (logprobs(model) - ref).abs().max() > 1e-2  # the adapters are on again, and they matter


def test_a_loaded_reference_is_used_as_is_and_no_reference_at_all_is_refused():
    base = tiny_llama(0)
    with reference_of(lora_llama(0), base) as reference:
        assert reference is base
    with pytest.raises(RuntimeError, match="reference"), reference_of(base, None):
        pass


def test_the_fused_head_scores_a_lora_policy_like_its_full_logits_with_the_same_adapter_gradients():
    model = lora_llama(0)
    grads = []
    for fused in (True, False):
        model.zero_grad()
        logp = logprobs(model, fused)
        logp.sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        if fused:
            fused_logp = logp.detach()
    torch.testing.assert_close(fused_logp, logp.detach(), rtol=0, atol=1e-5)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 2 * 7 * 2  # A and B, 7 projections, 2 layers
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_hf_engine_generates_with_the_adapters_on():
    model = lora_llama(0).eval()
    engine = HFRolloutEngine(model, tiny_tokenizer())
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    prompts = [[5, 6, 7], [9, 10]]
    with_adapters = engine.generate(prompts, 1, greedy).completion_ids
    with model.disable_adapter():
        without = engine.generate(prompts, 1, greedy).completion_ids
    expected = [
        model.generate(input_ids=torch.tensor([p]), max_new_tokens=6, do_sample=False)[0, len(p) :].tolist()
        for p in prompts
    ]
    assert with_adapters == [ids[: len(got)] for ids, got in zip(expected, with_adapters, strict=True)]
    assert with_adapters != without


def test_only_the_adapters_go_into_a_checkpoint_and_a_checkpoint_without_them_is_refused():
    model = lora_llama(0)
    state = {f"policy.{k}": v for k, v in model.state_dict().items()}
    kept = trainable_state(state, model, "policy.")
    assert kept and all(".lora_A." in k or ".lora_B." in k for k in kept)
    check_trainable_state(kept, model, "policy.")
    with pytest.raises(UserError, match="lacks trainable weights"):
        check_trainable_state({k: v for k, v in kept.items() if "layers.1" not in k}, model, "policy.")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.lora.r=-1", "model.lora.r=-1: expected 0 (no adapters) or a positive rank"),
        ("model.lora.dropout=1.0", "model.lora.dropout=1.0: expected a probability in [0, 1)"),
        ("model.lora.alpha=0", "model.lora.alpha=0.0: expected a positive scaling numerator"),
        ("model.lora.r=0", "model.lora.target_modules=['q_proj']: expected [] while model.lora.r is 0"),
    ],
)
def test_impossible_lora_settings_are_refused_in_one_line_naming_the_key(override, expected):
    overrides = [override] + (["model.lora.r=8"] if "lora.r" not in override else [])
    overrides += ["model.lora.target_modules=[q_proj]"] if override == "model.lora.r=0" else []
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        compose(overrides)


def test_target_modules_the_model_lacks_are_refused_naming_the_key():
    with pytest.raises(UserError, match=r"model.lora.target_modules=\['qkv'\]"):
        apply_lora(tiny_llama(0), LoRAConfig(r=4, target_modules=["qkv"]))


@pytest.mark.parametrize(
    ("tied", "settings", "refused"),
    [
        (True, {}, None),
        (False, {"target_modules": ["q_proj", "lm_head"]}, None),
        (True, {"target_modules": ["q_proj", "lm_head"]}, "ties it to the input embeddings"),
        (True, {"modules_to_save": ["lm_head"]}, "ties it to the input embeddings"),
        (False, {"target_modules": ["q_proj", "embed_tokens"]}, "model.embed_tokens is a Embedding layer"),
    ],
)
def test_adapters_a_vllm_engine_cannot_hold_merged_are_refused_naming_the_setting(tied, settings, refused):
    torch.manual_seed(0)
    model = apply_lora(LlamaForCausalLM(tiny_config(tie_word_embeddings=tied)), LoRAConfig(r=4, **settings))
    if refused is None:
        check_mergeable(model)
        return
    with pytest.raises(UserError, match=refused):
        check_mergeable(model)


# -------------------------------------------------------------------------------------- end-to-end, toy task
def lora_overrides(toy, run_dir, **fields) -> list[str]:
    """The toy run with r=8 adapters on every projection and on the head: the tiny random model answers through its
    (tied, frozen) head, so without adapters there it has little to learn with."""
    lora = {"model.lora.r": 8, "model.lora.alpha": 16, "model.lora.target_modules": ALL_LINEAR_AND_HEAD}
    return toy_overrides(toy, run_dir, **(lora | fields))


def test_lora_learns_the_toy_task_and_leaves_every_base_weight_bit_identical(toy, tmp_path):
    recorder, weights = run(lora_overrides(toy, tmp_path, **{"trainer.max_steps": 30}))
    first, last = recorder.rewards[:5], recorder.rewards[-10:]
    assert sum(last) / 10 > sum(first) / 5 + 0.15, recorder.rewards
    start = AutoModelForCausalLM.from_pretrained(toy["model"]).state_dict()
    adapters = {k for k in weights if ".lora_" in k}
    assert adapters and all(not torch.equal(weights[k], torch.zeros_like(weights[k])) for k in adapters if "_B." in k)
    for name, tensor in weights.items():
        if name not in adapters:
            hf_name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(tensor, start[hf_name]), name


def test_with_beta_the_reference_is_no_second_model_and_the_kl_is_logged(toy, tmp_path):
    cfg = compose(lora_overrides(toy, tmp_path, **{"trainer.max_steps": 2, "grpo.beta": 0.1}))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    assert module.reference is None
    assert trainer.callback_metrics["kl"].item() > 0  # the adapters moved the policy away from the base


def test_resume_is_exact_and_checkpoints_hold_the_adapters_and_optimizer_only(toy, tmp_path):
    common = {"trainer.max_steps": 4, "trainer.checkpoint_every_n_steps": 1}
    straight, straight_weights = run(lora_overrides(toy, tmp_path / "straight", **common))
    first, _ = run(lora_overrides(toy, tmp_path / "resumed", **common), stop_after=2)
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"] and all(".lora_" in k for k in ckpt["state_dict"])
    assert len(ckpt["optimizer_states"][0]["state"]) == len(ckpt["state_dict"])
    second, resumed_weights = run(lora_overrides(toy, tmp_path / "resumed", **common, resume="auto"))
    assert first.rewards + second.rewards == straight.rewards
    for name, tensor in straight_weights.items():
        assert torch.equal(tensor, resumed_weights[name]), name


def test_export_writes_merged_weights_by_default_and_the_adapter_alone_with_a_flag(toy, tmp_path):
    from medzero_pl.eval.__main__ import load_policy as eval_load_policy

    cfg = compose(lora_overrides(toy, tmp_path / "run", **{"trainer.max_steps": 3}))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    ckpt = str(trainer.checkpoint.path)
    assert all(".lora_" in k for k in policy_state(ckpt)[0])

    assert export_main([ckpt, str(tmp_path / "merged")]) == 0
    assert export_main([ckpt, str(tmp_path / "adapter"), "--adapter"]) == 0
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    assert not (tmp_path / "adapter" / "model.safetensors").exists()

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged", padding_side="left")
    ids = tokenizer(["Say C", "Say A then B"], return_tensors="pt", padding=True)
    greedy = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    trained = module.policy.eval().generate(**ids, **greedy)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert torch.equal(merged.generate(**ids, **greedy), trained)
    from_adapter, _, name = eval_load_policy(str(tmp_path / "adapter"), None, "float32")
    assert name == str(toy["model"])
    assert torch.equal(from_adapter.generate(**ids, **greedy), trained)
    with module.policy.disable_adapter():
        assert not torch.equal(module.policy.generate(**ids, **greedy), trained)  # the adapters matter here


def test_export_adapter_of_a_full_fine_tuning_run_is_one_error_line(toy, tmp_path, capsys):
    cfg = compose(toy_overrides(toy, tmp_path / "run", **{"trainer.max_steps": 1}))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    assert export_main([str(trainer.checkpoint.path), str(tmp_path / "out"), "--adapter"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: --adapter:")
