"""The planner's arithmetic on hand-checkable shapes (no torch, no config)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from medzero_pl.plan.memory import (
    GIB,
    RunShape,
    activation_bytes,
    cheapest_fix,
    estimate,
    judge,
    micro_batch_tokens,
    peak,
    shape_from_config,
)
from medzero_pl.plan.run import KNOWN_CONFIGS

SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 256,
}
QWEN7B = KNOWN_CONFIGS["Qwen/Qwen2.5-7B-Instruct"]  # the planner's own table, checked against the published size


def gpu_run(**changes) -> RunShape:
    base = RunShape(
        device="gpu",
        world_size=4,
        ranks_per_node=4,
        zero3=True,
        offload=False,
        trained_dtype="bfloat16",
        model_dtype="bfloat16",
        compute_bytes=2,
        master_weights=True,
        reference=True,
        gradient_checkpointing=True,
        shared_prompt=True,
        fused_head=True,
        micro_batch=1,
        generations=3,
        prompts_per_rank=2,
        prompt_tokens=1024,
        completion_tokens=8192,
        engine="vllm",
        vllm_fraction=0.5,
    )
    return replace(base, **changes)


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_matches_the_model_transformers_builds(tied):
    llama = LlamaForCausalLM(LlamaConfig(**SMALL, tie_word_embeddings=tied))
    qwen = Qwen2ForCausalLM(Qwen2Config(**SMALL, tie_word_embeddings=tied))
    for model, model_type in ((llama, "llama"), (qwen, "qwen2")):
        shape = shape_from_config({**SMALL, "tie_word_embeddings": tied, "model_type": model_type})
        assert shape.params == sum(p.numel() for p in model.parameters())


def test_qwen_7b_has_its_published_size():
    assert shape_from_config(QWEN7B).params == pytest.approx(7.62e9, rel=0.01)


def test_sharded_training_state_of_a_7b_on_4_ranks():
    terms = {t.name: t.bytes for t in estimate(shape_from_config(QWEN7B), gpu_run())}
    n = shape_from_config(QWEN7B).params
    assert terms["policy parameters"] == n * 2 // 4
    assert terms["gradients"] == n * 4 // 4  # float32 accumulation under bf16 (strategies/deepspeed.py)
    assert terms["optimizer state (AdamW)"] == n * 8 // 4
    assert terms["float32 master weights"] == n * 4 // 4
    assert terms["reference"] == n * 2 // 4


def test_lora_adapter_count_matches_peft_on_every_projection():
    from peft import LoraConfig, get_peft_model

    model = LlamaForCausalLM(LlamaConfig(**SMALL))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    adapted = get_peft_model(model, LoraConfig(r=8, target_modules=targets))
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    assert shape_from_config({**SMALL, "model_type": "llama"}).lora_params(8) == trainable


def test_lora_keeps_training_state_for_the_adapters_only_and_no_reference_copy():
    model = shape_from_config(QWEN7B)
    terms = {t.name: t.bytes for t in estimate(model, gpu_run(lora_rank=16))}
    adapters = model.lora_params(16)
    assert terms["policy parameters (frozen base)"] == model.params * 2 // 4
    assert terms["gradients"] == adapters * 4 // 4 and terms["optimizer state (AdamW)"] == adapters * 8 // 4
    assert "reference" not in terms and "float32 master weights" not in terms
    assert "DeepSpeed step sub-group" not in terms


def test_offload_moves_the_training_state_to_the_host():
    terms = estimate(shape_from_config(QWEN7B), gpu_run(offload=True))
    host = {t.name for t in terms if t.phase == "host"}
    assert {"policy parameters", "gradients", "optimizer state (AdamW)", "float32 master weights"} <= host


def test_shared_prompt_runs_each_prompt_once_and_checkpointing_falls_back():
    run = gpu_run(micro_batch=6, generations=3, prompt_tokens=100, completion_tokens=10, gradient_checkpointing=False)
    assert micro_batch_tokens(run) == (2 * 100 + 6 * 10, 6 * 100)
    assert micro_batch_tokens(replace(run, gradient_checkpointing=True)) == (6 * 110, 0)
    assert micro_batch_tokens(replace(run, shared_prompt=False)) == (6 * 110, 0)


def test_checkpointing_saves_activations_and_they_grow_linearly_in_completion_length():
    shape = shape_from_config(QWEN7B)
    run = gpu_run(gradient_checkpointing=False, prompt_tokens=0)
    assert activation_bytes(shape, run, True) < activation_bytes(shape, run, False) / 5
    short, long = (activation_bytes(shape, replace(run, completion_tokens=c), False) for c in (1024, 4096))
    assert long == pytest.approx(4 * short, rel=0.01)


def test_a_sleeping_engine_frees_the_gpu_while_the_trainer_runs():
    shape = shape_from_config(QWEN7B)
    awake = judge(shape, gpu_run(), 80 * GIB)
    asleep = judge(shape, gpu_run(sleep_mode=True), 80 * GIB)
    assert asleep.peak < awake.peak
    assert peak(asleep.terms) == asleep.peak


def test_medqa_usmle_as_the_seed_ran_it_does_not_fit_a_100_40_and_offload_is_the_fix():
    shape = shape_from_config(QWEN7B)
    verdict = judge(shape, gpu_run(), 40 * GIB)
    assert not verdict.fits and 60 * GIB < verdict.peak < 75 * GIB  # issue 28: ~70 GB per rank against 40
    assert cheapest_fix(shape, gpu_run(), 40 * GIB) == ("trainer.strategy=deepspeed_stage3_offload",)


def test_the_cheapest_fix_prefers_a_smaller_micro_batch():
    shape = shape_from_config(QWEN7B)
    run = gpu_run(
        micro_batch=16, generations=16, prompts_per_rank=1, completion_tokens=1024, gradient_checkpointing=False
    )
    fix = cheapest_fix(shape, run, 80 * GIB)
    assert fix is not None and fix[0].startswith("grpo.micro_batch_size=")


def test_nothing_fits_a_tiny_device():
    assert cheapest_fix(shape_from_config(QWEN7B), gpu_run(), 4 * GIB) is None


def test_the_arithmetic_is_pure_standard_library():
    import ast
    from pathlib import Path

    import medzero_pl.plan.memory as memory

    tree = ast.parse(Path(memory.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "math", "dataclasses", "itertools", "collections.abc"}
