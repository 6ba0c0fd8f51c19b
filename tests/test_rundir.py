"""The run directory's rules on their own: checkpoint kinds, the fallback, what a resume may change, the lock."""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict

import pytest
import torch

from medzero_pl.config import Config
from medzero_pl.data.mixing import DataSource
from medzero_pl.rundir import (
    RunDirectoryError,
    RunLock,
    check_resume_world_size,
    checkpoint_world_size,
    find_resumable,
    read_checkpoint_header,
    resume_differences,
)


def test_the_header_of_a_zero3_directory_is_rank_0s_model_states(tmp_path):
    folder = tmp_path / "last.ckpt-step3"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "latest").write_text("checkpoint")
    torch.save({"hyper_parameters": {"seed": 1}}, folder / "checkpoint" / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    torch.save({"other": 1}, folder / "checkpoint" / "zero_pp_rank_1_mp_rank_00_model_states.pt")
    assert read_checkpoint_header(folder)["hyper_parameters"] == {"seed": 1}


def sharded_checkpoint(folder, ranks: int, prefix: str = "") -> None:
    """The files DeepSpeed's ZeRO-3 writes for `ranks` ranks, as Lightning lays them out (tag `checkpoint`)."""
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "latest").write_text("checkpoint")
    for rank in range(ranks):
        torch.save({}, folder / "checkpoint" / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt")
        torch.save({}, folder / "checkpoint" / f"{prefix}zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")


def test_a_sharded_checkpoint_resumes_only_on_as_many_ranks_as_wrote_it(tmp_path):
    sharded_checkpoint(tmp_path / "two", 2)
    sharded_checkpoint(tmp_path / "four", 4, prefix="bf16_")
    torch.save({"state_dict": {}}, tmp_path / "single.ckpt")
    assert [checkpoint_world_size(tmp_path / n) for n in ("two", "four", "single.ckpt")] == [2, 4, None]
    check_resume_world_size(tmp_path / "two", 2)
    check_resume_world_size(tmp_path / "single.ckpt", 4)  # a full state loads on any number of ranks
    with pytest.raises(RunDirectoryError) as refused:
        check_resume_world_size(tmp_path / "two", 4)
    tag = tmp_path / "two" / "checkpoint"
    assert str(refused.value) == (
        f"{tmp_path / 'two'} was saved by 2 ranks but this run has 4 (trainer.num_nodes x trainer.devices), and a "
        "ZeRO checkpoint's shards load only on as many ranks as wrote them: resume on 2 ranks, or convert it once with "
        f"`python -m deepspeed.checkpoint.ds_to_universal --input_folder {tag} --output_folder {tag}_universal` and "
        "resume again (a converted checkpoint loads on any number of ranks, with DeepSpeed's `load_universal`)"
    )
    (tmp_path / "two" / "latest_universal").write_text("checkpoint_universal")  # what the conversion writes last
    check_resume_world_size(tmp_path / "two", 4)


def test_resume_auto_prefers_last_then_previous_and_finds_nothing_in_an_empty_run(tmp_path):
    assert find_resumable(tmp_path) is None
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"state_dict": {}}, folder / "previous.ckpt")
    assert find_resumable(tmp_path) == folder / "previous.ckpt"
    torch.save({"state_dict": {}}, folder / "last.ckpt")
    assert find_resumable(tmp_path) == folder / "last.ckpt"
    (folder / "last.ckpt").write_bytes(b"truncated")
    assert find_resumable(tmp_path) == folder / "previous.ckpt"


def test_only_settings_that_change_the_stream_or_objective_count_as_differences():
    saved = {"grpo": {"num_generations": 8, "micro_batch_size": 4}, "optim": {"lr": 1e-6}, "seed": 0}
    assert resume_differences(saved, saved) == []
    harmless = {"grpo": {"num_generations": 8, "micro_batch_size": 2}, "optim": {"lr": 1e-5}, "seed": 0}
    assert resume_differences(saved, harmless) == []
    changed = {"grpo": {"num_generations": 4, "micro_batch_size": 4}, "optim": {"lr": 1e-6}, "seed": 1}
    assert resume_differences(saved, changed) == ["grpo.num_generations: 8 -> 4", "seed: 0 -> 1"]


def test_a_checkpoint_from_before_model_attn_implementation_resumes_under_any_attention():
    saved = {"model": {"dtype": "bfloat16"}}
    assert resume_differences(saved, {"model": {"dtype": "bfloat16", "attn_implementation": "auto"}}) == []
    assert (
        resume_differences({"model": {"attn_implementation": "sdpa"}}, {"model": {"attn_implementation": "eager"}})
        == []
    )


def test_a_setting_newer_than_the_checkpoint_counts_only_when_set_away_from_its_default():
    # A checkpoint written before grpo.policy_loss, grpo.kl_loss_type, grpo.off_policy_floor and DataSource.difficulty
    # existed: today's defaults are what that code did, so it resumes; a non-default value is a change, by name.
    current = {name: asdict(getattr(Config(), name)) for name in ("model", "grpo", "optim", "rollout", "data")}
    current["seed"] = 0
    current["data"]["sources"] = [asdict(DataSource(path="a.jsonl", format="medqa"))]
    saved = copy.deepcopy(current)
    del saved["grpo"]["policy_loss"], saved["grpo"]["kl_loss_type"], saved["grpo"]["off_policy_floor"]
    del saved["data"]["sources"][0]["difficulty"]
    assert resume_differences(saved, current, schema=Config) == []
    current["grpo"]["policy_loss"] = "cispo"
    current["grpo"]["off_policy_floor"] = 0.5
    current["data"]["sources"][0]["difficulty"] = 1.0
    diffs = resume_differences(saved, current, schema=Config)
    assert diffs[:2] == ["grpo.off_policy_floor: '<absent>' -> 0.5", "grpo.policy_loss: '<absent>' -> 'cispo'"]
    assert [d.split(":")[0] for d in diffs[2:]] == ["data.sources"]  # list items are reported as the whole list


def test_a_setting_saved_under_its_old_name_compares_under_its_new_one():
    saved = {"rollout": {"engine": "vllm", "off_policy_cap": 2.0}, "grpo": {"beta": 0.0}}
    current = {"rollout": {"engine": "vllm"}, "grpo": {"beta": 0.0, "off_policy_cap": 2.0}}
    renamed = {"rollout.off_policy_cap": "grpo.off_policy_cap"}
    assert resume_differences(saved, current, renamed) == []
    assert resume_differences(saved, {**current, "grpo": {"beta": 0.0, "off_policy_cap": 3.0}}, renamed) == [
        "grpo.off_policy_cap: 2.0 -> 3.0"
    ]


def test_a_held_lock_refuses_a_second_owner_until_released(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(RunDirectoryError, match="is in use by another run"):
        RunLock(tmp_path).acquire()
    first.release()
    second = RunLock(tmp_path)
    second.acquire()
    assert second.held
    second.release()


def _foreign_lock(run_dir, age_s: float = 0.0, **owner) -> None:
    lock = run_dir / ".medzero.lock"
    lock.write_text(json.dumps({"host": "node-that-died", "pid": 4242, "since": "x"} | owner))
    os.utime(lock, (time.time() - age_s, time.time() - age_s))


def test_a_requeued_job_takes_over_the_lock_its_killed_run_left_on_another_node(tmp_path, monkeypatch, caplog):
    _foreign_lock(tmp_path, job="777")
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    lock = RunLock(tmp_path)
    with caplog.at_level(logging.WARNING):
        lock.acquire()
    assert lock.held and "of this scheduler job 777 (requeued)" in caplog.text
    assert json.loads((tmp_path / ".medzero.lock").read_text())["job"] == "777"
    lock.release()


def test_a_lock_whose_heartbeat_stopped_is_taken_over_and_a_beating_one_is_not(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", "778")
    _foreign_lock(tmp_path, age_s=30, job="777")
    with pytest.raises(RunDirectoryError, match="in use by another run .*node-that-died"):
        RunLock(tmp_path, stale_s=600).acquire()
    _foreign_lock(tmp_path, age_s=3600, job="777")
    lock = RunLock(tmp_path, stale_s=600)
    with caplog.at_level(logging.WARNING):
        lock.acquire()
    assert "whose heartbeat stopped" in caplog.text
    lock.release()


def test_a_held_lock_keeps_beating(tmp_path):
    lock = RunLock(tmp_path, heartbeat_s=0.05)
    lock.acquire()
    path = tmp_path / ".medzero.lock"
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    time.sleep(0.5)
    assert time.time() - path.stat().st_mtime < 60
    lock.release()
    assert not path.exists()
