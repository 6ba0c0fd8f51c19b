"""The one loader from a training checkpoint to the trained policy, shared by `eval --ckpt` and `export`.

A checkpoint is a single-process `last.ckpt` file or a sharded DeepSpeed ZeRO-3 directory (what `last.ckpt` links
to under DeepSpeed; its shards are consolidated with DeepSpeed's `zero_to_fp32`). Either way the policy is the
`policy.*` part of the LightningModule's state dict, and the base model the run started from is recorded in its
hyper-parameters, so the weights go into that model's architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from medzero_pl.errors import UserError
from medzero_pl.model.loading import load_causal_lm

POLICY_PREFIX = "policy."


class CheckpointError(UserError):
    """Not a readable medzero_pl checkpoint, or one that does not fit the base model."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """No checkpoint file or directory at the given path."""


def policy_state(checkpoint: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The policy's weights (names as in the Hugging Face model) and the run's hyper-parameters."""
    path = Path(checkpoint)
    if path.is_dir():
        from medzero_pl.strategies.deepspeed import zero_checkpoint_state_dict  # deepspeed only for sharded ones

        state, meta = zero_checkpoint_state_dict(path)
        hparams = meta.get("hyper_parameters", {})
    elif path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated zip, garbage, foreign pickle: torch raises RuntimeError/UnpicklingError
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
        state, hparams = ckpt["state_dict"], ckpt.get("hyper_parameters", {})
    else:
        raise MissingCheckpointError(f"{path}: no such checkpoint file or directory")
    weights = {k[len(POLICY_PREFIX) :]: v for k, v in state.items() if k.startswith(POLICY_PREFIX)}
    if not weights:
        raise CheckpointError(f"{path} holds no '{POLICY_PREFIX}*' weights: not a medzero_pl checkpoint")
    return weights, hparams


def recorded_base(checkpoint: str | Path) -> str | None:
    """The base model the run recorded, read without consolidating any weights (a file is memory-mapped, a ZeRO-3
    directory's client state holds no parameters), so a wrong checkpoint is found before hours of evaluation."""
    path = Path(checkpoint)
    if path.is_dir():
        from deepspeed.utils.zero_to_fp32 import get_model_state_file

        from medzero_pl.pickles import check_sharded_checkpoint, load_shard

        check_sharded_checkpoint(path)
        latest = path / "latest"
        if not latest.is_file():
            raise CheckpointError(f"{path}: a directory without 'latest': not a ZeRO-3 checkpoint")
        try:
            state_file = get_model_state_file(str(path / latest.read_text().strip()), zero_stage=3)
        except FileNotFoundError as err:
            raise CheckpointError(f"{path}: incomplete ZeRO-3 checkpoint ({err})") from None
        hparams = load_shard(state_file).get("hyper_parameters", {})
    elif path.is_file():
        try:
            hparams = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters", {})
        except Exception as err:  # as in policy_state
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    else:
        raise MissingCheckpointError(f"{path}: no such checkpoint file or directory")
    return hparams.get("model", {}).get("name_or_path")


def load_policy(
    checkpoint: str | Path, base: str | None = None, dtype: str | None = None
) -> tuple[PreTrainedModel, str]:
    """The trained policy in eval mode, and the name of the base model whose architecture holds it.

    Args:
        checkpoint: A `.ckpt` file or a ZeRO-3 checkpoint directory.
        base: Model name, path or alias to load the weights into (default: the one the run recorded).
        dtype: `float32`, `bfloat16` or `float16` (default: the run's `model.dtype`).

    Raises:
        MissingCheckpointError: No such checkpoint.
        CheckpointError: Not a medzero_pl checkpoint, no recorded base model, or weights that do not fit the base model.
    """
    weights, hparams = policy_state(checkpoint)
    recorded = hparams.get("model", {})
    name = base or recorded.get("name_or_path")
    if not name:
        raise CheckpointError(f"{checkpoint} does not record its base model: name it (export --base, eval --model)")
    model = load_causal_lm(name, dtype=dtype or recorded.get("dtype", "float32"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {k for k in missing if model.config.tie_word_embeddings and k.endswith("lm_head.weight")}  # saved once
    if set(missing) - tied or unexpected:
        raise CheckpointError(
            f"{checkpoint} does not match {name}: missing {sorted(set(missing) - tied)}, unexpected {unexpected}"
        )
    model.tie_weights()
    return model.eval(), name
