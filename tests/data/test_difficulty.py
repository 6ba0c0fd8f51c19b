"""Measured pass rates: the sidecar file, stamping, the band filter and the printed distribution."""

from __future__ import annotations

import pytest

from medzero_pl.data.difficulty import (
    pass_rate_histogram,
    read_pass_rates,
    with_pass_rates,
    within_pass_rates,
    write_pass_rates,
)
from medzero_pl.data.mixing import easy_to_hard
from medzero_pl.data.records import DataFormatError
from tests.data.test_mixing import examples, ids


def test_pass_rates_round_trip_and_become_metadata_and_difficulty(tmp_path):
    pool = examples(3)
    path = write_pass_rates(
        tmp_path / "run" / "pass_rates.jsonl",
        [{"source": "s", "id": f"s-{i}", "pass_rate": rate} for i, rate in enumerate([0.25, 1.0, 0.0])],
    )
    rates = read_pass_rates(path)
    assert rates == {("s", "s-0"): 0.25, ("s", "s-1"): 1.0, ("s", "s-2"): 0.0}
    stamped = with_pass_rates(pool, rates, path, "difficulty")
    assert [e.metadata["pass_rate"] for e in stamped] == [0.25, 1.0, 0.0]
    assert ids(easy_to_hard(stamped, seed=0)) == ["s-1", "s-0", "s-2"]  # highest pass rate first
    assert pool[0].metadata == {}  # the loaded examples are not modified
    assert ids(within_pass_rates(stamped, 0.1, 0.9)) == ["s-0"]  # open-r1's 0 < pass rate < 1


def test_an_unmeasured_question_and_a_bad_line_name_the_file(tmp_path):
    path = write_pass_rates(tmp_path / "rates.jsonl", [{"source": "s", "id": "s-0", "pass_rate": 0.5}])
    with pytest.raises(DataFormatError, match=r"rates.jsonl: 1 training questions have no pass rate \(first: s/s-1\)"):
        with_pass_rates(examples(2), read_pass_rates(path), path, "difficulty")
    path.write_text('{"source": "s", "id": "s-0", "pass_rate": 2}\n')
    with pytest.raises(DataFormatError, match=r"rates.jsonl, line 1: pass_rate 2.0 is not in \[0, 1\]"):
        read_pass_rates(path)
    with pytest.raises(DataFormatError, match="file not found"):
        read_pass_rates(tmp_path / "nope.jsonl")


def test_the_histogram_has_one_bin_per_possible_count():
    assert pass_rate_histogram([0.0, 0.25, 0.25, 1.0], samples=4) == [
        ("0/4", 1),
        ("1/4", 2),
        ("2/4", 0),
        ("3/4", 0),
        ("4/4", 1),
    ]
