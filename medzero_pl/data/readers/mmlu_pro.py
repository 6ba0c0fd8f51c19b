"""MMLU-Pro rows, or MMLU-Pro in the HuatuoGPT-o1 bundle's layout.

``mmlu_pro``
    MMLU-Pro rows (``options`` a list of up to 10, ``answer`` letter, ``answer_index``, ``category``; "N/A"
    padding options dropped as the official evaluation does) or its HuatuoGPT layout (``options`` dict,
    ``answer_idx``). Option ``categories=[...]`` keeps those categories (the HuatuoGPT layout has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medzero_pl.data.readers.fields import (
    LETTERS,
    extras,
    gold_letter_field,
    mcq_example,
    nonempty,
    parse_options,
    require_field,
    row_id,
    source_label,
    string_field,
)
from medzero_pl.data.readers.medqa import medqa_record
from medzero_pl.data.readers.rows import read_rows
from medzero_pl.data.records import DataFormatError, Example


def read_mmlu_pro(path: Path, *, source: str | None = None, categories: Sequence[str] | None = None) -> list[Example]:
    """MMLU-Pro rows (options list, ``answer`` letter, ``answer_index``) or its HuatuoGPT layout (options dict).

    "N/A" options pad some rows to 10; they are dropped as in the official ``preprocess`` of MMLU-Pro's
    evaluation scripts, and the gold letter follows its text. ``categories`` keeps rows whose ``category``
    matches one of them case-insensitively (MMLU-Pro Medical in HuatuoGPT-o1 = biology + health).
    """
    label = source_label(path, source)
    keep = {c.lower() for c in categories} if categories is not None else None
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        if keep is not None:
            category = row.get("category")
            if not isinstance(category, str) or not category:
                raise DataFormatError(path, where, "category", "a category to filter on (HuatuoGPT rows have none)")
            if category.lower() not in keep:
                continue
        raw = require_field(path, where, row, "options")
        if isinstance(raw, dict):  # HuatuoGPT layout
            examples.append(medqa_record(path, where, row, source=label, index=i))
            continue
        if not isinstance(raw, list):
            raise DataFormatError(path, where, "options", f"a list or dict of options, got {type(raw).__name__}")
        listed = parse_options(path, where, raw)
        gold_letter = gold_letter_field(path, where, row, "answer", listed)
        index = row.get("answer_index")
        if index is not None and index != LETTERS.index(gold_letter):
            raise DataFormatError(
                path, where, "answer_index", f"{LETTERS.index(gold_letter)} to agree with 'answer' {gold_letter}"
            )
        if listed[gold_letter] == "N/A":
            raise DataFormatError(path, where, "answer", "a gold option other than the 'N/A' padding")
        kept = [letter for letter, text in listed.items() if text != "N/A"]
        options = {LETTERS[j]: listed[letter] for j, letter in enumerate(kept)}
        examples.append(
            mcq_example(
                path,
                where,
                id=row_id(row, "question_id", label, i),
                source=label,
                question=string_field(path, where, row, "question"),
                options=options,
                answer=LETTERS[kept.index(gold_letter)],
                metadata=extras(row, ("question_id", "question", "options", "answer", "answer_index")),
            )
        )
    if keep is not None:
        nonempty(path, examples, "category", f"categories={sorted(keep)}")
    return examples
