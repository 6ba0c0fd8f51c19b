"""MedQA-USMLE JSONL and the HuatuoGPT-o1 evaluation bundle, whose per-record keys are MedQA's.

``medqa``
    MedQA-USMLE JSONL, 4 or 5 options: ``{"question", "options": {"A": ...}, "answer_idx": "B", "answer",
    "meta_info", ...}``. The per-record keys of the HuatuoGPT-o1 evaluation bundle are the same.
``huatuo``
    The HuatuoGPT-o1 evaluation bundle ``eval_data.json`` (``{"MedQA_USLME_test": [records], ...}``) or one
    of its per-benchmark splits (a JSON list of ``{question, options, answer_idx, answer}``).
    Option ``subset=`` picks one key of the bundle; without it every key is read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medzero_pl.data.readers.fields import (
    extras,
    gold_letter_field,
    mcq_example,
    parse_options,
    require_field,
    row_id,
    source_label,
    string_field,
)
from medzero_pl.data.readers.rows import Row, numbered_records, read_json, read_rows
from medzero_pl.data.records import DataFormatError, Example

log = logging.getLogger(__name__)


def medqa_record(path: Path, where: Any, row: dict[str, Any], *, source: str, index: int) -> Example:
    options = parse_options(path, where, require_field(path, where, row, "options"))
    return mcq_example(
        path,
        where,
        id=row_id(row, "id", source, index),
        source=source,
        question=string_field(path, where, row, "question"),
        options=options,
        answer=gold_letter_field(path, where, row, "answer_idx", options),
        # "answer" (the gold text) is options[answer_idx] again, so it is not kept twice.
        metadata=extras(row, ("id", "question", "options", "answer_idx", "answer")),
    )


def read_medqa(path: Path, *, source: str | None = None) -> list[Example]:
    """MedQA-USMLE JSONL (``answer_idx`` letter; ``meta_info`` and other fields kept in metadata).

    Example row (phrases_no_exclude_test.jsonl, shortened)::

        {"question": "A junior orthopaedic surgery resident ...", "answer": "Tell the attending ...",
         "options": {"A": "...", "B": "Tell the attending ...", "C": "...", "D": "..."},
         "meta_info": "step1", "answer_idx": "B", "metamap_phrases": [...]}
    """
    label = source_label(path, source)
    rows = read_rows(path)
    _report_answer_mismatches(path, rows)
    return [medqa_record(path, where, row, source=label, index=i) for i, (where, row) in enumerate(rows)]


def _report_answer_mismatches(path: Path, rows: list[Row]) -> None:
    """MedQA rows carry the gold text twice (``answer`` and ``options[answer_idx]``); say where they disagree."""
    bad = []
    for where, row in rows:
        options, letter, text = row.get("options"), row.get("answer_idx"), row.get("answer")
        known = isinstance(options, dict) and isinstance(text, str) and letter in options
        if known and " ".join(str(options[letter]).split()) != " ".join(text.split()):
            bad.append(where)
    if bad:
        log.warning(
            "%s: %d rows whose 'answer' text differs from options[answer_idx] (answer_idx is used), first at line %s",
            path,
            len(bad),
            bad[0],
        )


def read_huatuo(path: Path, *, source: str | None = None, subset: str | None = None) -> list[Example]:
    """HuatuoGPT-o1 evaluation bundle: ``{subset: [records]}`` or one list of ``{question, options, answer_idx}``.

    Examples read from a bundle carry their subset name in ``metadata["subset"]``.
    """
    label = source_label(path, source)
    document = read_json(path) if path.suffix.lower() == ".json" else read_rows(path)
    if isinstance(document, dict):
        if subset is not None and subset not in document:
            raise DataFormatError(path, None, "subset", f"one of the bundle's keys {sorted(document)}, got {subset!r}")
        names = [subset] if subset is not None else list(document)
        examples = []
        for name in names:
            for where, row in numbered_records(path, document[name], prefix=f"'{name}' record"):
                example = medqa_record(path, where, row, source=label, index=len(examples))
                example.metadata["subset"] = name
                examples.append(example)
        return examples
    if subset is not None:
        raise DataFormatError(path, None, "subset", f"a bundle {{name: [records]}} to pick '{subset}' from, got a list")
    rows = numbered_records(path, document)
    return [medqa_record(path, where, row, source=label, index=i) for i, (where, row) in enumerate(rows)]
