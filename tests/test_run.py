"""A run a user can trust: both entry points build the same run, mistakes are refused in one line before anything
loads, and nothing an earlier run wrote is lost."""

from __future__ import annotations

import csv
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from medzero_pl.__main__ import exit_code as cli
from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.fit import main as fit
from medzero_pl.run import cli_config
from tests.toy_task import toy_overrides

ROOT = Path(__file__).resolve().parents[1]


def run_fit(overrides: list[str], capsys) -> tuple[int, list[str]]:
    """Exit code and the `error:` lines of `python -m medzero_pl.fit` called in-process."""
    code = fit(overrides)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def short(toy, run_dir: Path, **fields) -> list[str]:
    return toy_overrides(toy, run_dir, **{"trainer.max_steps": 1, **fields})


def saved_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "version_0" / "metrics.csv") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------ two doors
def test_both_entry_points_build_the_same_run(toy, tmp_path, capsys):
    settings = {"trainer.max_steps": 2, "logging.log_completions": 1}
    assert fit(toy_overrides(toy, tmp_path / "fit", **settings)) == 0
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(cli_config(compose(toy_overrides(toy, tmp_path / "cli", **settings)))))
    assert cli(["fit", "--config", str(config)]) == 0

    for door in ("fit", "cli"):  # the same callbacks, loggers and record in both
        files = {p.name for p in (tmp_path / door).iterdir()}
        assert {"config.yaml", "cli_config.yaml", "completions.jsonl", "checkpoints", "csv"} <= files, door
    fit_rows, cli_rows = metrics_rows(tmp_path / "fit"), metrics_rows(tmp_path / "cli")
    assert [r["reward"] for r in fit_rows] == [r["reward"] for r in cli_rows]
    assert [r["loss"] for r in fit_rows] == [r["loss"] for r in cli_rows]
    fit_ckpt = torch.load(tmp_path / "fit" / "checkpoints" / "last.ckpt", weights_only=True)
    cli_ckpt = torch.load(tmp_path / "cli" / "checkpoints" / "last.ckpt", weights_only=True)
    assert fit_ckpt["global_step"] == cli_ckpt["global_step"] == 2
    for name, tensor in fit_ckpt["state_dict"].items():
        assert torch.equal(tensor, cli_ckpt["state_dict"][name]), name
    fit_record = (tmp_path / "fit" / "config.yaml").read_text().replace(str(tmp_path / "fit"), "RUN")
    assert fit_record == (tmp_path / "cli" / "config.yaml").read_text().replace(str(tmp_path / "cli"), "RUN")


def test_max_steps_counts_grpo_steps_with_several_optimizer_steps_each(toy, tmp_path):
    trainer, module, datamodule = build(
        compose(short(toy, tmp_path, **{"trainer.max_steps": 2, "grpo.num_iterations": 2}))
    )
    trainer.fit(module, datamodule=datamodule)
    assert module.grpo_step == 2 and trainer.global_step == 4
    assert trainer.progress_bar_callback is None or trainer.progress_bar_callback.total_train_batches == 2


def test_lightning_trainer_arguments_pass_through_and_unknown_ones_are_named(toy, tmp_path, capsys):
    trainer, _, _ = build(compose(short(toy, tmp_path, **{"trainer.lightning": "{detect_anomaly: true}"})))
    assert trainer._detect_anomaly is True
    assert trainer.num_nodes == 1
    code, errors = run_fit(short(toy, tmp_path, **{"trainer.lightning": "{detect_anomally: true}"}), capsys)
    assert code == 2
    assert errors == [
        "error: invalid configuration: trainer.lightning.detect_anomally: not an argument of lightning.Trainer. "
        "Did you mean: trainer.lightning.detect_anomaly?"
    ]
    code, errors = run_fit(short(toy, tmp_path, **{"trainer.profiler": "simple"}), capsys)
    assert code == 2
    assert errors[0].startswith(
        "error: override 'trainer.profiler=simple': unknown key 'trainer.profiler'. It is a lightning.Trainer "
        "argument: set trainer.lightning.profiler=..."
    )
    code, errors = run_fit(short(toy, tmp_path, **{"trainer.lightning": "{accumulate_grad_batches: 4}"}), capsys)
    assert code == 2 and "use grpo.micro_batch_size" in errors[0]


# ------------------------------------------------------------------------------------------ user's work kept
def test_a_fresh_run_refuses_a_directory_that_holds_a_checkpoint(toy, tmp_path, capsys):
    assert fit(short(toy, tmp_path)) == 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    code, errors = run_fit(short(toy, tmp_path, **{"trainer.max_steps": 3}), capsys)
    assert code == 2
    assert errors == [
        f"error: {tmp_path} already holds a run ({ckpt}): continue it with resume=auto (CLI: --ckpt_path {ckpt}), "
        "choose another run_dir, or replace it with overwrite=true"
    ]
    assert saved_step(ckpt) == 1
    assert fit(short(toy, tmp_path, overwrite="true", **{"trainer.max_steps": 2})) == 0
    assert saved_step(ckpt) == 2


def test_a_second_run_on_a_directory_in_use_refuses(toy, tmp_path, capsys):
    (tmp_path / ".medzero.lock").write_text(f'{{"host": "{socket.gethostname()}", "pid": {os.getpid()}, "since": "x"}}')
    code, errors = run_fit(short(toy, tmp_path), capsys)
    assert code == 2
    assert errors[0].startswith(f"error: {tmp_path} is in use by another run (pid {os.getpid()} on this machine")
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_and_released(toy, tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".medzero.lock"
    lock.write_text(f'{{"host": "{socket.gethostname()}", "pid": {dead.pid}, "since": "x"}}')
    with caplog.at_level(logging.WARNING):
        assert fit(short(toy, tmp_path)) == 0
    assert f"taking over the lock of run pid {dead.pid}" in caplog.text
    assert not lock.exists()


def test_a_failed_start_leaves_the_previous_runs_record_untouched(toy, tmp_path, capsys):
    assert fit(short(toy, tmp_path)) == 0
    record = (tmp_path / "config.yaml").read_text(), (tmp_path / "cli_config.yaml").read_text()
    code, errors = run_fit(short(toy, tmp_path, resume="auto", **{"model.name_or_path": tmp_path / "typo"}), capsys)
    assert code == 2 and errors[0].startswith("error: ")
    assert ((tmp_path / "config.yaml").read_text(), (tmp_path / "cli_config.yaml").read_text()) == record


def test_resume_refuses_settings_that_change_the_data_stream_or_objective(toy, tmp_path, capsys):
    assert fit(short(toy, tmp_path)) == 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    changed = {"grpo.num_generations": 4, "grpo.loss_type": "grpo", "trainer.max_steps": 2}
    code, errors = run_fit(short(toy, tmp_path, resume="auto", **changed), capsys)
    assert code == 2
    assert errors == [
        f"error: {ckpt} was trained with other settings that change the data stream or the objective: "
        "grpo.loss_type: 'dapo' -> 'grpo'; grpo.num_generations: 8 -> 4. "
        "Resume with the checkpoint's settings, or pass resume_allow_changes=true"
    ]
    assert saved_step(ckpt) == 1
    harmless = {"trainer.max_steps": 2, "logging.log_completions": 0, "optim.lr": 1e-3}
    assert fit(short(toy, tmp_path, resume="auto", **harmless)) == 0
    assert saved_step(ckpt) == 2
    assert (
        fit(short(toy, tmp_path, resume="auto", resume_allow_changes="true", **changed | {"trainer.max_steps": 3})) == 0
    )
    assert saved_step(ckpt) == 3


def test_resuming_a_sharded_checkpoint_on_another_number_of_ranks_is_refused_before_loading(toy, tmp_path, capsys):
    _, module, datamodule = build(compose(short(toy, tmp_path)))
    state = {
        "global_step": 1,
        "hyper_parameters": dict(module.hparams),
        "datamodule_hyper_parameters": dict(datamodule.hparams),
    }
    last = tmp_path / "checkpoints" / "last.ckpt"
    (last / "checkpoint").mkdir(parents=True)
    (last / "latest").write_text("checkpoint")
    for rank in range(2):  # what two ZeRO-3 ranks write; rank 0's model states hold Lightning's state
        torch.save(state, last / "checkpoint" / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt")
        torch.save({}, last / "checkpoint" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    code, errors = run_fit(short(toy, tmp_path, resume="auto"), capsys)
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: {last} was saved by 2 ranks but this run has 1 (trainer.num_nodes x ")
    assert "python -m deepspeed.checkpoint.ds_to_universal" in errors[0]
    assert not (tmp_path / "csv").exists()  # refused before training started


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(toy, tmp_path, caplog, capsys):
    assert fit(short(toy, tmp_path, **{"trainer.max_steps": 2, "trainer.checkpoint_every_n_steps": 1})) == 0
    last, previous = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "checkpoints" / "previous.ckpt"
    assert (saved_step(last), saved_step(previous)) == (2, 1)
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as by a crash of the storage
    with caplog.at_level(logging.WARNING):
        assert fit(short(toy, tmp_path, resume="auto", **{"trainer.max_steps": 3})) == 0
    assert "not a readable checkpoint" in caplog.text and "resuming from" in caplog.text
    assert saved_step(last) == 3

    previous.unlink()
    last.write_bytes(b"garbage")
    code, errors = run_fit(short(toy, tmp_path, resume="auto", **{"trainer.max_steps": 4}), capsys)
    assert code == 2
    assert errors[0].startswith(f"error: {last}: not a readable checkpoint (")
    assert errors[0].endswith("; no previous.ckpt to fall back to")


def test_an_unwritable_checkpoint_folder_is_refused_before_training(toy, tmp_path, capsys):
    (tmp_path / "checkpoints").write_text("a file where the checkpoint folder should be")
    code, errors = run_fit(short(toy, tmp_path, overwrite="true"), capsys)
    assert code == 2
    assert errors[0].startswith(f"error: cannot write checkpoints to {tmp_path / 'checkpoints'}: ")


# ------------------------------------------------------------------------------------ no silent wrong settings
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=0", "trainer.max_steps=0: expected at least 1 (GRPO steps to train)"),
        ("trainer.max_steps=-1", "trainer.max_steps=-1: expected at least 1 (GRPO steps to train)"),
        ("data.max_prompt_length=-5", "data.max_prompt_length=-5: expected at least 1"),
        ("grpo.max_completion_length=0", "grpo.max_completion_length=0: expected at least 1"),
        ("optim.lr=0", "optim.lr=0.0: expected > 0"),
        ("optim.betas=[0.9,1.0]", "optim.betas=[0.9, 1.0]: expected two values in [0, 1)"),
        ("grpo.top_k=-1", "grpo.top_k=-1: expected >= 0 (0 disables top-k)"),
        ("data.prompts_per_step=0", "data.prompts_per_step=0: expected at least 1"),
        ("data.val_batch_size=0", "data.val_batch_size=0: expected at least 1"),
        ("grpo.micro_batch_size=0", "grpo.micro_batch_size=0: expected at least 1"),
        ("rewards.0.weight=-1", "rewards.0.weight=-1.0: expected >= 0 (a penalty reward returns negative values)"),
        ("trainer.checkpoint_every_n_steps=0", "trainer.checkpoint_every_n_steps=0: expected at least 1"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_key(toy, tmp_path, capsys, override, message):
    code, errors = run_fit([*short(toy, tmp_path), override], capsys)
    assert (code, errors) == (2, [f"error: invalid configuration: {message}"])


def test_every_problem_is_reported_at_once(toy, tmp_path, capsys):
    code, errors = run_fit([*short(toy, tmp_path), "optim.lr=-1", "grpo.top_k=-2"], capsys)
    assert code == 2
    assert errors == [
        "error: invalid configuration: grpo.top_k=-2: expected >= 0 (0 disables top-k); optim.lr=-1.0: expected > 0"
    ]


def test_a_budget_longer_than_the_context_window_is_refused(toy, tmp_path, capsys):
    code, errors = run_fit(short(toy, tmp_path, **{"data.max_prompt_length": 4090}), capsys)
    assert code == 2
    assert errors == [
        "error: data.max_prompt_length + grpo.max_completion_length = 4090 + 8 = 4098 tokens exceeds the context "
        f"window of {toy['model']} (4096 tokens, max_position_embeddings): lower one of them"
    ]


def test_rewards_that_apply_to_none_of_the_data_are_refused(toy, tmp_path, capsys):
    code, errors = run_fit(short(toy, tmp_path, rewards="diagnosis"), capsys)
    assert code == 2
    assert errors == [
        "error: rewards: none of ['diagnosis_match'] applies to the training data (tasks: mcq); every reward would "
        "be 0 and nothing would be learnt. Choose a reward preset that matches the data"
    ]
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_user_errors_print_one_line_without_a_traceback_unless_debugging(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "medzero_pl.fit", "trainer.max_steps=0", f"run_dir={tmp_path}"]
    quiet = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 2
    assert "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().splitlines()[-1].startswith("error: invalid configuration: trainer.max_steps=0")
    loud = subprocess.run(
        command, cwd=ROOT, env=env | {"MEDZERO_DEBUG": "1"}, capture_output=True, text=True, timeout=120
    )
    assert loud.returncode == 2 and "Traceback" in loud.stderr


def test_the_cli_reports_user_errors_the_same_way(toy, tmp_path, capsys):
    config = tmp_path / "cli.yaml"
    bad = cli_config(compose(short(toy, tmp_path / "run", **{"model.name_or_path": tmp_path / "missing"})))
    config.write_text(yaml.safe_dump(bad))
    assert cli(["fit", "--config", str(config)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors[0].startswith(f"error: Cannot resolve model '{tmp_path / 'missing'}': it is not a local directory")


# ------------------------------------------------------------------------------------------ compatibility
def test_rewards_receive_completion_ids_as_in_trl(toy, tmp_path):
    rewards = (
        "[{name: 'trl.rewards:get_soft_overlong_punishment', kwargs: {max_completion_len: 8, soft_punish_cache: 4}},"
        " {name: soft_overlong, kwargs: {max_length: 8, cache: 4, unit: tokens}}]"
    )
    trainer, module, datamodule = build(compose(short(toy, tmp_path, rewards=rewards)))
    trainer.fit(module, datamodule=datamodule)
    metrics = trainer.callback_metrics
    assert any(name.endswith("soft_overlong_punishment/mean") for name in metrics), sorted(metrics)
    assert "rewards/soft_overlong/mean" in metrics
