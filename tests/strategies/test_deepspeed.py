"""`ZeRO3Strategy`'s gradient accumulation, with real DeepSpeed in a world of one process."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.strategies.launch import ROOT, free_port, rank_env

pytest.importorskip("deepspeed")


# Two micro-batches of one optimizer step, run as `GRPOModule._optimise` runs them: inside one engine `forward`
# (here none at all), calling `begin_micro_batch` before each and stepping the engine after the last.
# Gradients (1, 0) and (0, 2) on a bias-free Linear(2, 1), clipped to norm 1 by DeepSpeed.
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

print({"fp32": one_step("32-true", [[1.0, 0.0], [0.0, 2.0]], 1.0)})
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
