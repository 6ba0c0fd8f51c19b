"""What a sharded DeepSpeed checkpoint may unpickle: tensors, plain containers and three DeepSpeed classes.

DeepSpeed reads its shards with `torch.load(weights_only=False)` (its engine on resume, `zero_to_fp32` on export),
so a crafted shard would run code the moment it is read. Before any of its files is loaded, every `*.pt` under the
directory is disassembled statically (`torch.serialization.get_unsafe_globals_in_checkpoint`: no code runs, and
any opcode outside what `weights_only=True` accepts is refused) and must name no global beyond torch's own
`weights_only` allow-list and `DEEPSPEED_GLOBALS`. Our own reads then use `weights_only=True` with that allow-list.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch.serialization import get_unsafe_globals_in_checkpoint

from medzero_pl.errors import UserError

# What DeepSpeed 0.19 pickles into ZeRO checkpoints besides tensors and containers (optimizer states: the stage enum
# and the loss scaler; fp16 runs use the dynamic one).
DEEPSPEED_GLOBALS = frozenset(
    {
        "deepspeed.runtime.zero.config.ZeroStageEnum",
        "deepspeed.runtime.fp16.loss_scaler.LossScaler",
        "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    }
)
TAG_FILES = ("latest", "latest_universal")


class UntrustedCheckpointError(UserError):
    """A checkpoint file that would run code, or name classes beyond the allow-list, when unpickled."""


def named_globals(file: str | Path) -> set[str]:
    """The globals `file` would import beyond torch's `weights_only` allow-list, read without unpickling it."""
    try:
        return set(get_unsafe_globals_in_checkpoint(file))
    except Exception as err:  # legacy/garbage format, or an opcode weights_only does not support (e.g. INST, OBJ)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UntrustedCheckpointError(f"{file}: refused, not a plain torch.save file ({first})") from None


def _refuse_unexpected(file: Path, names: set[str]) -> None:
    if unexpected := sorted(names - DEEPSPEED_GLOBALS):
        raise UntrustedCheckpointError(
            f"{file}: refused, it would import {', '.join(unexpected)} when loaded (a DeepSpeed checkpoint holds "
            f"only tensors, containers and {', '.join(sorted(DEEPSPEED_GLOBALS))})"
        )


def check_sharded_checkpoint(path: str | Path) -> None:
    """Refuse a sharded checkpoint directory if any of its files would unpickle more than data; reads no tensor."""
    root = Path(path)
    for name in TAG_FILES:
        tag_file = root / name
        if tag_file.is_file():
            tag = tag_file.read_text().strip()
            if not tag or Path(tag).name != tag or tag in (".", ".."):
                raise UntrustedCheckpointError(f"{tag_file}: refused, the tag {tag!r} is not a folder of {root}")
    for folder, _, files in os.walk(root, followlinks=True):
        for file in (Path(folder) / name for name in files if name.endswith(".pt")):
            _refuse_unexpected(file, named_globals(file))


def load_shard(file: str | Path) -> Any:
    """`torch.load(weights_only=True)` of one checked shard, allowing exactly the DeepSpeed classes it names."""
    names = named_globals(file)
    _refuse_unexpected(Path(file), names)
    allowed = [getattr(importlib.import_module(n.rpartition(".")[0]), n.rpartition(".")[2]) for n in sorted(names)]
    with torch.serialization.safe_globals(allowed):
        return torch.load(file, map_location="cpu", weights_only=True)
