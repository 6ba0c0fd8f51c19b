"""PubMedQA PQA-L as a three-option (yes / no / maybe) question over the abstract.

``pubmedqa``
    PubMedQA ``ori_pqal.json`` (``{PMID: {QUESTION, CONTEXTS, final_decision, ...}}``) as a 3-option
    question A/B/C = yes/no/maybe whose text is the abstract's contexts followed by the question. Option
    ``ground_truth=`` (a ``test_ground_truth.json`` path) keeps only the official 500-PMID test split.
    The 1000-item variant ``PubMedQA_test.json`` is HuatuoGPT layout: read it with ``huatuo``.
"""

from __future__ import annotations

from pathlib import Path

from medzero_pl.data.readers.fields import extras, mcq_example, require_field, source_label, string_field
from medzero_pl.data.readers.rows import read_json, resolve_path
from medzero_pl.data.records import DataFormatError, Example

PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def read_pubmedqa(path: Path, *, source: str | None = None, ground_truth: str | Path | None = None) -> list[Example]:
    """PubMedQA PQA-L ``ori_pqal.json`` as A/B/C = yes/no/maybe; ``ground_truth`` restricts it to the official test.

    The question is the abstract's contexts joined by spaces, a blank line, then the question: the contexts
    part is character-for-character what HuatuoGPT-o1 puts before its instruction line in PubMedQA_test.json.
    """
    label = source_label(path, source)
    document = read_json(path)
    if not isinstance(document, dict):
        raise DataFormatError(path, None, None, f"a JSON object keyed by PMID, got a JSON {type(document).__name__}")
    wanted: dict[str, str | None] = {pmid: None for pmid in document}
    if ground_truth is not None:
        truth_path = resolve_path(ground_truth)
        if not truth_path.is_file():
            raise DataFormatError(truth_path, None, "ground_truth", "an existing test_ground_truth.json file")
        truth = read_json(truth_path)
        if not isinstance(truth, dict):
            raise DataFormatError(truth_path, None, None, "a JSON object {PMID: yes|no|maybe}")
        for pmid in truth:
            if pmid not in document:
                raise DataFormatError(truth_path, f"PMID {pmid}", None, f"a PMID present in {path.name}")
        wanted = dict(truth)
    answers = {text: letter for letter, text in PUBMEDQA_OPTIONS.items()}
    examples = []
    for pmid, gold in wanted.items():
        where = f"PMID {pmid}"
        row = document[pmid]
        if not isinstance(row, dict):
            raise DataFormatError(path, where, None, f"a JSON object, got {type(row).__name__}")
        contexts = require_field(path, where, row, "CONTEXTS")
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise DataFormatError(path, where, "CONTEXTS", "a list of strings")
        decision = gold if gold is not None else require_field(path, where, row, "final_decision")
        if decision not in answers:
            if gold is None:
                raise DataFormatError(path, where, "final_decision", f"one of yes/no/maybe, got {decision!r}")
            raise DataFormatError(resolve_path(ground_truth), where, None, f"a label yes/no/maybe, got {decision!r}")
        question = " ".join(contexts) + "\n\n" + string_field(path, where, row, "QUESTION")
        metadata = {"pmid": pmid, **extras(row, ("QUESTION", "CONTEXTS", "final_decision"))}
        examples.append(
            mcq_example(
                path,
                where,
                id=pmid,
                source=label,
                question=question,
                options=dict(PUBMEDQA_OPTIONS),
                answer=answers[decision],
                metadata=metadata,
            )
        )
    return examples
