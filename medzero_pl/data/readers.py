"""One reader per published benchmark layout, each turning raw rows into :class:`Example` records.

Every reader has the signature ``reader(path, *, source, **options) -> list[Example]`` and is registered by
format name in :data:`READERS`; :func:`read_examples` is the one entry point (it resolves the path, checks
the options against the reader's signature and refuses an empty result).

Format names and the layouts they accept (all checked on the real files described in shared/data/README.md):

``medqa``
    MedQA-USMLE JSONL, 4 or 5 options: ``{"question", "options": {"A": ...}, "answer_idx": "B", "answer",
    "meta_info", ...}``. The per-record keys of the HuatuoGPT-o1 evaluation bundle are the same.
``huatuo``
    The HuatuoGPT-o1 evaluation bundle ``eval_data.json`` (``{"MedQA_USLME_test": [records], ...}``) or one
    of its per-benchmark splits (a JSON list of ``{question, options, answer_idx, answer}``).
    Option ``subset=`` picks one key of the bundle; without it every key is read.
``medxpertqa`` (alias ``eval_input``)
    MedXpertQA on Hugging Face (``options`` a dict A-J, ``label`` a letter), the MedXpertQA repo's
    ``eval/data/*/input`` files (``options`` a list of ``{letter, content}``, ``label`` a one-letter list) and
    the same eval-input layout without ``options``, where the choices exist only inlined at the end of the
    question as ``"\\nAnswer Choices: (A) ... (B) ..."`` (MedQA, MedMCQA and MMLU copies in that repo).
    The inlined suffix is always cut from the question, so one item read from any of these layouts gives
    the same question, options and answer. Option ``skip_images=True`` drops rows that need images.
``medmcqa``
    Raw MedMCQA JSONL ``{"question", "opa".."opd", "cop", "exp", "subject_name", "topic_name", ...}`` with
    ``cop`` 1-4 (1 = opa). Hugging Face exports number from 0: pass ``cop_base=0``; it is never guessed.
``pubmedqa``
    PubMedQA ``ori_pqal.json`` (``{PMID: {QUESTION, CONTEXTS, final_decision, ...}}``) as a 3-option
    question A/B/C = yes/no/maybe whose text is the abstract's contexts followed by the question. Option
    ``ground_truth=`` (a ``test_ground_truth.json`` path) keeps only the official 500-PMID test split.
    The 1000-item variant ``PubMedQA_test.json`` is HuatuoGPT layout: read it with ``huatuo``.
``mmlu_pro``
    MMLU-Pro rows (``options`` a list of up to 10, ``answer`` letter, ``answer_index``, ``category``; "N/A"
    padding options dropped as the official evaluation does) or its HuatuoGPT layout (``options`` dict,
    ``answer_idx``). Option ``categories=[...]`` keeps those categories (the HuatuoGPT layout has none).
``gpqa``
    GPQA CSV (``Question, Correct Answer, Incorrect Answer 1..3, Subdomain, High-level domain, Record ID``).
    The four answers are shuffled into A-D by a generator seeded with ``(seed, Record ID)``, so each row's
    order is fixed whatever the file order. Options ``domains=[...]`` and ``subdomains=[...]`` filter.
``rarearena``
    RareArena RDC/RDS JSONL ``{_id, case_report, test_results?, diagnosis, Orpha_name, Orpha_id, age,
    gender, pub_date}``: a diagnosis case whose gold names are the unique {diagnosis, Orpha_name}.
    The question is ``case_report + " " + test_results`` (RareArena's RDC input); option
    ``include_test_results=False`` gives the RDS-style case report alone.
``example``
    This project's own lossless JSONL dump of :class:`Example` fields (see :func:`write_examples`).

Option texts lose surrounding whitespace in every layout (the MedQA originals have a few trailing spaces that
their inlined copies do not), so one item read from any layout compares equal; questions are kept as written.

Files may be ``.jsonl`` (parsed line by line so errors name the line), ``.json`` (a document, or JSON lines
under a ``.json`` name as RareArena and MedMCQA ship them), ``.parquet`` (via ``datasets``) or ``.csv``.
A path ``medzero_pl:<relative path>`` names a file shipped inside the package (see :func:`resolve_path`).
"""

from __future__ import annotations

import csv
import importlib.resources
import inspect
import io
import json
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from medzero_pl.data.records import DataFormatError, Example

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "medzero_pl:"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
INLINE_CHOICES_MARK = "\nAnswer Choices:"
PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}

Row = tuple[Any, dict[str, Any]]  # (where, raw row): where is a 1-based JSONL line number or e.g. "record 3"


class _JsonLines(list):
    """Rows parsed from JSON lines, already paired with their line numbers."""


# --------------------------------------------------------------------------- paths and raw rows


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


def _read_json(path: Path) -> Any:
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


def _records(path: Path, document: Any, *, prefix: str = "record") -> list[Row]:
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
        return _records(path, _read_json(path))
    if suffix == ".csv":
        return _csv_rows(path)
    if suffix == ".parquet":
        import datasets  # imported here: it is slow to import and only parquet needs it

        table = datasets.load_dataset("parquet", data_files=str(path), split="train")
        return [(f"record {index}", dict(row)) for index, row in enumerate(table)]
    raise DataFormatError(path, None, None, f"a .jsonl, .json, .parquet or .csv file, got '{suffix}'")


# --------------------------------------------------------------------------- field helpers


def _require(path: Path, where: Any, row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None or value == "" or value == [] or value == {}:
        raise DataFormatError(path, where, name, "a required value, but it is missing or empty")
    return value


def _text(path: Path, where: Any, row: dict[str, Any], name: str) -> str:
    value = _require(path, where, row, name)
    if not isinstance(value, str):
        raise DataFormatError(path, where, name, f"a string, got {type(value).__name__}")
    return value


def _option_text(path: Path, where: Any, name: str, value: Any) -> str:
    """An option's text without surrounding whitespace (5 MedQA options end in a space that its inline copy loses)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataFormatError(path, where, name, f"option text as a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise DataFormatError(path, where, name, "non-empty option texts")
    return text


def _options(path: Path, where: Any, value: Any, name: str = "options") -> dict[str, str]:
    """Options as an ordered letter -> text dict, from a dict, a list of ``{letter, content}`` or a list of texts."""
    if isinstance(value, dict):
        options = {str(letter): _option_text(path, where, name, text) for letter, text in value.items()}
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        try:
            options = {str(item["letter"]): _option_text(path, where, name, item["content"]) for item in value}
        except KeyError as missing:
            raise DataFormatError(
                path, where, name, f"a list of {{letter, content}} objects, one lacks {missing}"
            ) from None
    elif isinstance(value, list) and value:
        options = {LETTERS[i]: _option_text(path, where, name, text) for i, text in enumerate(value)}
    else:
        raise DataFormatError(path, where, name, "a non-empty dict or list of answer options")
    if len(options) < 2:
        raise DataFormatError(path, where, name, f"at least 2 answer options, got {len(options)}")
    return options


def _gold_letter(path: Path, where: Any, row: dict[str, Any], name: str, options: dict[str, str]) -> str:
    """The gold letter from a letter or a one-letter list (MedXpertQA eval inputs), checked against the options."""
    value = _require(path, where, row, name)
    if isinstance(value, list):
        if len(value) != 1:
            raise DataFormatError(path, where, name, f"exactly one gold letter, got {value!r}")
        value = value[0]
    if not isinstance(value, str) or value.strip() not in options:
        raise DataFormatError(path, where, name, f"a letter among the options {list(options)}, got {value!r}")
    return value.strip()


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


def _extras(row: dict[str, Any], consumed: Iterable[str]) -> dict[str, Any]:
    """Every field the Example does not hold, kept unchanged in its metadata so nothing is lost."""
    skip = set(consumed)
    return {key: value for key, value in row.items() if key not in skip}


def _row_id(row: dict[str, Any], key: str, source: str, index: int) -> str:
    value = row.get(key)
    return str(value) if value not in (None, "") else f"{source}-{index}"


def _mcq(
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


def _nonempty(path: Path, examples: list[Example], field_name: str, what: str) -> list[Example]:
    if not examples:
        raise DataFormatError(path, None, field_name, f"at least one example after filtering by {what}, got none")
    return examples


def _source(path: Path, source: str | None) -> str:
    return source or path.stem


# --------------------------------------------------------------------------- readers


def _medqa_record(path: Path, where: Any, row: dict[str, Any], *, source: str, index: int) -> Example:
    options = _options(path, where, _require(path, where, row, "options"))
    return _mcq(
        path,
        where,
        id=_row_id(row, "id", source, index),
        source=source,
        question=_text(path, where, row, "question"),
        options=options,
        answer=_gold_letter(path, where, row, "answer_idx", options),
        # "answer" (the gold text) is options[answer_idx] again, so it is not kept twice.
        metadata=_extras(row, ("id", "question", "options", "answer_idx", "answer")),
    )


def read_medqa(path: Path, *, source: str | None = None) -> list[Example]:
    """MedQA-USMLE JSONL (``answer_idx`` letter; ``meta_info`` and other fields kept in metadata).

    Example row (phrases_no_exclude_test.jsonl, shortened)::

        {"question": "A junior orthopaedic surgery resident ...", "answer": "Tell the attending ...",
         "options": {"A": "...", "B": "Tell the attending ...", "C": "...", "D": "..."},
         "meta_info": "step1", "answer_idx": "B", "metamap_phrases": [...]}
    """
    label = _source(path, source)
    rows = read_rows(path)
    _report_answer_mismatches(path, rows)
    return [_medqa_record(path, where, row, source=label, index=i) for i, (where, row) in enumerate(rows)]


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
    label = _source(path, source)
    document = _read_json(path) if path.suffix.lower() == ".json" else read_rows(path)
    if isinstance(document, dict):
        if subset is not None and subset not in document:
            raise DataFormatError(path, None, "subset", f"one of the bundle's keys {sorted(document)}, got {subset!r}")
        names = [subset] if subset is not None else list(document)
        examples = []
        for name in names:
            for where, row in _records(path, document[name], prefix=f"'{name}' record"):
                example = _medqa_record(path, where, row, source=label, index=len(examples))
                example.metadata["subset"] = name
                examples.append(example)
        return examples
    if subset is not None:
        raise DataFormatError(path, None, "subset", f"a bundle {{name: [records]}} to pick '{subset}' from, got a list")
    rows = _records(path, document)
    return [_medqa_record(path, where, row, source=label, index=i) for i, (where, row) in enumerate(rows)]


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
    label = _source(path, source)
    examples, skipped = [], 0
    for i, (where, row) in enumerate(read_rows(path)):
        if skip_images and row.get("images"):
            skipped += 1
            continue
        question, inline = split_inline_choices(_text(path, where, row, "question"))
        if row.get("options"):
            options = _options(path, where, row["options"])
        elif inline is not None:
            options = inline
        else:
            raise DataFormatError(
                path, where, "options", "an 'options' field, or choices inlined as '\\nAnswer Choices: (A) ... (B) ...'"
            )
        if len(options) < 2:
            raise DataFormatError(path, where, "question", f"at least 2 inlined answer choices, got {len(options)}")
        examples.append(
            _mcq(
                path,
                where,
                id=_row_id(row, "id", label, i),
                source=label,
                question=question,
                options=options,
                answer=_gold_letter(path, where, row, "label", options),
                metadata=_extras(row, ("id", "question", "options", "label")),
            )
        )
    if skipped:
        log.warning(
            "%s: skipped %d of %d rows that need images (skip_images=True)", path, skipped, skipped + len(examples)
        )
        _nonempty(path, examples, "images", "skip_images=True (every row has images)")
    return examples


def read_medmcqa(path: Path, *, source: str | None = None, cop_base: int = 1) -> list[Example]:
    """Raw MedMCQA rows; ``cop`` is 1-4 (1 = opa) unless ``cop_base=0`` says the file numbers from 0.

    Example row (raw dev.json layout)::

        {"question": "Which of the following is not true for myelinated nerve fibers:", "opa": "...", "opb": "...",
         "opc": "...", "opd": "...", "cop": 1, "exp": null, "subject_name": "Physiology", "topic_name": null,
         "id": "45258d3d-...", "choice_type": "multi"}
    """
    if cop_base not in (0, 1):
        raise ValueError(f"cop_base must be 1 (raw MedMCQA, 1 = opa) or 0 (Hugging Face exports), got {cop_base!r}")
    label = _source(path, source)
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        options = {
            letter: _option_text(path, where, key, _require(path, where, row, key))
            for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"), strict=True)
        }
        cop = _require(path, where, row, "cop")
        if isinstance(cop, str) and cop.strip().isdigit():
            cop = int(cop)
        if isinstance(cop, bool) or not isinstance(cop, int) or not cop_base <= cop <= cop_base + 3:
            expected = "1-4 (1 = opa); a 0-3 export needs cop_base=0" if cop_base == 1 else "0-3 (0 = opa)"
            raise DataFormatError(path, where, "cop", f"an integer {expected}, got {cop!r}")
        examples.append(
            _mcq(
                path,
                where,
                id=_row_id(row, "id", label, i),
                source=label,
                question=_text(path, where, row, "question"),
                options=options,
                answer="ABCD"[cop - cop_base],
                metadata=_extras(row, ("id", "question", "opa", "opb", "opc", "opd", "cop")),
            )
        )
    return examples


def read_pubmedqa(path: Path, *, source: str | None = None, ground_truth: str | Path | None = None) -> list[Example]:
    """PubMedQA PQA-L ``ori_pqal.json`` as A/B/C = yes/no/maybe; ``ground_truth`` restricts it to the official test.

    The question is the abstract's contexts joined by spaces, a blank line, then the question: the contexts
    part is character-for-character what HuatuoGPT-o1 puts before its instruction line in PubMedQA_test.json.
    """
    label = _source(path, source)
    document = _read_json(path)
    if not isinstance(document, dict):
        raise DataFormatError(path, None, None, f"a JSON object keyed by PMID, got a JSON {type(document).__name__}")
    wanted: dict[str, str | None] = {pmid: None for pmid in document}
    if ground_truth is not None:
        truth_path = resolve_path(ground_truth)
        if not truth_path.is_file():
            raise DataFormatError(truth_path, None, "ground_truth", "an existing test_ground_truth.json file")
        truth = _read_json(truth_path)
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
        contexts = _require(path, where, row, "CONTEXTS")
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise DataFormatError(path, where, "CONTEXTS", "a list of strings")
        decision = gold if gold is not None else _require(path, where, row, "final_decision")
        if decision not in answers:
            if gold is None:
                raise DataFormatError(path, where, "final_decision", f"one of yes/no/maybe, got {decision!r}")
            raise DataFormatError(resolve_path(ground_truth), where, None, f"a label yes/no/maybe, got {decision!r}")
        question = " ".join(contexts) + "\n\n" + _text(path, where, row, "QUESTION")
        metadata = {"pmid": pmid, **_extras(row, ("QUESTION", "CONTEXTS", "final_decision"))}
        examples.append(
            _mcq(
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


def read_mmlu_pro(path: Path, *, source: str | None = None, categories: Sequence[str] | None = None) -> list[Example]:
    """MMLU-Pro rows (options list, ``answer`` letter, ``answer_index``) or its HuatuoGPT layout (options dict).

    "N/A" options pad some rows to 10; they are dropped as in the official ``preprocess`` of MMLU-Pro's
    evaluation scripts, and the gold letter follows its text. ``categories`` keeps rows whose ``category``
    matches one of them case-insensitively (MMLU-Pro Medical in HuatuoGPT-o1 = biology + health).
    """
    label = _source(path, source)
    keep = {c.lower() for c in categories} if categories is not None else None
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        if keep is not None:
            category = row.get("category")
            if not isinstance(category, str) or not category:
                raise DataFormatError(path, where, "category", "a category to filter on (HuatuoGPT rows have none)")
            if category.lower() not in keep:
                continue
        raw = _require(path, where, row, "options")
        if isinstance(raw, dict):  # HuatuoGPT layout
            examples.append(_medqa_record(path, where, row, source=label, index=i))
            continue
        if not isinstance(raw, list):
            raise DataFormatError(path, where, "options", f"a list or dict of options, got {type(raw).__name__}")
        listed = _options(path, where, raw)
        gold_letter = _gold_letter(path, where, row, "answer", listed)
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
            _mcq(
                path,
                where,
                id=_row_id(row, "question_id", label, i),
                source=label,
                question=_text(path, where, row, "question"),
                options=options,
                answer=LETTERS[kept.index(gold_letter)],
                metadata=_extras(row, ("question_id", "question", "options", "answer", "answer_index")),
            )
        )
    if keep is not None:
        _nonempty(path, examples, "category", f"categories={sorted(keep)}")
    return examples


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
    label = _source(path, source)
    keep_domains = {d.lower() for d in domains} if domains is not None else None
    keep_subdomains = {d.lower() for d in subdomains} if subdomains is not None else None
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        for name, keep in (("High-level domain", keep_domains), ("Subdomain", keep_subdomains)):
            if keep is not None and str(_require(path, where, row, name)).strip().lower() not in keep:
                break
        else:
            texts = [_text(path, where, row, name).strip() for name in GPQA_ANSWERS]
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
                _mcq(
                    path,
                    where,
                    id=record_id,
                    source=label,
                    question=_text(path, where, row, "Question").strip(),
                    options=options,
                    answer=LETTERS[order.index(0)],
                    metadata=metadata,
                )
            )
    if keep_domains is not None or keep_subdomains is not None:
        _nonempty(path, examples, "High-level domain/Subdomain", f"domains={domains}, subdomains={subdomains}")
    return examples


def read_rarearena(path: Path, *, source: str | None = None, include_test_results: bool = True) -> list[Example]:
    """RareArena RDC/RDS cases as diagnosis examples whose gold names are the unique {diagnosis, Orpha_name}.

    The question is ``case_report + " " + test_results`` as RareArena's RDC evaluation and DiagnosisZero's
    ``make_dataset.py`` build it; ``include_test_results=False`` (RDS-style) keeps the results in metadata.

    Example row (RDC_synthetic.jsonl, shortened)::

        {"_id": "SYN-0002", "case_report": "A 16-year-old girl ...", "test_results": "ALT 112 U/L, ...",
         "diagnosis": "Wilson's disease", "Orpha_name": "Wilson disease", "Orpha_id": "905",
         "age": [16, "year"], "gender": "Female", "pub_date": "synthetic"}
    """
    label = _source(path, source)
    examples = []
    for i, (where, row) in enumerate(read_rows(path)):
        question = _text(path, where, row, "case_report").strip()
        results = row.get("test_results")
        if results is not None and not isinstance(results, str):
            raise DataFormatError(path, where, "test_results", f"a string, got {type(results).__name__}")
        consumed = ["_id", "case_report", "diagnosis", "Orpha_name"]
        if include_test_results and results and results.strip():
            question = f"{question} {results.strip()}"
            consumed.append("test_results")
        names = [_text(path, where, row, "diagnosis").strip()]
        orpha_name = row.get("Orpha_name")
        if isinstance(orpha_name, str) and orpha_name.strip():
            names.append(orpha_name.strip())
        metadata = _extras(row, consumed)
        if isinstance(orpha_name, str):
            metadata["orpha_name"] = orpha_name
        examples.append(
            Example(
                id=_row_id(row, "_id", label, i),
                source=label,
                question=question,
                diagnoses=tuple(dict.fromkeys(names)),
                metadata=metadata,
            )
        )
    return examples


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
        question = _text(path, where, row, "question")
        options = _options(path, where, row["options"]) if row.get("options") else {}
        diagnoses = row.get("diagnoses") or []
        if not isinstance(diagnoses, list) or not all(isinstance(d, str) and d for d in diagnoses):
            raise DataFormatError(path, where, "diagnoses", "a list of non-empty diagnosis names")
        answer = _gold_letter(path, where, row, "answer", options) if options else None
        if not options and not diagnoses:
            raise DataFormatError(path, where, "options", "options and an answer, or gold diagnoses")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise DataFormatError(path, where, "metadata", f"a JSON object, got {type(metadata).__name__}")
        examples.append(
            Example(
                id=str(_require(path, where, row, "id")),
                source=source or _text(path, where, row, "source"),
                question=question,
                options=options,
                answer=answer,
                diagnoses=tuple(diagnoses),
                metadata=metadata,
            )
        )
    return examples


Reader = Callable[..., list[Example]]

READERS: dict[str, Reader] = {
    "medqa": read_medqa,
    "huatuo": read_huatuo,
    "medxpertqa": read_medxpertqa,
    "eval_input": read_medxpertqa,
    "medmcqa": read_medmcqa,
    "pubmedqa": read_pubmedqa,
    "mmlu_pro": read_mmlu_pro,
    "gpqa": read_gpqa,
    "rarearena": read_rarearena,
    "example": read_example,
}


def reader_options(format: str) -> list[str]:
    """The keyword options a format's reader accepts besides ``source``."""
    if format not in READERS:
        raise ValueError(f"unknown data format {format!r}; known formats: {sorted(READERS)}")
    parameters = inspect.signature(READERS[format]).parameters
    return [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY and name != "source"]


def read_examples(path: str | Path, format: str, *, source: str | None = None, **options: Any) -> list[Example]:
    """Read one benchmark file into Examples with the reader registered for ``format``.

    Args:
        path: The file, or ``medzero_pl:<path>`` for a file shipped in the package.
        format: A key of :data:`READERS`.
        source: The label stored on every Example (default: the file's stem; ``example`` files keep theirs).
        **options: The reader's own keyword options, e.g. ``cop_base=0`` or ``categories=["health"]``.
            An option the reader does not take is refused here rather than ignored.

    Raises:
        DataFormatError: The file is missing or malformed, or yields no examples.
        ValueError: Unknown format or option.
    """
    allowed = reader_options(format)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"format {format!r} has no option(s) {unknown}; it accepts {allowed or 'none'}")
    resolved = resolve_path(path)
    if not resolved.is_file():
        what = "a file, got a directory" if resolved.is_dir() else "file not found (expected an existing data file)"
        raise DataFormatError(resolved, None, None, what)
    examples = READERS[format](resolved, source=source, **options)
    if not examples:
        raise DataFormatError(resolved, None, None, f"at least one {format} record, got an empty file")
    return examples
