"""DeepSpeed ZeRO-3 on CPU with real DeepSpeed: two ranks (gloo, one thread each) against one plain process.

Every run is a separate set of processes (`tests/strategies/grpo_run.py`) with a deadline, so a deadlock fails the
test instead of hanging it. Budget: about a minute per two-rank run on two cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medzero_pl.rundir import checkpoint_world_size
from tests.strategies.launch import ROOT, free_port, rank_env, spawn, start, tails, wait_all
from tests.toy_task import toy_overrides

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow
SCRIPT = "tests/strategies/grpo_run.py"


def overrides(toy, run_dir: Path, world_size: int, **fields) -> list[str]:
    settings = {
        "trainer.accelerator": "cpu",
        "trainer.devices": world_size,
        "trainer.strategy": "deepspeed_stage3" if world_size > 1 else "auto",
        "data.prompts_per_step": 4,
        "logging.log_completions": 0,
        "trainer.max_steps": 3,
    }
    return toy_overrides(toy, run_dir, **settings | fields)


def run(toy, run_dir: Path, world_size: int, *flags: str, timeout: float = 600, **fields) -> list[dict]:
    """Run to the end on `world_size` ranks; every rank's result dict."""
    out = run_dir / "result.pt"
    procs = spawn(
        [SCRIPT, str(out), *flags, *overrides(toy, run_dir, world_size, **fields)], world_size, run_dir / "logs"
    )
    codes = wait_all(procs, run_dir / "logs", timeout)
    assert codes == [0] * world_size, tails(run_dir / "logs")
    return [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(world_size)]


def assert_weights_close(actual: dict, expected: dict, rtol: float = 1e-4) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=rtol, atol=1e-6, msg=name)


# Same start, same global batch (4 prompts x 8, split 2 + 2 by rank), completions that depend only on the prompt;
# beta > 0 (the sharded reference), mu = 2, batch-std advantages (all-gathered rewards), active clipping (grad norms
# ~0.6 > 0.3) and gradient accumulation (4 micro-batches of 4 rows per rank, 8 in the plain process) all take part:
# the grad norm DeepSpeed clips by and logs is that of the whole batch only if every micro-batch adds to it.
ROWS_PER_RANK = 4 * 8 // 2
EQUIVALENCE = {
    "grpo.beta": 0.04,
    "grpo.num_iterations": 2,
    "grpo.scale_rewards": "batch",
    "grpo.micro_batch_size": 4,
    "optim.grad_clip": 0.3,
    "optim.lr": 1e-3,
}


@pytest.fixture(scope="module")
def plain_run(toy, tmp_path_factory) -> dict:
    return run(toy, tmp_path_factory.mktemp("plain"), 1, "--scripted", **EQUIVALENCE)[0]


@pytest.mark.parametrize("strategy", ["deepspeed_stage3", "deepspeed_stage3_offload"])
def test_two_zero3_ranks_train_like_one_plain_process(toy, tmp_path, plain_run, strategy):
    plain = plain_run
    zero3 = run(toy, tmp_path, 2, "--scripted", **EQUIVALENCE, **{"trainer.strategy": strategy})

    assert len(plain["losses"]) == 3
    torch.testing.assert_close(torch.tensor(zero3[0]["losses"]), torch.tensor(plain["losses"]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        torch.tensor(zero3[0]["grad_norms"]), torch.tensor(plain["grad_norms"]), rtol=1e-4, atol=1e-6
    )
    assert min(plain["grad_norms"]) > 0.3  # so clipping changed the update
    assert EQUIVALENCE["grpo.micro_batch_size"] < ROWS_PER_RANK  # so each rank accumulated several micro-batches
    for rank in zero3:
        assert_weights_close(rank["weights"], plain["weights"])
    # Loading under zero.Init gives exactly the parameters of a plain from_pretrained, and gathering them a few
    # thousand elements at a time (the model spread over 11 blocks) reproduces that full state dict exactly.
    for rank in zero3:
        for gathered in (rank["initial"], rank["initial_blocks"]):
            assert list(gathered) == list(plain["initial"])
            assert all(torch.equal(gathered[name], tensor) for name, tensor in plain["initial"].items())
        assert all(torch.equal(rank["weights_blocks"][name], t) for name, t in rank["weights"].items())
    # Each rank holds half of the reference (partitions are padded to the world size, hence the slack).
    assert zero3[0]["reference_bytes"] <= plain["reference_bytes"] / 2 * 1.05


# One GRPO step sampled by vLLM. Each prompt is sampled with a seed of (step, prompt) (`--prompt-seeded`), so two
# ranks holding 2 prompts each sample what one process holding all 4 does; weights are synced through gathers of at
# most 20k elements (the 2-layer, hidden-128 model in 14 blocks).
VLLM_RUN = {
    "rollout.engine": "vllm",
    "rollout.max_model_len": 1024,
    "rollout.kv_cache_gib": 0.05,
    "grpo.max_completion_length": 16,
    "trainer.max_steps": 1,
}


def test_vllm_engine_after_a_zero3_step_generates_like_one_plain_process(toy, tmp_path):
    if not os.environ.get("CI"):
        pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")
    from tests.rollout.test_vllm import in_engine_layout, vllm_model_dir

    task = {"model": vllm_model_dir(tmp_path / "model"), "data": toy["data"]}
    flags = ("--prompt-seeded", "--gather-numel=20000")
    plain = run(task, tmp_path / "plain", 1, *flags, **VLLM_RUN)[0]
    zero3 = run(task, tmp_path / "zero3", 2, *flags, **VLLM_RUN, **{"trainer.strategy": "deepspeed_stage3"})

    assert plain["engine_greedy"].completion_ids != plain["engine_greedy_before"].completion_ids  # the step matters
    for rank in zero3:
        assert rank["global_step"] == 1
        assert rank["engine_greedy_before"].completion_ids == plain["engine_greedy_before"].completion_ids
        assert rank["engine_greedy"].completion_ids == plain["engine_greedy"].completion_ids
        for ours, theirs in zip(rank["engine_greedy"].logprobs, plain["engine_greedy"].logprobs, strict=True):
            torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=0, atol=1e-4)
        # Each rank's engine holds exactly that rank's gathered policy, and that is the plain run's policy.
        expected = in_engine_layout(rank["weights"])
        assert expected.keys() == rank["engine_weights"].keys()
        for name, tensor in expected.items():
            assert torch.equal(rank["engine_weights"][name][: tensor.shape[0]], tensor), name
        # Adam's first step moves every weight by about lr * sign(grad) = 1e-2; the few whose gradient is near
        # Adam's eps move differently under the other reduction order, by at most ~2e-5 here.
        for name, tensor in plain["weights"].items():
            torch.testing.assert_close(rank["weights"][name], tensor, rtol=0, atol=1e-4, msg=name)
    torch.testing.assert_close(torch.tensor(zero3[0]["losses"]), torch.tensor(plain["losses"]), rtol=1e-4, atol=1e-6)


def test_generation_completes_when_ranks_stop_at_different_times(toy, tmp_path):
    # Rank 0 stops after 2 new tokens, rank 1 runs to 24: without synced_gpus rank 1's next forward would wait
    # forever for rank 0's share of the parameters.
    results = run(toy, tmp_path, 2, "--max-new-tokens=2,24", timeout=480, **{"trainer.max_steps": 2})
    assert all(r["global_step"] == 2 for r in results)


def test_dynamic_sampling_ranks_draw_and_keep_alike(toy, tmp_path):
    # A sparse metric (does the completion open with the gold letter?) leaves most groups of the random model without
    # a spread, and the two ranks find different numbers of informative groups: they must still draw the same
    # batches and train on the same number of groups, or a ZeRO-3 gather would wait forever.
    fields = {
        "trainer.max_steps": 2,
        "rewards": "[{name: 'tests.toy_task:letter_share'}, {name: 'tests.toy_task:opens_with_letter'}]",
        "grpo.dynamic_sampling.enable": "true",
        "grpo.dynamic_sampling.metric": "opens_with_letter",
        "grpo.dynamic_sampling.max_extra_draws": 2,
    }
    results = run(toy, tmp_path, 2, timeout=480, **fields)
    assert results[0]["data_positions"] == results[1]["data_positions"]
    assert results[0]["rows_trained"] == results[1]["rows_trained"]
    assert results[0]["data_positions"][-1] > 2  # extra batches were drawn
    assert all(r["global_step"] == 2 for r in results)


def test_sharded_checkpoint_resumes_to_the_same_weights(toy, tmp_path):
    straight = run(toy, tmp_path / "straight", 2, **{"trainer.max_steps": 3})[0]
    run(toy, tmp_path / "resumed", 2, **{"trainer.max_steps": 2})
    link = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert link.is_symlink() and (link / "latest").is_file()
    assert sorted(p.name for p in link.parent.iterdir()) == ["last.ckpt", "last.ckpt-step2"]  # no leftovers
    resumed = run(toy, tmp_path / "resumed", 2, **{"trainer.max_steps": 3, "resume": "auto"})[0]
    assert resumed["global_step"] == 3
    assert straight["losses"][2:] == resumed["losses"]
    for name, tensor in straight["weights"].items():
        assert torch.equal(resumed["weights"][name], tensor), name
    # the save before is kept as previous.ckpt (a damaged last.ckpt falls back to it); older ones are removed
    files = ["last.ckpt", "last.ckpt-step2", "last.ckpt-step3", "previous.ckpt"]
    assert sorted(p.name for p in link.parent.iterdir()) == files
    assert (link.parent / "previous.ckpt").resolve().name == "last.ckpt-step2"


def test_a_checkpoint_converted_to_universal_resumes_on_another_number_of_ranks(toy, tmp_path, plain_run):
    run(toy, tmp_path, 2, "--scripted", **EQUIVALENCE, **{"trainer.max_steps": 2})
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert checkpoint_world_size(last) == 2  # the files DeepSpeed wrote are the ones the pre-flight check counts
    tag = last.resolve() / "checkpoint"
    convert = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(tag)]
    convert += ["--output_folder", f"{tag}_universal", "--num_extract_workers=1", "--num_merge_workers=1"]
    done = subprocess.run(convert, cwd=ROOT, env=rank_env(0, 1, free_port()), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    one = {"trainer.max_steps": 3, "resume": "auto", "trainer.strategy": "deepspeed_stage3"}
    resumed = run(toy, tmp_path, 1, "--scripted", **EQUIVALENCE, **one)[0]

    # Step 3 on one rank continues the two ranks' weights and Adam moments: it ends where one plain process does.
    assert resumed["global_step"] == 3 * EQUIVALENCE["grpo.num_iterations"]  # optimizer steps
    torch.testing.assert_close(resumed["losses"][-1], plain_run["losses"][2], rtol=1e-4, atol=1e-6)
    assert_weights_close(resumed["weights"], plain_run["weights"])


def test_sigterm_to_one_rank_makes_both_save_the_same_step(toy, tmp_path):
    out = tmp_path / "result.pt"
    fields = {"trainer.max_steps": 10_000, "trainer.checkpoint_every_n_steps": 10_000, "logging.log_completions": 1}
    procs = spawn([SCRIPT, str(out), "--scripted", *overrides(toy, tmp_path, 2, **fields)], 2, tmp_path / "logs")
    samples = tmp_path / "completions.jsonl"  # one line per finished step (written by rank 0)
    deadline = time.monotonic() + 400
    while not (samples.exists() and len(samples.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), tails(tmp_path / "logs")
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGTERM)
    stopped = 128 + signal.SIGTERM
    assert wait_all(procs, tmp_path / "logs", 400, expected=(stopped,)) == [stopped] * 2
    results = [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(2)]
    assert results[0]["global_step"] == results[1]["global_step"] >= 2
    step = results[0]["global_step"]
    saved = (tmp_path / "checkpoints" / "last.ckpt").resolve()
    assert saved.name == f"last.ckpt-step{step}"
    shards = sorted(p.name for p in (saved / "checkpoint").iterdir())
    assert [s for s in shards if s.startswith("zero_pp_rank_")] == [
        "zero_pp_rank_0_mp_rank_00_model_states.pt",
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_model_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]


def test_torchrun_two_nodes_on_localhost(toy, tmp_path):
    """`scripts/torchrun_example.sh` on two "nodes" of this machine (one process each, c10d rendezvous on
    127.0.0.1): `python -m medzero_pl.fit` trains 2 steps, saves a 2-rank checkpoint and validates."""
    args = overrides(toy, tmp_path, 1, **{"trainer.max_steps": 2, "data.val_fraction": 0.25})
    args = [a for a in args if not a.startswith(("trainer.devices", "trainer.strategy", "trainer.accelerator"))]
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    for node in range(2):
        env = os.environ | {
            **{"NNODES": "2", "NODE_RANK": str(node), "GPUS_PER_NODE": "1", "ACCELERATOR": "cpu"},
            **{"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RDZV_ID": f"medzero-test-{port}"},
            **{"PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        }
        procs.append(start(["bash", "scripts/torchrun_example.sh", *args], env, logs / f"rank{node}.log"))
    assert wait_all(procs, logs, 600) == [0, 0], tails(logs)
    saved = (tmp_path / "checkpoints" / "last.ckpt").resolve()
    assert saved.name == "last.ckpt-step2"
    ranks = {p.name.split("_")[3] for p in (saved / "checkpoint").glob("zero_pp_rank_*_model_states.pt")}
    assert ranks == {"0", "1"}
    assert "val/reward" in (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()


@pytest.fixture(scope="module")
def zero3_checkpoint(toy, tmp_path_factory) -> tuple[Path, dict]:
    """A two-rank ZeRO-3 run of 2 steps: its `last.ckpt` (a link to a sharded directory) and rank 0's result."""
    run_dir = tmp_path_factory.mktemp("zero3_checkpoint")
    trained = run(toy, run_dir, 2, **{"trainer.max_steps": 2})[0]
    return run_dir / "checkpoints" / "last.ckpt", trained


def test_export_of_a_zero3_checkpoint_generates_like_the_trained_policy(toy, tmp_path, zero3_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medzero_pl.export import export

    checkpoint, trained = zero3_checkpoint
    out = export(checkpoint, tmp_path / "hf")
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    exported = AutoModelForCausalLM.from_pretrained(out)
    policy = AutoModelForCausalLM.from_pretrained(toy["model"])
    policy.load_state_dict(trained["weights"], strict=False)
    tokenizer = AutoTokenizer.from_pretrained(out, padding_side="left")
    ids = tokenizer(["Say C", "Say A and then B"], return_tensors="pt", padding=True)
    greedy = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    assert torch.equal(exported.generate(**ids, **greedy), policy.generate(**ids, **greedy))
    assert not torch.equal(exported.model.embed_tokens.weight, policy_at_start(toy).model.embed_tokens.weight)


def test_eval_loads_a_zero3_checkpoint_directory_as_the_trained_policy(toy, zero3_checkpoint):
    """`python -m medzero_pl.eval --ckpt <ZeRO-3 directory>` reads the shards like `export` (it once raised
    IsADirectoryError), into the base model the run recorded."""
    from medzero_pl.eval.__main__ import load_policy

    checkpoint, trained = zero3_checkpoint
    assert checkpoint.resolve().is_dir()
    policy, _, base = load_policy(None, str(checkpoint), "float32")
    assert Path(base) == Path(toy["model"])
    loaded = {key: tensor.detach() for key, tensor in policy.named_parameters()}
    assert_weights_close(loaded, trained["weights"])
    assert not torch.equal(loaded["model.embed_tokens.weight"], policy_at_start(toy).model.embed_tokens.weight)


def policy_at_start(toy):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(toy["model"])
