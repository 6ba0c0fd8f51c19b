"""`python -m medzero_pl.export <checkpoint> <out_dir>`: the trained policy as a plain Hugging Face directory.

`<checkpoint>` is a single-process `last.ckpt` file or a sharded DeepSpeed ZeRO-3 checkpoint directory (its shards
are consolidated with DeepSpeed's `zero_to_fp32`). `<out_dir>` gets safetensors weights, `config.json`, the
tokenizer (with its chat template) and `generation_config.json`, taken from the base model the run started from
(recorded in the checkpoint's hyper-parameters; `--base` overrides it), so `AutoModelForCausalLM.from_pretrained`
and vLLM load it directly. The directory is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel

from medzero_pl.models import _DTYPES, resolve_model

POLICY_PREFIX = "policy."


def policy_state(checkpoint: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The policy's weights (names as in the Hugging Face model) and the run's hyper-parameters."""
    path = Path(checkpoint)
    if path.is_dir():
        from medzero_pl.strategies.deepspeed import zero_checkpoint_state_dict

        state, meta = zero_checkpoint_state_dict(path)
        hparams = meta.get("hyper_parameters", {})
    elif path.is_file():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state, hparams = ckpt["state_dict"], ckpt.get("hyper_parameters", {})
    else:
        raise FileNotFoundError(f"{path}: no such checkpoint file or directory")
    weights = {k[len(POLICY_PREFIX) :]: v for k, v in state.items() if k.startswith(POLICY_PREFIX)}
    if not weights:
        raise ValueError(f"{path} holds no '{POLICY_PREFIX}*' weights: not a medzero_pl checkpoint")
    return weights, hparams


def build_policy(checkpoint: str | Path, base: str | None = None) -> tuple[PreTrainedModel, str]:
    """The trained policy as a transformers model, and the local directory of the base model it started from."""
    weights, hparams = policy_state(checkpoint)
    model_hparams = hparams.get("model", {})
    name = base or model_hparams.get("name_or_path")
    if not name:
        raise ValueError("the checkpoint does not record its base model: pass --base <model dir or alias>")
    source = resolve_model(name)
    dtype = _DTYPES[model_hparams.get("dtype", "float32")]
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source), dtype=dtype)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {k for k in missing if model.config.tie_word_embeddings and k.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise ValueError(f"checkpoint does not match {name}: missing {sorted(missing)}, unexpected {unexpected}")
    model.tie_weights()
    try:
        model.generation_config = GenerationConfig.from_pretrained(source)
    except OSError:
        model.generation_config = GenerationConfig.from_model_config(model.config)
    return model.eval(), source


def export(checkpoint: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Write the Hugging Face directory and return its path."""
    model, source = build_policy(checkpoint, base)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medzero_pl.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt file or a DeepSpeed checkpoint directory")
    parser.add_argument("out_dir", help="the Hugging Face directory to write")
    parser.add_argument("--base", default=None, help="base model (default: the one recorded in the checkpoint)")
    args = parser.parse_args(argv)
    print(export(args.checkpoint, args.out_dir, args.base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
