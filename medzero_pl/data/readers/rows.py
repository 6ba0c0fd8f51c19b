"""Raw rows of a data file, each paired with where it is (a line number or ``record 3``) so errors can name it.

Files may be ``.jsonl`` (parsed line by line so errors name the line), ``.json`` (a document, or JSON lines
under a ``.json`` name as RareArena and MedMCQA ship them), ``.parquet`` (via ``datasets``) or ``.csv``.
A path ``medzero_pl:<relative path>`` names a file shipped inside the package (see :func:`resolve_path`).
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
from pathlib import Path
from typing import Any

from medzero_pl.data.records import DataFormatError

PACKAGE_PREFIX = "medzero_pl:"

Row = tuple[Any, dict[str, Any]]  # (where, raw row): where is a 1-based JSONL line number or e.g. "record 3"


class _JsonLines(list):
    """Rows parsed from JSON lines, already paired with their line numbers."""


def resolve_path(path: str | Path) -> Path:
    """Turn ``medzero_pl:data/demo/x.jsonl`` into the file inside the installed package; expand ``~`` otherwise.

    The prefix lets recipes name the demo data shipped with the package without knowing where it is installed.
    """
    text = str(path)
    if text.startswith(PACKAGE_PREFIX):
        return Path(str(importlib.resources.files("medzero_pl"))) / text[len(PACKAGE_PREFIX) :]
    return Path(text).expanduser()


def _json_lines(path: Path, text: str) -> list[Row]:
    rows: list[Row] = _JsonLines()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, number, None, f"malformed JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(row, dict):
            raise DataFormatError(path, number, None, f"a JSON object per line, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark; anything else names the line it breaks on."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataFormatError(
            path,
            line,
            None,
            f"UTF-8 text (byte 0x{data[error.start]:02x} is not valid UTF-8; re-save the file as UTF-8)",
        ) from None


def read_json(path: Path) -> Any:
    """A whole JSON document, or the rows of a JSON-lines file that carries a ``.json`` name."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # several documents: JSON lines (RareArena's RDC.json, MedMCQA's dev.json)
            return _json_lines(path, text)
        raise DataFormatError(
            path, error.lineno, None, f"malformed JSON ({error.msg} at column {error.colno})"
        ) from None


def numbered_records(path: Path, document: Any, *, prefix: str = "record") -> list[Row]:
    """Number the records of a JSON list; pass rows that already carry their line numbers through."""
    if not isinstance(document, list):
        raise DataFormatError(
            path, None, None, f"a list of records or JSON lines, got a JSON {type(document).__name__}"
        )
    if isinstance(document, _JsonLines):
        return document
    rows: list[Row] = []
    for index, row in enumerate(document):
        if not isinstance(row, dict):
            raise DataFormatError(path, f"{prefix} {index}", None, f"a JSON object, got {type(row).__name__}")
        rows.append((f"{prefix} {index}", row))
    return rows


def _csv_rows(path: Path) -> list[Row]:
    """CSV rows located by the file line they start on (GPQA's quoted cells span several lines).

    The csv module, not pandas, so cells stay strings: an empty answer is "", not NaN.
    """
    rows: list[Row] = []
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))  # spreadsheet exports start with a BOM
    start = 2  # line 1 is the header
    for row in reader:
        rows.append((start, dict(row)))
        start = reader.line_num + 1
    return rows


def read_rows(path: Path) -> list[Row]:
    """The raw rows of a ``.jsonl``, ``.json`` (list or JSON lines), ``.parquet`` or ``.csv`` file with locations."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _json_lines(path, read_text(path))
    if suffix == ".json":
        return numbered_records(path, read_json(path))
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix == ".parquet":
        import datasets  # imported here: it is slow to import and only parquet needs it

        table = datasets.load_dataset("parquet", data_files=str(path), split="train")
        return [(f"record {index}", dict(row)) for index, row in enumerate(table)]
    raise DataFormatError(path, None, None, f"a .jsonl, .json, .parquet or .csv file, got '{suffix}'")
