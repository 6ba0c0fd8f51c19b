"""Throughput of every registered reward and of the preset reward sets (completions per second).

Completions are built from real MedQA questions and RareArena-layout cases in ``../shared/data`` (synthetic text if
that folder is missing): a ~2,000-character ``<think>`` block followed by a correct, wrong, malformed, repeated or
language-mixed answer. Each reward scores the whole batch in one call, as a trainer would.

    python scripts/bench_rewards.py                 # 10,000 completions of ~2,000 characters
    python scripts/bench_rewards.py --n 2000 --chars 8000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from medzero_pl.rewards import REWARDS, build_rewards  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
HYPERNYMS = DATA / "rarearena" / "orphanet_hypernym.json"

# kwargs needed to build each registered reward (others use their defaults)
BENCH_KWARGS: dict[str, dict[str, Any]] = {
    "cosine_length": {"max_length": 4000},
    "soft_overlong": {"max_length": 4000},
}
EXTRA_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("diagnosis_match", {"mode": "diagnosis_zero"}),
    ("diagnosis_match", {"mode": "fuzzy", "top_k": 5}),
]


def _read_jsonl(path: Path, limit: int) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line, _ in zip(f, range(limit), strict=False)]


def _padding(text: str, chars: int, rng: random.Random) -> str:
    words = (text + " ") * (1 + chars // max(len(text), 1))
    start = rng.randrange(max(1, len(words) - chars))
    return words[start : start + chars]


def mcq_batch(n: int, chars: int, rng: random.Random) -> tuple[list[str], dict[str, list]]:
    path = DATA / "medqa" / "phrases_no_exclude_test.jsonl"
    rows = (
        _read_jsonl(path, 500)
        if path.exists()
        else [{"question": "Which drug? " * 20, "options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "answer_idx": "B"}]
    )
    completions, columns = [], {"task": [], "answer": [], "options": [], "diagnoses": [], "id": [], "source": []}
    for i in range(n):
        row = rows[i % len(rows)]
        gold, options = row["answer_idx"], row["options"]
        wrong = next(letter for letter in options if letter != gold)
        answer = rng.choice(
            [
                f"<answer>{gold}</answer>",
                f"<answer>({wrong}) {options[wrong]}</answer>",
                f"<answer>{options[gold]}</answer>",
                f"<answer>{gold}</answer> 答案是{gold}。",
                f"The answer is {gold}.",
                f"<answer>{gold}</answer><answer>{wrong}</answer>",
            ]
        )
        completions.append(f"<think>{_padding(row['question'], chars, rng)}</think>\n{answer}")
        for key, value in (("task", "mcq"), ("answer", gold), ("options", options), ("diagnoses", [])):
            columns[key].append(value)
        columns["id"].append(str(i))
        columns["source"].append("medqa")
    return completions, columns


def diagnosis_batch(n: int, chars: int, rng: random.Random) -> tuple[list[str], dict[str, list]]:
    path = DATA / "rarearena" / "RDC_synthetic.jsonl"
    rows = (
        _read_jsonl(path, 100)
        if path.exists()
        else [{"case_report": "A case. " * 30, "test_results": "", "diagnosis": "Fabry disease", "Orpha_name": "Fabry"}]
    )
    names = [r["diagnosis"] for r in rows]
    completions, columns = [], {"task": [], "answer": [], "options": [], "diagnoses": [], "id": [], "source": []}
    for i in range(n):
        row = rows[i % len(rows)]
        other = rng.choice(names)
        answer = rng.choice(
            [
                f"<answer>{row['diagnosis']}</answer>",
                f"<answer>{row['Orpha_name']}</answer>",
                f"<answer>{other}</answer>",
                f"<answer>1. {other};\n2. {row['diagnosis']};\n3. Sarcoidosis;</answer>",
                f"<answer>{row['diagnosis']}</answer>诊断为{row['diagnosis']}",
                "no answer at all",
            ]
        )
        case = row["case_report"] + " " + row.get("test_results", "")
        completions.append(f"<think>{_padding(case, chars, rng)}</think>\n{answer}")
        for key, value in (("task", "diagnosis"), ("answer", None), ("options", {})):
            columns[key].append(value)
        columns["diagnoses"].append(list(dict.fromkeys([row["diagnosis"], row["Orpha_name"]])))
        columns["id"].append(row.get("_id", str(i)))
        columns["source"].append("rarearena")
    return completions, columns


def rate(specs: list[dict], completions: list[str], columns: dict[str, list]) -> float:
    rewards = build_rewards(specs)
    rewards(None, completions[:50], **{k: v[:50] for k, v in columns.items()})  # warm caches (lexicon, regexes)
    start = time.perf_counter()
    rewards(None, completions, **columns)
    return len(completions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="completions per batch")
    parser.add_argument("--chars", type=int, default=2_000, help="characters of reasoning per completion")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    batches = {"mcq": mcq_batch(args.n, args.chars, rng), "diagnosis": diagnosis_batch(args.n, args.chars, rng)}
    mean_chars = sum(map(len, batches["mcq"][0])) / args.n
    print(f"{args.n} completions per batch, {mean_chars:.0f} characters on average (data: {DATA.exists()})\n")
    print(f"{'reward':<58}{'batch':>10}{'completions/s':>16}{'s per 1000':>12}")

    entries = [(name, BENCH_KWARGS.get(name, {})) for name in REWARDS] + EXTRA_VARIANTS
    if HYPERNYMS.exists():
        entries.append(("diagnosis_match", {"hypernym_path": str(HYPERNYMS), "partial_credit": 0.5}))
    for name, kwargs in entries:
        for batch in ("mcq", "diagnosis") if name not in ("mcq_accuracy", "open_medical_r1_accuracy") else ("mcq",):
            if name == "diagnosis_match" and batch == "mcq":
                continue
            per_second = rate([{"name": name, "kwargs": kwargs}], *batches[batch])
            label = name + (" " + json.dumps(kwargs) if kwargs else "")
            print(f"{label[:57]:<58}{batch:>10}{per_second:>16,.0f}{1000 / per_second:>12.4f}")
    print()
    for preset, batch in (("mcq", "mcq"), ("diagnosis", "diagnosis"), ("diagnosis_fuzzy", "diagnosis")):
        specs = yaml.safe_load((ROOT / "conf" / "rewards" / f"{preset}.yaml").read_text())
        per_second = rate(specs, *batches[batch])
        label = f"conf/rewards/{preset}.yaml"
        print(f"{label:<58}{batch:>10}{per_second:>16,.0f}{1000 / per_second:>12.4f}")


if __name__ == "__main__":
    main()
