"""`scripts/bench_judge.py`: one step's batch goes to the judge once, every row with an answer; the second pass is
served from the cache."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.fake_judge import FakeServer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_judge.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_judge", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_answer_of_a_step_is_judged_once_and_then_read_from_the_cache(capsys):
    bench = load_script()
    with FakeServer(default="[2]") as server:
        bench.main(["--base-url", server.url, "--model", "judge", "--prompts", "3", "--generations", "5"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["answers_per_step"] == 15 and report["fallback_rate"] == 0.0
    assert report["mean_reward"]["judge"] == report["mean_reward"]["judge_cached"] == 1.0
    # five kinds of answer per case, all distinct: 15 requests for the cold pass, none for the cached one
    assert len(server.requests) == 15


def test_a_step_batch_is_prompt_major_with_an_answer_on_every_row():
    bench = load_script()
    cases = [{"diagnosis": "Fabry disease", "Orpha_name": "Fabry disease"}, {"diagnosis": "Pompe disease"}]
    completions, golds = bench.step_batch(cases, prompts=2, generations=5)
    assert golds == ["Fabry disease"] * 5 + ["Pompe disease"] * 5
    assert all("<answer>" in c and "</answer>" in c for c in completions)
    assert completions[0].endswith("<answer>Fabry disease</answer>")  # the gold first
    assert completions[3].endswith("<answer>Pompe disease</answer>")  # then, among others, another case's disease
