"""Checked fields of a raw row: each helper returns the value or raises a DataFormatError naming file, row and field.

Option texts lose surrounding whitespace in every layout (the MedQA originals have a few trailing spaces that
their inlined copies do not), so one item read from any layout compares equal; questions are kept as written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medzero_pl.data.records import DataFormatError, Example

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def require_field(path: Path, where: Any, row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None or value == "" or value == [] or value == {}:
        raise DataFormatError(path, where, name, "a required value, but it is missing or empty")
    return value


def string_field(path: Path, where: Any, row: dict[str, Any], name: str) -> str:
    value = require_field(path, where, row, name)
    if not isinstance(value, str):
        raise DataFormatError(path, where, name, f"a string, got {type(value).__name__}")
    return value


def option_text(path: Path, where: Any, name: str, value: Any) -> str:
    """An option's text without surrounding whitespace (5 MedQA options end in a space that its inline copy loses)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataFormatError(path, where, name, f"option text as a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise DataFormatError(path, where, name, "non-empty option texts")
    return text


def parse_options(path: Path, where: Any, value: Any, name: str = "options") -> dict[str, str]:
    """Options as an ordered letter -> text dict, from a dict, a list of ``{letter, content}`` or a list of texts."""
    if isinstance(value, dict):
        options = {str(letter): option_text(path, where, name, text) for letter, text in value.items()}
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        try:
            options = {str(item["letter"]): option_text(path, where, name, item["content"]) for item in value}
        except KeyError as missing:
            raise DataFormatError(
                path, where, name, f"a list of {{letter, content}} objects, one lacks {missing}"
            ) from None
    elif isinstance(value, list) and value:
        options = {LETTERS[i]: option_text(path, where, name, text) for i, text in enumerate(value)}
    else:
        raise DataFormatError(path, where, name, "a non-empty dict or list of answer options")
    if len(options) < 2:
        raise DataFormatError(path, where, name, f"at least 2 answer options, got {len(options)}")
    return options


def gold_letter_field(path: Path, where: Any, row: dict[str, Any], name: str, options: dict[str, str]) -> str:
    """The gold letter from a letter or a one-letter list (MedXpertQA eval inputs), checked against the options."""
    value = require_field(path, where, row, name)
    if isinstance(value, list):
        if len(value) != 1:
            raise DataFormatError(path, where, name, f"exactly one gold letter, got {value!r}")
        value = value[0]
    if not isinstance(value, str) or value.strip() not in options:
        raise DataFormatError(path, where, name, f"a letter among the options {list(options)}, got {value!r}")
    return value.strip()


def extras(row: dict[str, Any], consumed: Iterable[str]) -> dict[str, Any]:
    """Every field the Example does not hold, kept unchanged in its metadata so nothing is lost."""
    skip = set(consumed)
    return {key: value for key, value in row.items() if key not in skip}


def row_id(row: dict[str, Any], key: str, source: str, index: int) -> str:
    value = row.get(key)
    return str(value) if value not in (None, "") else f"{source}-{index}"


def mcq_example(
    path: Path,
    where: Any,
    *,
    id: str,
    source: str,
    question: str,
    options: dict[str, str],
    answer: str,
    metadata: dict[str, Any],
) -> Example:
    if not question.strip():
        raise DataFormatError(path, where, "question", "a non-empty question")
    return Example(id=id, source=source, question=question, options=options, answer=answer, metadata=metadata)


def nonempty(path: Path, examples: list[Example], field_name: str, what: str) -> list[Example]:
    if not examples:
        raise DataFormatError(path, None, field_name, f"at least one example after filtering by {what}, got none")
    return examples


def source_label(path: Path, source: str | None) -> str:
    return source or path.stem
