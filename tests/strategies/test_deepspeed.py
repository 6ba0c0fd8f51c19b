"""`ZeRO3Strategy`'s DeepSpeed config and its gradient accumulation, with real DeepSpeed in a world of one process."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.strategies.launch import ROOT, free_port, rank_env

pytest.importorskip("deepspeed")


def formatted_config(precision: str, **kwargs) -> dict:
    """The DeepSpeed config `ZeRO3Strategy` hands to `deepspeed.initialize` under a Lightning `precision`."""
    from lightning.pytorch.plugins.precision import DeepSpeedPrecision

    from medzero_pl.strategies.deepspeed import ZeRO3Strategy

    strategy = ZeRO3Strategy(**kwargs)
    strategy.precision_plugin = DeepSpeedPrecision(precision)
    strategy._format_config()
    return strategy.config


def test_bf16_accumulates_gradients_in_fp32_unless_the_config_says_otherwise():
    assert formatted_config("bf16-mixed")["data_types"] == {"grad_accum_dtype": "fp32"}
    assert "data_types" not in formatted_config("32-true")
    own = {"zero_optimization": {"stage": 3}, "data_types": {"grad_accum_dtype": "bf16"}}
    assert formatted_config("bf16-mixed", config=own)["data_types"] == {"grad_accum_dtype": "bf16"}


def test_the_optimizer_steps_in_sub_groups_of_deepspeeds_default_size_unless_given_one():
    assert formatted_config("bf16-mixed")["zero_optimization"]["sub_group_size"] == 1_000_000_000
    assert formatted_config("bf16-mixed", sub_group_size=10**7)["zero_optimization"]["sub_group_size"] == 10**7


def test_a_checkpoint_converted_to_universal_is_loaded_as_one(tmp_path):
    from medzero_pl.strategies.deepspeed import ZeRO3Strategy

    strategy = ZeRO3Strategy()
    strategy.resume_from(tmp_path)
    assert "checkpoint" not in strategy.config
    (tmp_path / "latest_universal").write_text("checkpoint_universal")
    strategy.resume_from(tmp_path)
    assert strategy.config["checkpoint"] == {"load_universal": True}


# Two micro-batches of one optimizer step, run as `GRPOModule._optimise` runs them: inside one engine `forward`
# (here none at all), calling `begin_micro_batch` before each and stepping the engine after the last.
# fp32: gradients (1, 0) and (0, 2) on a bias-free Linear(2, 1), clipped to norm 1 by DeepSpeed.
# bf16: gradients 256 and 1 on the same weight; in a bf16 buffer 256 + 1 rounds back to 256.
ACCUMULATION = """
import deepspeed, deepspeed.ops, torch
from lightning.pytorch.plugins.precision import DeepSpeedPrecision
from medzero_pl.strategies import begin_micro_batch
from medzero_pl.strategies.deepspeed import ZeRO3Strategy

deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # as ZeRO3Strategy does: no C++ op compiled
deepspeed.init_distributed(dist_backend="gloo")

def one_step(precision, micro_batches, clip):
    strategy = ZeRO3Strategy(gradient_clipping=clip)
    strategy.precision_plugin = DeepSpeedPrecision(precision)
    strategy._format_config()
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
    model = torch.nn.Linear(2, 1, bias=False).to(dtype)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    strategy.model, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=strategy.config)
    for i, x in enumerate(micro_batches):
        begin_micro_batch(strategy, last=i == len(micro_batches) - 1)
        strategy.deepspeed_engine.backward(model(torch.tensor([x], dtype=dtype)).float().sum())
    strategy.deepspeed_engine.step()
    with deepspeed.zero.GatheredParameters([model.weight]):
        update = (-model.weight.float()).flatten().tolist()
    return {"norm": strategy.global_grad_norm().item(), "update": update}

fp32 = one_step("32-true", [[1.0, 0.0], [0.0, 2.0]], clip=1.0)
bf16 = one_step("bf16-mixed", [[256.0, 0.0], [1.0, 0.0]], clip=0.0)
print({"fp32": fp32, "bf16": bf16})
"""


@pytest.fixture(scope="module")
def accumulated() -> dict:
    env = rank_env(0, 1, free_port())  # a world of one process (gloo), as a launcher would set it up
    out = subprocess.run([sys.executable, "-c", ACCUMULATION], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return eval(out.stdout.strip().splitlines()[-1])


def test_a_zero3_step_sums_the_gradients_of_all_its_micro_batches_before_clipping(accumulated):
    fp32 = accumulated["fp32"]
    assert fp32["norm"] == pytest.approx(math.sqrt(5))  # |(1, 2)|, not |(0, 2)| = 2 of the last micro-batch alone
    assert fp32["update"] == pytest.approx([1 / math.sqrt(5), 2 / math.sqrt(5)])  # clipped by the summed norm


def test_bf16_micro_batches_add_up_in_fp32(accumulated):
    assert accumulated["bf16"]["norm"] == 257.0
