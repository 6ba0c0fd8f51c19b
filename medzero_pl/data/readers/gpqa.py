"""GPQA CSV, its four answers shuffled into A-D with a per-row seed.

``gpqa``
    GPQA CSV (``Question, Correct Answer, Incorrect Answer 1..3, Subdomain, High-level domain, Record ID``).
    The four answers are shuffled into A-D by a generator seeded with ``(seed, Record ID)``, so each row's
    order is fixed whatever the file order. Options ``domains=[...]`` and ``subdomains=[...]`` filter.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from medzero_pl.data.readers.fields import LETTERS, mcq_example, nonempty, require_field, source_label, string_field
from medzero_pl.data.readers.rows import read_rows
from medzero_pl.data.records import Example

GPQA_ANSWERS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


def read_gpqa(
    path: Path,
    *,
    source: str | None = None,
    seed: int = 0,
    domains: Sequence[str] | None = None,
    subdomains: Sequence[str] | None = None,
) -> list[Example]:
    """GPQA CSV; the correct and three incorrect answers are shuffled into A-D per row with a fixed seed.

    The shuffle is seeded with ``f"{seed}/{Record ID}"`` (the row index when there is no Record ID), so a
    row keeps its letters when rows are added, removed or reordered. ``domains`` filters on
    ``High-level domain`` and ``subdomains`` on ``Subdomain`` (exact, case-insensitive): HuatuoGPT-o1's
    "GPQA Medical" is ``domains=["Biology"]`` on gpqa_main.csv. Texts are stripped of surrounding whitespace.
    GPQA's authors ask that its questions never be published in plain text: do not commit converted rows.
    """
    label = source_label(path, source)
    keep_domains = {d.lower() for d in domains} if domains is not None else None
    keep_subdomains = {d.lower() for d in subdomains} if subdomains is not None else None
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        for name, keep in (("High-level domain", keep_domains), ("Subdomain", keep_subdomains)):
            if keep is not None and str(require_field(path, where, row, name)).strip().lower() not in keep:
                break
        else:
            texts = [string_field(path, where, row, name).strip() for name in GPQA_ANSWERS]
            record_id = str(row.get("Record ID") or "").strip() or str(i)
            order = list(range(len(texts)))
            random.Random(f"{seed}/{record_id}").shuffle(order)
            options = {LETTERS[j]: texts[k] for j, k in enumerate(order)}
            metadata = {
                "record_id": record_id,
                "subdomain": str(row.get("Subdomain") or "").strip(),
                "high_level_domain": str(row.get("High-level domain") or "").strip(),
                "shuffle_seed": seed,
            }
            examples.append(
                mcq_example(
                    path,
                    where,
                    id=record_id,
                    source=label,
                    question=string_field(path, where, row, "Question").strip(),
                    options=options,
                    answer=LETTERS[order.index(0)],
                    metadata=metadata,
                )
            )
    if keep_domains is not None or keep_subdomains is not None:
        nonempty(path, examples, "High-level domain/Subdomain", f"domains={domains}, subdomains={subdomains}")
    return examples
