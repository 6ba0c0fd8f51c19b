"""Checkpoint files are replaced atomically, the previous save is kept, and a failed save names its cause."""

from __future__ import annotations

import builtins

import pytest
import torch

from medzero_pl.callbacks.checkpointing import AtomicCheckpointIO, CheckpointSaveError, remove_stale_temporaries


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
    assert str(err.value).startswith(f"could not save checkpoint {tmp_path / 'last.ckpt'}: no space left on device")


def test_a_nearly_full_disk_is_reported_as_full_not_as_torchs_unexpected_pos(tmp_path, monkeypatch):
    """On a nearly full filesystem torch's zip writer gets a short write and raises `unexpected pos` (the message
    below is the one a 2 MiB tmpfs gave); the user reads that the disk is full, and the previous save stays."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)

    def short_write(obj, f):
        f.write(b"PK\x03\x04")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(CheckpointSaveError, match=r"last.ckpt: no space left on device \(disk full, [\d.]+ MiB free\)"):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_partial_saves_of_a_killed_run_are_removed_and_checkpoints_kept(tmp_path):
    for name in ("last.ckpt", "previous.ckpt", "last.ckpt.tmp4242", "last.ckpt-step3.tmp/shard.pt", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".last.ckpt.link-77").symlink_to("last.ckpt-step3.tmp")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".last.ckpt.link-77", "last.ckpt-step3.tmp", "last.ckpt.tmp4242"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "notes.txt", "previous.ckpt"]


def test_an_unwritable_location_is_reported_with_its_os_reason(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where a folder should be")
    with pytest.raises(CheckpointSaveError, match="could not save checkpoint .*: (File exists|Not a directory)"):
        AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "checkpoints" / "last.ckpt")
