"""MedXpertQA in its Hugging Face and eval-input layouts, and eval inputs whose choices are inlined in the question.

``medxpertqa`` (alias ``eval_input``)
    MedXpertQA on Hugging Face (``options`` a dict A-J, ``label`` a letter), the MedXpertQA repo's
    ``eval/data/*/input`` files (``options`` a list of ``{letter, content}``, ``label`` a one-letter list) and
    the same eval-input layout without ``options``, where the choices exist only inlined at the end of the
    question as ``"\\nAnswer Choices: (A) ... (B) ..."`` (MedQA, MedMCQA and MMLU copies in that repo).
    The inlined suffix is always cut from the question, so one item read from any of these layouts gives
    the same question, options and answer. Option ``skip_images=True`` drops rows that need images.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medzero_pl.data.readers.fields import (
    LETTERS,
    extras,
    gold_letter_field,
    mcq_example,
    nonempty,
    parse_options,
    row_id,
    source_label,
    string_field,
)
from medzero_pl.data.readers.rows import read_rows
from medzero_pl.data.records import DataFormatError, Example

log = logging.getLogger(__name__)

INLINE_CHOICES_MARK = "\nAnswer Choices:"


def split_inline_choices(question: str) -> tuple[str, dict[str, str] | None]:
    """Cut a trailing ``"\\nAnswer Choices: (A) x (B) y"`` off a question and parse it into options.

    Letters are searched in sequence ((A), then (B) after it, ...), which parses every row of the MedXpertQA
    eval inputs identically to their explicit option lists. Returns ``(question, None)`` if there is no suffix.
    """
    start = question.rfind(INLINE_CHOICES_MARK)
    if start < 0:
        return question, None
    tail = question[start + len(INLINE_CHOICES_MARK) :]
    if not tail.startswith(" (A) "):
        return question, None
    bounds: list[tuple[str, int, int]] = []  # (letter, start of marker, start of text)
    for letter in LETTERS:
        marker = f" ({letter}) "
        at = 0 if letter == "A" else tail.find(marker, bounds[-1][2])
        if at < 0:
            break
        bounds.append((letter, at, at + len(marker)))
    options = {
        letter: tail[text_start : bounds[i + 1][1] if i + 1 < len(bounds) else len(tail)].strip()
        for i, (letter, _, text_start) in enumerate(bounds)
    }
    return question[:start], options


def read_medxpertqa(path: Path, *, source: str | None = None, skip_images: bool = False) -> list[Example]:
    """MedXpertQA HF layout, its eval-input layout, and eval inputs with choices only inlined in the question.

    Example row (medxpertqa_mm_input.jsonl, shortened)::

        {"id": "MM-0", "question": "A 26-year-old man falls ...\\nAnswer Choices: (A) Lateral ... (E) Medial ...",
         "options": [{"letter": "A", "content": "Lateral ..."}, ...], "label": ["A"],
         "images": [{"image_path": "MM-0-a.jpeg"}], "medical_task": "Treatment", "body_system": "Skeletal",
         "question_type": "Reasoning"}

    Image paths stay in ``metadata["images"]``; the images themselves are not read. With ``skip_images=True``
    rows that have images are dropped, and how many is logged.
    """
    label = source_label(path, source)
    examples, skipped = [], 0
    for i, (where, row) in enumerate(read_rows(path)):
        if skip_images and row.get("images"):
            skipped += 1
            continue
        question, inline = split_inline_choices(string_field(path, where, row, "question"))
        if row.get("options"):
            options = parse_options(path, where, row["options"])
        elif inline is not None:
            options = inline
        else:
            raise DataFormatError(
                path, where, "options", "an 'options' field, or choices inlined as '\\nAnswer Choices: (A) ... (B) ...'"
            )
        if len(options) < 2:
            raise DataFormatError(path, where, "question", f"at least 2 inlined answer choices, got {len(options)}")
        examples.append(
            mcq_example(
                path,
                where,
                id=row_id(row, "id", label, i),
                source=label,
                question=question,
                options=options,
                answer=gold_letter_field(path, where, row, "label", options),
                metadata=extras(row, ("id", "question", "options", "label")),
            )
        )
    if skipped:
        log.warning(
            "%s: skipped %d of %d rows that need images (skip_images=True)", path, skipped, skipped + len(examples)
        )
        nonempty(path, examples, "images", "skip_images=True (every row has images)")
    return examples
