"""WeightSync: the one caller of `engine.update_weights`, once per weight change, whoever asks for fresh weights.

The fast tests run the whole loop with a recording fake `vllm` (`tests/rollout/fake_vllm.py`) under the real
`VLLMEngine`. The slow one trains with vLLM on CPU: the engine gets the policy's weights after every optimizer step.
vLLM is a dependency of `make setup`; outside CI a missing vLLM skips that test, in CI (`CI=true`) it fails it.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback

from medzero_pl.callbacks.weight_sync import WeightSync, run_weight_sync
from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.module import GRPOModule
from tests.rollout import fake_vllm
from tests.toy_task import toy_overrides

STEPS = 3
# After the engine's own torch.cuda.empty_cache (tests/rollout/test_vllm_colocation.py checks that one).
SYNC = ["wake_up(['weights'])", "load_weights", "reset_prefix_cache"]
ROLLOUT = ["wake_up(['kv_cache'])", "generate"]


def fit_with_fake_vllm(toy, run_dir, shared_data, monkeypatch, **fields) -> list[str]:
    """Train the toy task with the fake engine, evaluating one MedQA batch before training and after every step;
    the calls the engine received, with `configure_optimizers` marking when the optimizer was set up (and without
    `torch.cuda.empty_cache`, which Lightning calls too)."""
    vllm = fake_vllm.install(monkeypatch)
    setup_optimizers = GRPOModule.configure_optimizers
    monkeypatch.setattr(
        GRPOModule, "configure_optimizers", lambda m: vllm.events.append("configure_optimizers") or setup_optimizers(m)
    )
    settings = {
        "rollout.engine": "vllm",
        "trainer.checkpoint_every_n_steps": 1,
        "eval.benchmarks": "[medqa]",
        "eval.data_root": shared_data,
        "eval.limit": 2,  # one generate call per evaluation
        "eval.max_new_tokens": 4,
        "eval.max_prompt_length": 128,
        "eval.prompt": "r1_zero_base",
        "eval.every_n_steps": 1,
    }
    cfg = compose(toy_overrides(toy, run_dir, **settings | fields))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume)
    return [e for e in vllm.events if e != "empty_cache"]


def test_callbacks_that_generate_find_the_runs_weight_sync_or_fail_without_one():
    sync = WeightSync()
    assert run_weight_sync(SimpleNamespace(callbacks=[Callback(), sync])) is sync
    with pytest.raises(RuntimeError, match="needs the WeightSync callback"):
        run_weight_sync(SimpleNamespace(callbacks=[Callback()]))


def test_evaluation_after_a_step_shares_its_sync_with_the_next_rollout(toy, tmp_path, shared_data, monkeypatch):
    events = fit_with_fake_vllm(toy, tmp_path, shared_data, monkeypatch, **{"trainer.max_steps": 2})
    calls = [e for e in events if e in ("load_weights", "generate")]
    # evaluation at step 0 | rollout of step 1 | evaluation at step 1 | rollout of step 2 | evaluation at step 2
    assert calls == ["load_weights", "generate", "generate", "load_weights", "generate", "generate", "load_weights",
                     "generate"]  # fmt: skip


def test_sleep_mode_frees_the_engine_before_the_optimizer_and_after_every_rollout(
    toy, tmp_path, shared_data, monkeypatch
):
    sleep = {"rollout.enable_sleep_mode": "true"}
    events = fit_with_fake_vllm(toy, tmp_path, shared_data, monkeypatch, **sleep, **{"trainer.max_steps": 2})
    built = ["LLM", "sleep(level=2)", "configure_optimizers"]
    step = ["generate", "sleep(level=2)"]  # the KV cache is awake since the evaluation before it
    evaluation = [*SYNC, *ROLLOUT]
    assert events == [*built, *evaluation, *step, *evaluation, *step, *evaluation]

    resumed = fit_with_fake_vllm(
        toy, tmp_path, shared_data, monkeypatch, **sleep, **{"trainer.max_steps": 3, "resume": "auto"}
    )
    # A new process knows nothing of the engine's weights: it syncs before its first rollout.
    assert resumed == [*built, *SYNC, *ROLLOUT, "sleep(level=2)", *evaluation]


class Record(Callback):
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
        self.steps.append(metrics | {"completions": list(outputs["completions"])})


@pytest.mark.slow  # starts a vLLM engine (12-30 s on 2 cores)
def test_grpo_with_vllm_syncs_once_per_optimizer_step_and_samples_from_the_current_policy(toy, tmp_path):
    if not os.environ.get("CI"):
        pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")
    from tests.rollout.test_vllm import in_engine_layout, vllm_model_dir

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
