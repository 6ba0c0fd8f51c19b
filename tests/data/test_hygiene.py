"""Data that would silently mislead a run is reported: bad encodings, duplicated ids, leaked validation questions
and gold texts that disagree with the gold letter."""

from __future__ import annotations

import json
import logging

import pytest

from medzero_pl.data.datamodule import report_duplicates
from medzero_pl.data.readers import read_examples
from medzero_pl.data.records import DataFormatError, Example

ROW = {"question": "Q?", "options": {"A": "yes", "B": "no"}, "answer_idx": "A", "answer": "yes"}


def write_lines(path, rows, prefix: bytes = b"") -> None:
    path.write_bytes(prefix + "\n".join(json.dumps(r) for r in rows).encode() + b"\n")


def test_a_non_utf8_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    write_lines(path, [ROW | {"id": "1"}])
    path.write_bytes(
        path.read_bytes() + json.dumps(ROW | {"question": "caf\u00e9"}, ensure_ascii=False).encode("latin-1") + b"\n"
    )
    with pytest.raises(DataFormatError) as err:
        read_examples(path, "medqa")
    assert str(err.value) == f"{path}, line 2: UTF-8 text (byte 0xe9 is not valid UTF-8; re-save the file as UTF-8)"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    write_lines(path, [ROW | {"id": "1"}], prefix=b"\xef\xbb\xbf")
    assert [ex.id for ex in read_examples(path, "medqa")] == ["1"]


def test_an_answer_text_that_disagrees_with_the_gold_letter_is_reported(tmp_path, caplog):
    path = tmp_path / "mismatch.jsonl"
    write_lines(path, [ROW | {"id": "1"}, ROW | {"id": "2", "answer": "no"}])
    with caplog.at_level(logging.WARNING):
        examples = read_examples(path, "medqa")
    assert [ex.answer for ex in examples] == ["A", "A"]
    assert (
        f"{path}: 1 rows whose 'answer' text differs from options[answer_idx] (answer_idx is used), first at line 2"
        in (caplog.text)
    )


def example(id_: str, question: str) -> Example:
    return Example(id=id_, source="s", question=question, options={"A": "x", "B": "y"}, answer="A")


def test_duplicate_ids_and_validation_questions_seen_in_training_are_reported(caplog):
    train = [example("1", "What is it?"), example("1", "Other"), example("2", "Third")]
    val = [example("9", "what  is IT?"), example("8", "Fresh")]
    with caplog.at_level(logging.WARNING):
        report_duplicates(train, val)
    assert "1 ids occur more than once in the training data: s/1" in caplog.text
    assert "1 of 2 validation questions also occur in the training data (validation is not held out): 9" in caplog.text


def test_clean_data_reports_nothing(caplog):
    with caplog.at_level(logging.WARNING):
        report_duplicates([example("1", "A"), example("2", "B")], [example("3", "C")])
    assert caplog.text == ""
