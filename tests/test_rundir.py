"""The run directory's rules on their own: checkpoint kinds, the fallback, what a resume may change, the lock."""

from __future__ import annotations

import pytest
import torch

from medzero_pl.rundir import (
    RunDirectoryError,
    RunLock,
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
