"""`scripts/write_long_cases.py`: synthetic long cases the readers accept, about 1,000 tokens each."""

from __future__ import annotations

import importlib.util

import pytest

from medzero_pl.data.readers import read_medqa, read_rarearena
from medzero_pl.model.loading import load_tokenizer
from medzero_pl.paths import CONF_DIR

SCRIPT = CONF_DIR.parent / "scripts" / "write_long_cases.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("write_long_cases", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_medqa_layout_reads_and_is_about_a_thousand_tokens(script, tmp_path):
    out = tmp_path / "long.jsonl"
    assert script.main(["--out", str(out), "--cases", "3"]) == 0
    examples = read_medqa(out)
    assert len(examples) == 3
    tokens = [len(load_tokenizer("smollm2-135m-instruct")(ex.question)["input_ids"]) for ex in examples]
    assert all(850 <= n <= 1250 for n in tokens), tokens
    again = tmp_path / "again.jsonl"
    script.main(["--out", str(again), "--cases", "3"])
    assert again.read_text() == out.read_text()  # seeded


def test_rdc_layout_reads(script, tmp_path):
    out = tmp_path / "rdc.jsonl"
    assert script.main(["--out", str(out), "--layout", "rdc", "--cases", "2", "--words", "50"]) == 0
    assert len(read_rarearena(out)) == 2


def test_bad_arguments_exit_2(script, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        script.main(["--out", str(tmp_path / "x.jsonl"), "--cases", "0"])
    assert exit_.value.code == 2
