"""GRPO with the vLLM engine on CPU: the engine gets the policy's weights after every optimizer step.

vLLM is a dependency of `make setup`; outside CI a missing vLLM skips these tests, in CI (`CI=true`) it fails them.
"""

from __future__ import annotations

import os

import pytest
import torch
from lightning.pytorch import Callback

if not os.environ.get("CI"):
    pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")

from medzero_pl.callbacks.weight_sync import WeightSync
from medzero_pl.config import compose
from medzero_pl.fit import build
from tests.rollout.test_vllm import in_engine_layout, vllm_model_dir
from tests.toy_task import toy_overrides

pytestmark = pytest.mark.slow  # each module starts a vLLM engine (12-30 s on 2 cores)
STEPS = 3


class Record(Callback):
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
        self.steps.append(metrics | {"completions": list(outputs["completions"])})


def test_grpo_with_vllm_syncs_once_per_optimizer_step_and_samples_from_the_current_policy(toy, tmp_path):
    model = vllm_model_dir(tmp_path / "model")
    overrides = toy_overrides(
        {"model": model, "data": toy["data"]},
        tmp_path / "run",
        **{
            "trainer.max_steps": STEPS,
            "trainer.checkpoint_every_n_steps": 1,  # a save between every sync and the next rollout
            "rollout.engine": "vllm",
            "rollout.max_model_len": 1024,
            "rollout.kv_cache_gib": 0.05,
            "grpo.max_completion_length": 16,
        },
    )
    trainer, module, datamodule = build(compose(overrides))
    sync = next(c for c in trainer.callbacks if isinstance(c, WeightSync))
    synced_at: list[int] = []
    source = sync.source
    sync.source = lambda t, m: synced_at.append(t.global_step) or source(t, m)
    record = Record()
    trainer.callbacks.append(record)

    trainer.fit(module, datamodule=datamodule)

    assert synced_at == list(range(STEPS))  # at the start (weights of a resume or of disk), then after each step
    assert sync.skipped == 0
    for step in record.steps:
        assert 0 <= step["reward"] <= 1
        assert step["weight_sync/bytes"] == sum(p.numel() * 4 for p in module.policy.parameters())
        # The sampler scored its tokens with the weights the trainer had before the step: same model, other kernels.
        assert step["sampling/logp_diff/max"] < 1e-3, step
        assert step["sampling/frac_past_cap"] == 0
    assert record.steps[0]["completions"] != record.steps[1]["completions"] != record.steps[2]["completions"]

    # The policy moved in the last step (lr 1e-2), and the next rollout is preceded by a sync that makes them equal.
    engine_weights = module.engine.named_weights()
    policy = in_engine_layout({n: p.detach().cpu() for n, p in module.policy.named_parameters()})
    assert any(not torch.equal(engine_weights[n][: t.shape[0]], t) for n, t in policy.items())
    sync.sync(trainer, module)
    engine_weights = module.engine.named_weights()
    assert all(torch.equal(engine_weights[n][: t.shape[0]], t) for n, t in policy.items())
