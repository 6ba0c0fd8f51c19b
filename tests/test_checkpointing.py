"""Checkpoint files are replaced atomically, the previous save is kept, and a failed save names its cause."""

from __future__ import annotations

import builtins

import pytest
import torch

from medzero_pl.callbacks.checkpointing import AtomicCheckpointIO, CheckpointSaveError


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointSaveError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_replacing_last_keeps_the_save_before_it_as_previous(tmp_path):
    io = AtomicCheckpointIO()
    for step in (1, 2, 3):
        io.save_checkpoint({"step": step}, tmp_path / "last.ckpt")
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"step": 3}
    assert torch.load(tmp_path / "previous.ckpt", weights_only=True) == {"step": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "previous.ckpt"]


def test_a_full_disk_is_reported_as_such_not_as_a_torch_internal_error(tmp_path, monkeypatch):
    real_open = builtins.open

    def open_full_disk(file, mode="r", *args, **kwargs):
        return real_open("/dev/full", mode, *args, **kwargs) if ".tmp" in str(file) else real_open(file, mode)

    io = AtomicCheckpointIO()
    monkeypatch.setattr(builtins, "open", open_full_disk)
    with pytest.raises(CheckpointSaveError) as err:
        io.save_checkpoint({"weights": torch.zeros(10_000)}, tmp_path / "last.ckpt")
    assert str(err.value) == f"could not save checkpoint {tmp_path / 'last.ckpt'}: no space left on device (disk full)"


def test_an_unwritable_location_is_reported_with_its_os_reason(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where a folder should be")
    with pytest.raises(CheckpointSaveError, match="could not save checkpoint .*: (File exists|Not a directory)"):
        AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "checkpoints" / "last.ckpt")
