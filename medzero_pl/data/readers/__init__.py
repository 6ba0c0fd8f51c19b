"""One reader per published benchmark layout, each turning raw rows into :class:`Example` records.

Every reader has the signature ``reader(path, *, source, **options) -> list[Example]`` and is registered by
format name in :data:`READERS`; :func:`read_examples` is the one entry point (it resolves the path, checks
the options against the reader's signature and refuses an empty result).

Format names, each with the module that reads it and describes the layouts it accepts (all checked on the real
files described in shared/data/README.md):

- ``medqa`` and ``huatuo`` (:mod:`.medqa`): MedQA-USMLE JSONL; the HuatuoGPT-o1 evaluation bundle or one of its splits.
- ``medxpertqa``, alias ``eval_input`` (:mod:`.medxpertqa`): MedXpertQA's Hugging Face and eval-input layouts, also
  with the choices only inlined in the question.
- ``medmcqa`` (:mod:`.medmcqa`): raw MedMCQA (``cop`` 1-4; ``cop_base=0`` for Hugging Face exports).
- ``pubmedqa`` (:mod:`.pubmedqa`): PubMedQA ``ori_pqal.json`` as yes/no/maybe, optionally the official test split.
- ``mmlu_pro`` (:mod:`.mmlu_pro`): MMLU-Pro rows or its HuatuoGPT layout, optionally filtered by category.
- ``gpqa`` (:mod:`.gpqa`): GPQA CSV, the answers shuffled into A-D per row with a fixed seed.
- ``rarearena`` (:mod:`.rarearena`): RareArena RDC/RDS diagnosis cases.
- ``example`` (:mod:`.example`): this project's own lossless JSONL dump of :class:`Example` fields.

Raw rows come from :mod:`~medzero_pl.data.readers.rows` (``.jsonl``, ``.json``, ``.parquet``, ``.csv`` and the
``medzero_pl:`` package prefix) and are checked field by field with :mod:`~medzero_pl.data.readers.fields`, so every
error names the file, the line or record, and the field.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medzero_pl.data.readers.example import EXAMPLE_FIELDS, example_to_dict, read_example, write_examples
from medzero_pl.data.readers.gpqa import read_gpqa
from medzero_pl.data.readers.medmcqa import read_medmcqa
from medzero_pl.data.readers.medqa import read_huatuo, read_medqa
from medzero_pl.data.readers.medxpertqa import read_medxpertqa, split_inline_choices
from medzero_pl.data.readers.mmlu_pro import read_mmlu_pro
from medzero_pl.data.readers.pubmedqa import read_pubmedqa
from medzero_pl.data.readers.rarearena import read_rarearena
from medzero_pl.data.readers.rows import PACKAGE_PREFIX, read_rows, read_text, resolve_path
from medzero_pl.data.records import DataFormatError, Example

Reader = Callable[..., list[Example]]

READERS: dict[str, Reader] = {
    "medqa": read_medqa,
    "huatuo": read_huatuo,
    "medxpertqa": read_medxpertqa,
    "eval_input": read_medxpertqa,
    "medmcqa": read_medmcqa,
    "pubmedqa": read_pubmedqa,
    "mmlu_pro": read_mmlu_pro,
    "gpqa": read_gpqa,
    "rarearena": read_rarearena,
    "example": read_example,
}


def reader_options(format: str) -> list[str]:
    """The keyword options a format's reader accepts besides ``source``."""
    if format not in READERS:
        raise ValueError(f"unknown data format {format!r}; known formats: {sorted(READERS)}")
    parameters = inspect.signature(READERS[format]).parameters
    return [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY and name != "source"]


def read_examples(path: str | Path, format: str, *, source: str | None = None, **options: Any) -> list[Example]:
    """Read one benchmark file into Examples with the reader registered for ``format``.

    Args:
        path: The file, or ``medzero_pl:<path>`` for a file shipped in the package.
        format: A key of :data:`READERS`.
        source: The label stored on every Example (default: the file's stem; ``example`` files keep theirs).
        **options: The reader's own keyword options, e.g. ``cop_base=0`` or ``categories=["health"]``.
            An option the reader does not take is refused here rather than ignored.

    Raises:
        DataFormatError: The file is missing or malformed, or yields no examples.
        ValueError: Unknown format or option.
    """
    allowed = reader_options(format)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"format {format!r} has no option(s) {unknown}; it accepts {allowed or 'none'}")
    resolved = resolve_path(path)
    if not resolved.is_file():
        what = "a file, got a directory" if resolved.is_dir() else "file not found (expected an existing data file)"
        raise DataFormatError(resolved, None, None, what)
    examples = READERS[format](resolved, source=source, **options)
    if not examples:
        raise DataFormatError(resolved, None, None, f"at least one {format} record, got an empty file")
    return examples


__all__ = [
    "EXAMPLE_FIELDS",
    "PACKAGE_PREFIX",
    "READERS",
    "Reader",
    "example_to_dict",
    "read_example",
    "read_examples",
    "read_gpqa",
    "read_huatuo",
    "read_medmcqa",
    "read_medqa",
    "read_medxpertqa",
    "read_mmlu_pro",
    "read_pubmedqa",
    "read_rarearena",
    "read_rows",
    "read_text",
    "reader_options",
    "resolve_path",
    "split_inline_choices",
    "write_examples",
]
