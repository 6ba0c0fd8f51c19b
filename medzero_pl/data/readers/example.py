"""This project's own lossless JSONL dump of :class:`Example` fields: written by :func:`write_examples`, read back
by the ``example`` format."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medzero_pl.data.readers.fields import gold_letter_field, parse_options, require_field, string_field
from medzero_pl.data.readers.rows import read_rows
from medzero_pl.data.records import DataFormatError, Example

EXAMPLE_FIELDS = ("id", "source", "question", "options", "answer", "diagnoses", "metadata")


def example_to_dict(example: Example) -> dict[str, Any]:
    """The JSON-ready fields of an Example, in the ``example`` format :func:`read_example` reads back."""
    return {
        "id": example.id,
        "source": example.source,
        "question": example.question,
        "options": dict(example.options),
        "answer": example.answer,
        "diagnoses": list(example.diagnoses),
        "metadata": example.metadata,
    }


def write_examples(path: str | Path, examples: Iterable[Example]) -> int:
    """Write Examples as ``example``-format JSONL (UTF-8, one object per line); returns how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example_to_dict(example), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_example(path: Path, *, source: str | None = None) -> list[Example]:
    """This project's ``example`` JSONL; each row keeps its stored source unless ``source`` overrides it."""
    examples = []
    for where, row in read_rows(path):
        unknown = set(row) - set(EXAMPLE_FIELDS)
        if unknown:
            raise DataFormatError(path, where, sorted(unknown)[0], f"only the Example fields {list(EXAMPLE_FIELDS)}")
        question = string_field(path, where, row, "question")
        options = parse_options(path, where, row["options"]) if row.get("options") else {}
        diagnoses = row.get("diagnoses") or []
        if not isinstance(diagnoses, list) or not all(isinstance(d, str) and d for d in diagnoses):
            raise DataFormatError(path, where, "diagnoses", "a list of non-empty diagnosis names")
        answer = gold_letter_field(path, where, row, "answer", options) if options else None
        if not options and not diagnoses:
            raise DataFormatError(path, where, "options", "options and an answer, or gold diagnoses")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise DataFormatError(path, where, "metadata", f"a JSON object, got {type(metadata).__name__}")
        examples.append(
            Example(
                id=str(require_field(path, where, row, "id")),
                source=source or string_field(path, where, row, "source"),
                question=question,
                options=options,
                answer=answer,
                diagnoses=tuple(diagnoses),
                metadata=metadata,
            )
        )
    return examples
