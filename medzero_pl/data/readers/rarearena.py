"""RareArena diagnosis cases (RDC / RDS), the open-ended diagnosis format.

``rarearena``
    RareArena RDC/RDS JSONL ``{_id, case_report, test_results?, diagnosis, Orpha_name, Orpha_id, age,
    gender, pub_date}``: a diagnosis case whose gold names are the unique {diagnosis, Orpha_name}.
    The question is ``case_report + " " + test_results`` (RareArena's RDC input); option
    ``include_test_results=False`` gives the RDS-style case report alone.
"""

from __future__ import annotations

from pathlib import Path

from medzero_pl.data.readers.fields import extras, row_id, source_label, string_field
from medzero_pl.data.readers.rows import read_rows
from medzero_pl.data.records import DataFormatError, Example


def read_rarearena(path: Path, *, source: str | None = None, include_test_results: bool = True) -> list[Example]:
    """RareArena RDC/RDS cases as diagnosis examples whose gold names are the unique {diagnosis, Orpha_name}.

    The question is ``case_report + " " + test_results`` as RareArena's RDC evaluation and DiagnosisZero's
    ``make_dataset.py`` build it; ``include_test_results=False`` (RDS-style) keeps the results in metadata.

    Example row (RDC_synthetic.jsonl, shortened)::

        {"_id": "SYN-0002", "case_report": "A 16-year-old girl ...", "test_results": "ALT 112 U/L, ...",
         "diagnosis": "Wilson's disease", "Orpha_name": "Wilson disease", "Orpha_id": "905",
         "age": [16, "year"], "gender": "Female", "pub_date": "synthetic"}
    """
    label = source_label(path, source)
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        question = string_field(path, where, row, "case_report").strip()
        results = row.get("test_results")
        if results is not None and not isinstance(results, str):
            raise DataFormatError(path, where, "test_results", f"a string, got {type(results).__name__}")
        consumed = ["_id", "case_report", "diagnosis", "Orpha_name"]
        if include_test_results and results and results.strip():
            question = f"{question} {results.strip()}"
            consumed.append("test_results")
        names = [string_field(path, where, row, "diagnosis").strip()]
        orpha_name = row.get("Orpha_name")
        if isinstance(orpha_name, str) and orpha_name.strip():
            names.append(orpha_name.strip())
        metadata = extras(row, consumed)
        if isinstance(orpha_name, str):
            metadata["orpha_name"] = orpha_name
        examples.append(
            Example(
                id=row_id(row, "_id", label, i),
                source=label,
                question=question,
                diagnoses=tuple(dict.fromkeys(names)),
                metadata=metadata,
            )
        )
    return examples
