"""The strategy registry and the strategy-agnostic helpers, in one process (fast)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy

from medzero_pl.errors import UserError
from medzero_pl.rundir import checkpoint_exists
from medzero_pl.strategies import (
    clip_and_step,
    full_named_parameters,
    keeps_master_weights,
    prepare_reference,
    resolve_strategy,
    trained_dtype,
    unsharded_init,
)
from medzero_pl.strategies.deepspeed import ZeRO3Strategy, _publish
from tests.strategies.launch import ROOT, free_port, rank_env
from tests.tiny import tiny_llama


def test_zero3_names_become_strategy_objects_and_other_names_pass_through(monkeypatch):
    pytest.importorskip("deepspeed")
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    for name in ("deepspeed_stage3", "deepspeed_stage_3"):
        strategy = resolve_strategy(name, accelerator="cpu", gradient_clipping=0.5)
        assert isinstance(strategy, ZeRO3Strategy)
        assert strategy.config["zero_optimization"]["stage"] == 3
        assert strategy.gradient_clipping == 0.5
        assert "offload_optimizer" not in strategy.config["zero_optimization"]
    offload = resolve_strategy("deepspeed_stage3_offload", accelerator="cpu")
    assert offload.config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert offload.config["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert os.environ["DS_ACCELERATOR"] == "cpu"
    assert resolve_strategy("ddp") == "ddp" and resolve_strategy("auto") == "auto"


def test_checkpoint_exists_for_a_file_or_a_deepspeed_directory(tmp_path):
    assert not checkpoint_exists(tmp_path / "last.ckpt")
    (tmp_path / "file.ckpt").write_bytes(b"x")
    assert checkpoint_exists(tmp_path / "file.ckpt")
    (tmp_path / "dir.ckpt").mkdir()
    assert not checkpoint_exists(tmp_path / "dir.ckpt")  # an empty or half-written directory is no checkpoint
    (tmp_path / "dir.ckpt" / "latest").write_text("checkpoint")
    assert checkpoint_exists(tmp_path / "dir.ckpt")


def test_publishing_switches_the_link_keeps_one_previous_directory_and_removes_older_ones(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    link = ckpt / "last.ckpt"
    for step in (1, 2, 3):
        staged = ckpt / f"last.ckpt-step{step}.tmp"
        staged.mkdir()
        (staged / "latest").write_text(f"step {step}")
        _publish(staged, ckpt / f"last.ckpt-step{step}", link)
        assert (link / "latest").read_text() == f"step {step}"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "last.ckpt",
        "last.ckpt-step2",
        "last.ckpt-step3",
        "previous.ckpt",
    ]
    assert (ckpt / "previous.ckpt" / "latest").read_text() == "step 2"


def test_an_interrupted_save_leaves_the_previous_checkpoint_in_place(tmp_path):
    ckpt = tmp_path / "checkpoints"
    (ckpt / "last.ckpt-step1").mkdir(parents=True)
    (ckpt / "last.ckpt-step1" / "latest").write_text("step 1")
    (ckpt / "last.ckpt").symlink_to("last.ckpt-step1")
    (ckpt / "last.ckpt-step2.tmp").mkdir()  # a save killed before it was published
    assert checkpoint_exists(ckpt / "last.ckpt") and not checkpoint_exists(ckpt / "last.ckpt-step2.tmp")
    assert (ckpt / "last.ckpt" / "latest").read_text() == "step 1"


UNSHARDED_INIT = """
import deepspeed, deepspeed.ops, torch
from medzero_pl.strategies import is_partitioned, unsharded_init
deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # as ZeRO3Strategy does: no C++ op compiled
deepspeed.init_distributed(dist_backend="gloo")
with deepspeed.zero.Init(config_dict_or_path={"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}):
    before = torch.nn.Linear(4, 3)
    with unsharded_init():  # e.g. a vLLM engine built in configure_model
        whole = torch.nn.Linear(4, 3)
    after = torch.nn.Linear(4, 3)
print(is_partitioned(before), is_partitioned(whole), tuple(whole.weight.shape), is_partitioned(after))
"""


def test_modules_built_under_unsharded_init_keep_whole_parameters_inside_zero_init():
    pytest.importorskip("deepspeed")
    env = rank_env(0, 1, free_port())  # a world of one process (gloo), as a launcher would set it up
    out = subprocess.run([sys.executable, "-c", UNSHARDED_INIT], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "True False (3, 4) True"


def test_unsharded_init_does_nothing_outside_zero_init():
    with unsharded_init():
        assert tiny_llama().model.embed_tokens.weight.numel() > 0


def test_plain_modules_yield_their_own_parameters():
    model = tiny_llama()
    pairs = list(full_named_parameters(model))
    assert [n for n, _ in pairs] == [n for n, _ in model.named_parameters()]
    assert all(t is not None and not t.requires_grad for _, t in pairs)


def test_clip_and_step_returns_the_pre_clip_norm_and_clips():
    layer = torch.nn.Linear(4, 1, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer.weight.grad = torch.full((1, 4), 3.0)  # norm 6
    before = layer.weight.detach().clone()
    norm = clip_and_step(SingleDeviceStrategy("cpu"), layer, opt, max_norm=1.5)
    assert norm.item() == 6.0
    torch.testing.assert_close(before - layer.weight.detach(), torch.full((1, 4), 0.75))  # clipped to norm 1.5


def test_the_reference_is_frozen_and_on_the_strategy_device():
    reference = prepare_reference(SingleDeviceStrategy("cpu"), tiny_llama())
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())


def test_only_deepspeed_keeps_float32_master_weights_by_name_or_object():
    for name in ("deepspeed_stage3", "deepspeed_stage_3_offload", "deepspeed", "deepspeed_stage_2"):
        assert keeps_master_weights(name), name
    for name in ("auto", "ddp", "fsdp", "single_device"):
        assert not keeps_master_weights(name), name
    assert keeps_master_weights(ZeRO3Strategy())
    assert not keeps_master_weights(SingleDeviceStrategy(torch.device("cpu")))


@pytest.mark.parametrize(
    ("strategy", "precision", "dtype", "expected"),
    [
        ("ddp", "bf16-mixed", "bfloat16", "float32"),  # autocast computes in bf16; AdamW steps float32
        ("auto", "16-mixed", "float16", "float32"),
        ("auto", "bf16", "bfloat16", "float32"),  # Lightning's short name for bf16-mixed
        ("auto", "32-true", "float32", "float32"),
        ("deepspeed_stage3", "bf16-mixed", "bfloat16", "bfloat16"),  # DeepSpeed keeps the float32 masters
        ("deepspeed_stage3", "bf16-true", "bfloat16", "bfloat16"),
    ],
)
def test_the_trained_policy_loads_in_float32_unless_deepspeed_keeps_masters(strategy, precision, dtype, expected):
    assert trained_dtype(strategy, precision, dtype) == expected


@pytest.mark.parametrize(
    ("strategy", "precision", "dtype"),
    [("ddp", "bf16-true", "float32"), ("auto", "16-true", "float16"), ("auto", "32-true", "bfloat16")],
)
def test_half_precision_weights_without_a_master_copy_are_refused(strategy, precision, dtype):
    with pytest.raises(UserError, match="no float32 copy.*set trainer.precision=bf16-mixed"):
        trained_dtype(strategy, precision, dtype)
