"""scripts/bench_grpo.py: the harness runs end to end on a tiny model and reports every field (not speed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_grpo.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_grpo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_script()
SHAPE = {"layers": 2, "attn": 8, "body": 100, "head": 10}


def test_forward_flops_are_matmul_params_plus_attention_over_the_context():
    assert bench.forward_flops(SHAPE, context=5) == 2 * (100 + 10) + 4 * 2 * 8 * 5
    assert bench.forward_flops(SHAPE, context=5, with_head=False) == 2 * 100 + 4 * 2 * 8 * 5


def test_the_flop_floor_runs_each_prompt_once_and_each_completion_token_once():
    one_group = bench.step_flops(SHAPE, [3, 3], [2, 1], group=2)
    prompt = sum(bench.forward_flops(SHAPE, i, with_head=False) for i in (1, 2, 3))
    completions = [bench.forward_flops(SHAPE, c) for c in (4, 5, 4)]  # contexts 3 + 1, 3 + 2; 3 + 1
    assert one_group == pytest.approx((prompt + 2 * 10 + sum(completions), 3 * (prompt + sum(completions))))
    two_groups = bench.step_flops(SHAPE, [3, 3], [2, 1], group=1)  # the same prompt counted once per group
    assert two_groups[1] > one_group[1]


def test_the_summary_excludes_each_runs_first_step_and_takes_medians():
    def step(t, gen):
        return {"step_time": t, "generate": gen, "score": 0.0, "train": t - gen, "sync": 0.0,
                "prompt_lengths": [3, 3], "completion_lengths": [2, 2]}  # fmt: skip

    runs = [{"steps": [step(100.0, 50.0), step(4.0, 1.0), step(6.0, 3.0)], "peak_rss_mb": 10.0}]
    summary = bench.summarise(runs, SHAPE, group=2, rate=1.0)
    assert summary["step_time"] == 5.0 and summary["generate"] == 2.0 and summary["steps_measured"] == 2
    assert summary["tokens_per_second"] == pytest.approx(8 / 10)


def _run(*args: str, tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_quick_run_reports_every_phase_for_medzero(tmp_path):
    stdout, report = _run("--trainers", "medzero", "--threads", "1", tmp_path=tmp_path)
    summary = report["summaries"]["medzero"]
    for key in ("step_time", "tokens_per_second", "generate", "score", "train", "sync", "peak_rss_mb"):
        assert summary[key] >= 0, key
    assert summary["limit_generate"] > 0 and summary["limit_train"] > 0
    assert summary["steps_measured"] == 1  # --quick: 2 steps, the first excluded
    assert "| median step (s) |" in stdout and "matmul rate:" in stdout


@pytest.mark.slow
def test_quick_run_compares_both_trainers_and_their_ratio(tmp_path):
    stdout, report = _run("--threads", "1", tmp_path=tmp_path)
    assert set(report["summaries"]) == {"medzero", "trl"}
    assert "medzero / trl" in stdout
    trl = report["summaries"]["trl"]
    assert trl["step_time"] > 0 and trl["generate"] > 0 and trl["mean_prompt_length"] > 0


@pytest.mark.slow
def test_quick_fixed_length_generates_the_same_number_of_tokens_in_both(tmp_path):
    _, report = _run("--fixed-length", "--threads", "1", tmp_path=tmp_path)
    assert {s["mean_completion_length"] for s in report["summaries"].values()} == {8}


def test_quick_rollout_only_reports_tokens_per_second_per_batch_size(tmp_path):
    stdout, report = _run("--rollout-only", "--threads", "1", tmp_path=tmp_path)
    rows = report["rollout"]["rollout"]
    assert [(r["engine"], r["batch"]) for r in rows] == [("hf", 2), ("hf", 4)]
    assert all(r["tokens"] == r["batch"] * 8 and r["tokens_per_second"] > 0 for r in rows)  # fixed length
    assert "vllm" in report["rollout"]["unavailable"] or any(r["engine"] == "vllm" for r in rows)
