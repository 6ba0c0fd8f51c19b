"""`export` deletes nothing it did not write (every case runs in a scratch directory)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from medzero_pl.export import EXPORT_MARKER, main


@pytest.fixture
def ckpt(toy, tmp_path) -> Path:
    """A single-file checkpoint holding the tiny model's weights as the policy, as training writes it."""
    model = AutoModelForCausalLM.from_pretrained(toy["model"])
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    state = {f"policy.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": {"name_or_path": str(toy["model"])}}}, path)
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_an_existing_folder_that_is_not_an_export_is_kept_and_refused(ckpt, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("a week of work")
    assert main([str(ckpt), str(out)]) == 2
    assert (out / "notes.txt").read_text() == "a week of work"
    err = capsys.readouterr().err
    assert err.startswith("error: out_dir=") and "--overwrite" in err and "Traceback" not in err


def test_the_run_directory_holding_the_checkpoint_is_refused_even_with_overwrite(ckpt, tmp_path):
    run = ckpt.parents[1]
    before = _tree(run)
    assert main([str(ckpt), str(run), "--overwrite"]) == 2
    assert main([str(ckpt), str(ckpt.parent)]) == 2
    assert _tree(run) == before and ckpt.is_file()


def test_the_working_directory_and_its_ancestors_are_refused(ckpt, tmp_path, monkeypatch):
    work = tmp_path / "project" / "src"
    work.mkdir(parents=True)
    (work / "code.py").write_text("x = 1")
    monkeypatch.chdir(work)
    for target in (".", "..", str(tmp_path / "project")):
        assert main([str(ckpt), target, "--overwrite"]) == 2
    assert (work / "code.py").read_text() == "x = 1"


def test_an_earlier_export_is_replaced_and_a_new_one_uses_the_umask(ckpt, tmp_path):
    out = tmp_path / "hf"
    old = os.umask(0o022)
    try:
        assert main([str(ckpt), str(out)]) == 0
    finally:
        os.umask(old)
    assert (out / EXPORT_MARKER).is_file() and (out / "model.safetensors").is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "config.json").stat().st_mode) == 0o644
    (out / "stale.bin").write_text("from the earlier export")
    assert main([str(ckpt), str(out)]) == 0  # an export of ours: replaced whole
    assert not (out / "stale.bin").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_overwrite_replaces_a_folder_that_is_not_an_export(ckpt, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("old")
    assert main([str(ckpt), str(out), "--overwrite"]) == 0
    assert not (out / "notes.txt").exists() and (out / "model.safetensors").is_file()


def test_a_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope.ckpt"), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
