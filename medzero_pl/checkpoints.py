"""The one loader from a training checkpoint to the trained policy, shared by `eval --ckpt` and `export`.

A checkpoint is a single-process `last.ckpt` file or a sharded DeepSpeed ZeRO-3 directory (what `last.ckpt` links
to under DeepSpeed; its shards are consolidated with DeepSpeed's `zero_to_fp32`). Either way the policy is the
`policy.*` part of the LightningModule's state dict, and the base model the run started from is recorded in its
hyper-parameters, so the weights go into that model's architecture. A LoRA run's checkpoint holds its adapters
alone (`model.lora` is recorded too): they are put on the base model and merged, or kept as a `PeftModel`. A directory
written by `export --adapter` (`adapter_config.json` naming its base) is read by `load_adapter_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from medzero_pl.errors import UserError
from medzero_pl.model.loading import load_causal_lm
from medzero_pl.model.lora import LoRAConfig, apply_lora

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
    checkpoint: str | Path, base: str | None = None, dtype: str | None = None, merge: bool = True
) -> tuple[PreTrainedModel, str]:
    """The trained policy in eval mode, and the name of the base model whose architecture holds it.

    Args:
        checkpoint: A `.ckpt` file or a ZeRO-3 checkpoint directory.
        base: Model name, path or alias to load the weights into (default: the one the run recorded).
        dtype: `float32`, `bfloat16` or `float16` (default: the run's `model.dtype`).
        merge: A LoRA run's adapters merged into the base weights (a plain Hugging Face model); False keeps the
            `PeftModel`, whose `save_pretrained` writes the adapter alone.

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
    if recorded.get("lora", {}).get("r", 0) > 0:
        return lora_policy(model, LoRAConfig(**recorded["lora"]), weights, name, merge).eval(), name
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {k for k in missing if model.config.tie_word_embeddings and k.endswith("lm_head.weight")}  # saved once
    if set(missing) - tied or unexpected:
        raise CheckpointError(
            f"{checkpoint} does not match {name}: missing {sorted(set(missing) - tied)}, unexpected {unexpected}"
        )
    model.tie_weights()
    return model.eval(), name


def lora_policy(
    base: PreTrainedModel, lora: LoRAConfig, weights: dict[str, torch.Tensor], name: str, merge: bool
) -> torch.nn.Module:
    """A checkpoint's LoRA policy: adapters (names as in `PeftModel.state_dict()`) on `base`, merged into a plain
    Hugging Face model when `merge`, else the `PeftModel`."""
    model = apply_lora(base, lora, name)
    expected = {k for k, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = expected - weights.keys(), weights.keys() - dict(model.state_dict()).keys()
    if missing or unexpected:
        raise CheckpointError(
            f"LoRA weights do not fit {name}: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
        )
    model.load_state_dict(weights, strict=False)
    return model.merge_and_unload() if merge else model


def is_adapter_dir(path: str | Path | None) -> bool:
    """Whether `path` is a directory holding a peft adapter (written by `export --adapter`)."""
    return path is not None and (Path(path) / "adapter_config.json").is_file()


def load_adapter_dir(path: str | Path, dtype: str) -> tuple[PreTrainedModel, str]:
    """An exported adapter merged into its base model (named in `adapter_config.json`) in eval mode, and the base's
    name."""
    from peft import PeftConfig, PeftModel

    name = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    if not name:
        raise CheckpointError(f"{path}/adapter_config.json names no base_model_name_or_path")
    model = PeftModel.from_pretrained(load_causal_lm(name, dtype=dtype), str(path))
    return model.merge_and_unload().eval(), name
