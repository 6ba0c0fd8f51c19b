"""Raw MedMCQA rows (``opa``..``opd`` and the 1-based correct option ``cop``).

``medmcqa``
    Raw MedMCQA JSONL ``{"question", "opa".."opd", "cop", "exp", "subject_name", "topic_name", ...}`` with
    ``cop`` 1-4 (1 = opa). Hugging Face exports number from 0: pass ``cop_base=0``; it is never guessed.
"""

from __future__ import annotations

from pathlib import Path

from medzero_pl.data.readers.fields import (
    extras,
    mcq_example,
    option_text,
    require_field,
    row_id,
    source_label,
    string_field,
)
from medzero_pl.data.readers.rows import read_rows
from medzero_pl.data.records import DataFormatError, Example


def read_medmcqa(path: Path, *, source: str | None = None, cop_base: int = 1) -> list[Example]:
    """Raw MedMCQA rows; ``cop`` is 1-4 (1 = opa) unless ``cop_base=0`` says the file numbers from 0.

    Example row (raw dev.json layout)::

        {"question": "Which of the following is not true for myelinated nerve fibers:", "opa": "...", "opb": "...",
         "opc": "...", "opd": "...", "cop": 1, "exp": null, "subject_name": "Physiology", "topic_name": null,
         "id": "45258d3d-...", "choice_type": "multi"}
    """
    if cop_base not in (0, 1):
        raise ValueError(f"cop_base must be 1 (raw MedMCQA, 1 = opa) or 0 (Hugging Face exports), got {cop_base!r}")
    label = source_label(path, source)
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        options = {
            letter: option_text(path, where, key, require_field(path, where, row, key))
            for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"), strict=True)
        }
        cop = require_field(path, where, row, "cop")
        if isinstance(cop, str) and cop.strip().isdigit():
            cop = int(cop)
        if isinstance(cop, bool) or not isinstance(cop, int) or not cop_base <= cop <= cop_base + 3:
            expected = "1-4 (1 = opa); a 0-3 export needs cop_base=0" if cop_base == 1 else "0-3 (0 = opa)"
            raise DataFormatError(path, where, "cop", f"an integer {expected}, got {cop!r}")
        examples.append(
            mcq_example(
                path,
                where,
                id=row_id(row, "id", label, i),
                source=label,
                question=string_field(path, where, row, "question"),
                options=options,
                answer="ABCD"[cop - cop_base],
                metadata=extras(row, ("id", "question", "opa", "opb", "opc", "opd", "cop")),
            )
        )
    return examples
