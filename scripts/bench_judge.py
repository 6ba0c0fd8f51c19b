"""The `diagnosis_judge` reward's cost per GRPO step against a running judge server, beside `diagnosis_rubric`'s.

One step's batch is `--prompts` RareArena-layout cases x `--generations` answers each, every answer inside
`<answer>` tags (the gold, Orphanet's name for it, a narrower form, another case's disease, a made-up name, in
turn), so that every row is sent to the judge. The batch is scored three times: the judge with an empty cache (a
step of new answers), the judge again (every verdict cached), and the rubric matcher alone. Start the judge first,
as docs/rewards.md says, then:

    python scripts/bench_judge.py --base-url http://127.0.0.1:8001/v1 --model judge

It prints one JSON line (seconds per step, answers judged per second, fallback rate, mean reward of each).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from medzero_pl.rewards.diagnosis import diagnosis_match_reward  # noqa: E402
from medzero_pl.rewards.judge.reward import diagnosis_judge_reward  # noqa: E402

CASES = ROOT.parent / "shared" / "data" / "rarearena" / "RDC_synthetic.jsonl"
DEMO_CASES = ROOT / "medzero_pl" / "data" / "demo" / "rdc_demo.jsonl"
HYPERNYMS = ROOT.parent / "shared" / "data" / "rarearena" / "orphanet_hypernym.json"


def answer_variants(case: dict, other: dict) -> list[str]:
    """Answers a policy might give for `case`: right, right in other words, narrower, wrong, invented."""
    gold = case["diagnosis"]
    return [gold, case.get("Orpha_name") or gold, f"{gold}, classic form", other["diagnosis"], f"Atypical {gold} mimic"]


def step_batch(cases: list[dict], prompts: int, generations: int) -> tuple[list[str], list[str]]:
    """`prompts x generations` completions and their gold diagnoses, prompt-major like a GRPO batch."""
    completions, golds = [], []
    for p in range(prompts):
        case, other = cases[p % len(cases)], cases[(p + 1) % len(cases)]
        variants = answer_variants(case, other)
        for g in range(generations):
            answer = variants[g % len(variants)]
            completions.append(f"<think>The findings point to one disorder.</think>\n<answer>{answer}</answer>")
            golds.append(case["diagnosis"])
    return completions, golds


def timed(reward, completions: list[str], golds: list[str]) -> tuple[float, list[float], dict[str, float]]:
    metrics: dict[str, float] = {}
    start = time.perf_counter()
    values = reward(None, completions, diagnoses=golds, log_metric=metrics.__setitem__)
    return time.perf_counter() - start, values, metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8001/v1")
    parser.add_argument("--model", default="judge")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    args = parser.parse_args(argv)

    path = CASES if CASES.exists() else DEMO_CASES
    cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    completions, golds = step_batch(cases, args.prompts, args.generations)
    preset = yaml.safe_load((ROOT / "conf" / "rewards" / "diagnosis_judge.yaml").read_text())[0]["kwargs"]
    matcher_kwargs = dict(preset.pop("fallback")) | {"hypernym_path": str(HYPERNYMS)}
    preset |= {"base_url": args.base_url, "model": args.model, "cache_dir": tempfile.mkdtemp(prefix="judge_cache_")}
    judge = diagnosis_judge_reward(**preset, fallback=matcher_kwargs)
    matcher = diagnosis_match_reward(**matcher_kwargs)

    cold_s, cold, cold_metrics = timed(judge, completions, golds)
    cached_s, cached, _ = timed(judge, completions, golds)
    matched_s, matched, _ = timed(matcher, completions, golds)
    n = len(completions)
    print(
        json.dumps(
            {
                "answers_per_step": n,
                "cases": path.name,
                "judge_cold_s": round(cold_s, 2),
                "judge_cold_answers_per_s": round(n / cold_s, 2),
                "judge_cached_s": round(cached_s, 3),
                "rubric_matcher_s": round(matched_s, 3),
                "fallback_rate": cold_metrics.get("rewards/diagnosis_judge/fallback_rate"),
                "mean_reward": {
                    "judge": round(sum(cold) / n, 3),
                    "judge_cached": round(sum(cached) / n, 3),
                    "rubric": round(sum(matched) / n, 3),
                },
                "agreement_with_rubric": round(sum(a == b for a, b in zip(cold, matched, strict=True)) / n, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
