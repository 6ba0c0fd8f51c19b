"""Checkpoint files are replaced atomically, and `resume=auto` finds the right one."""

from __future__ import annotations

import pytest
import torch

from medzero_pl.callbacks.checkpointing import AtomicCheckpointIO, latest_checkpoint


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_latest_checkpoint_prefers_last_and_ignores_temporary_files(tmp_path):
    ckpts = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path) is None
    ckpts.mkdir()
    (ckpts / "last.ckpt.tmp123").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) is None
    (ckpts / "step-4.ckpt").write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == ckpts / "step-4.ckpt"
    (ckpts / "last.ckpt").write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == ckpts / "last.ckpt"
