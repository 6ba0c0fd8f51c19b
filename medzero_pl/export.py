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

from transformers import AutoTokenizer

from medzero_pl.checkpoints import load_policy
from medzero_pl.models import resolve_model


def export(checkpoint: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Write the Hugging Face directory and return its path."""
    model, name = load_policy(checkpoint, base)
    source = resolve_model(name)
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
