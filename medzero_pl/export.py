"""`python -m medzero_pl.export <checkpoint> <out_dir>`: the trained policy as a plain Hugging Face directory.

`<checkpoint>` is a single-process `last.ckpt` file or a sharded DeepSpeed ZeRO-3 checkpoint directory (its shards
are consolidated with DeepSpeed's `zero_to_fp32`). `<out_dir>` gets safetensors weights, `config.json`, the
tokenizer (with its chat template) and `generation_config.json`, taken from the base model the run started from
(recorded in the checkpoint's hyper-parameters; `--base` overrides it), so `AutoModelForCausalLM.from_pretrained`
and vLLM load it directly.

A LoRA run (`model.lora.r > 0`) is exported with its adapters merged into the base weights; `--adapter` writes the
adapter alone (`adapter_config.json`, `adapter_model.safetensors`, naming the base model) with the tokenizer, which
`peft.PeftModel.from_pretrained` and `python -m medzero_pl.eval --model <out_dir>` read.

Nothing is deleted that export did not write: the directory is written under a staging name beside `<out_dir>` and
renamed into place; an existing `<out_dir>` is replaced only if it is an earlier export (it holds `EXPORT_MARKER`)
or `--overwrite` is given, and never if it is the working directory, one of its ancestors, the home directory or
a folder that holds the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from transformers import AutoTokenizer

from medzero_pl.checkpoints import load_policy
from medzero_pl.errors import UserError, report_user_errors
from medzero_pl.model.loading import resolve_model
from medzero_pl.model.lora import has_adapters

EXPORT_MARKER = "medzero_export.json"


class ExportError(UserError):
    """The output path cannot be written without destroying something export did not write."""


def check_destination(out_dir: str | Path, checkpoint: str | Path, overwrite: bool = False) -> None:
    """Refuse an output path whose replacement would delete the user's work; say how to proceed instead."""
    out = Path(out_dir).absolute()
    real = out.resolve()
    protected = {Path.cwd().resolve(): "the working directory or one of its ancestors", Path.home().resolve(): "home"}
    for place, what in protected.items():
        if place == real or place.is_relative_to(real):
            raise ExportError(f"out_dir={out_dir}: is {what}; export into a new directory")
    ckpt = Path(checkpoint).absolute()
    if any(c == real or c.is_relative_to(real) for c in (ckpt, ckpt.resolve())):
        raise ExportError(f"out_dir={out_dir}: holds the checkpoint {checkpoint}; export into a new directory")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        if overwrite and not out.is_dir():
            return
        raise ExportError(f"out_dir={out_dir}: exists and is not a directory; choose a new path")
    if overwrite or not any(out.iterdir()) or (out / EXPORT_MARKER).is_file():
        return
    raise ExportError(
        f"out_dir={out_dir}: exists and is not an earlier export (no {EXPORT_MARKER}); choose a new directory or "
        "pass --overwrite to replace it"
    )


def export(
    checkpoint: str | Path, out_dir: str | Path, base: str | None = None, overwrite: bool = False, adapter: bool = False
) -> Path:
    """Write the Hugging Face directory (a LoRA run's adapter alone with `adapter`) and return its path."""
    out = Path(out_dir)
    check_destination(out, checkpoint, overwrite)
    model, name = load_policy(checkpoint, base, merge=not adapter)
    if adapter and not has_adapters(model):
        raise UserError(f"--adapter: {checkpoint} is not a LoRA run (model.lora.r is 0); export it without --adapter")
    source = resolve_model(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.export-{uuid.uuid4().hex[:8]}")
    staged.mkdir()  # mode from the user's umask, as any other output
    try:
        model.save_pretrained(staged, safe_serialization=True)
        AutoTokenizer.from_pretrained(source).save_pretrained(staged)
        (staged / EXPORT_MARKER).write_text(json.dumps({"checkpoint": str(Path(checkpoint).absolute()), "base": name}))
        _replace(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def _replace(staged: Path, out: Path) -> None:
    """Rename `staged` to `out`; what was at `out` (already checked) goes only once the new one is in place."""
    old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    if out.exists() or out.is_symlink():
        os.rename(out, old)
    try:
        os.rename(staged, out)
    except OSError:
        if old.exists() or old.is_symlink():
            os.rename(old, out)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    elif old.exists() or old.is_symlink():
        old.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medzero_pl.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt file or a DeepSpeed checkpoint directory")
    parser.add_argument("out_dir", help="the Hugging Face directory to write (new, empty, or an earlier export)")
    parser.add_argument("--base", default=None, help="base model (default: the one recorded in the checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing out_dir that is not an export")
    parser.add_argument("--adapter", action="store_true", help="a LoRA run's adapter alone (default: merged weights)")
    args = parser.parse_args(argv)

    def run() -> int:
        print(export(args.checkpoint, args.out_dir, args.base, args.overwrite, args.adapter))
        return 0

    return report_user_errors(run)


if __name__ == "__main__":
    sys.exit(main())
