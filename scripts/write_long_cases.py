"""Write SYNTHETIC long case reports (~1,000 tokens, RareArena-like) for benchmarking long prompts; never real data.

    python scripts/write_long_cases.py --out runs/bench/long_cases.jsonl                    # MedQA layout (bench_grpo --data)
    python scripts/write_long_cases.py --out runs/bench/long_rdc.jsonl --layout rdc --cases 32

DiagnosisZero's RareArena RDC case reports run to about 1,000 tokens; the MedQA prompts of `scripts/bench_grpo.py`
are about 330. Each case here is a fixed pool of made-up clinical sentences drawn with a seed until it reaches
`--words` words (about 1.3 tokens per word for SmolLM2 and Qwen tokenizers), so runs are reproducible and no
benchmark text is copied. `--layout medqa` writes MedQA's JSONL (`question`, `options` A-D, `answer_idx`), which
`bench_grpo.py --data` reads; `--layout rdc` writes the RDC layout of `../shared/data/rarearena/RDC_synthetic.jsonl`
(`_id, case_report, test_results, diagnosis, Orpha_name, Orpha_id, age, gender, pub_date`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

FINDINGS = [
    "The patient reports progressive fatigue over the last {n} months, worse in the afternoon.",
    "There is intermittent joint pain affecting the knees and wrists without morning stiffness.",
    "Physical examination shows mild hepatomegaly and a soft, non-tender abdomen.",
    "A systolic murmur of grade {n} of 6 is heard at the left sternal border.",
    "Neurological examination reveals reduced vibration sense in both feet.",
    "The family history includes a sibling with similar symptoms in childhood.",
    "Skin examination shows scattered hyperpigmented macules on the trunk.",
    "Ophthalmological examination reveals bilateral lens opacities.",
    "The patient had recurrent respiratory infections during the first {n} years of life.",
    "Growth has followed the {n}th percentile for height since early childhood.",
    "Episodes of muscle cramps occur after moderate exercise and resolve with rest.",
    "Hearing tests show a mild sensorineural loss at high frequencies.",
]
TESTS = [
    "Serum creatine kinase is {n}00 U/L.",
    "Hemoglobin is 1{n}.2 g/dL with a normal mean corpuscular volume.",
    "Urinalysis shows trace protein and no hematuria.",
    "Liver enzymes are elevated to {n} times the upper limit of normal.",
    "Brain MRI shows symmetric signal changes in the basal ganglia.",
    "Echocardiography shows an ejection fraction of {n}0 percent.",
]
DIAGNOSES = ["Synthetic disorder A", "Synthetic disorder B", "Synthetic disorder C", "Synthetic disorder D"]


def sentences(rng: random.Random, pool: list[str], words: int) -> str:
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        out.append(rng.choice(pool).format(n=rng.randint(2, 9)))
    return " ".join(out)


def case(rng: random.Random, index: int, words: int, layout: str) -> dict:
    report = f"A {rng.randint(2, 70)}-year-old patient is referred for evaluation. " + sentences(rng, FINDINGS, words)
    tests = sentences(rng, TESTS, max(20, words // 10))
    answer = rng.randrange(len(DIAGNOSES))
    if layout == "medqa":
        options = dict(zip("ABCD", DIAGNOSES, strict=True))
        question = f"{report} {tests} Which of the following is the most likely diagnosis?"
        return {"question": question, "answer": DIAGNOSES[answer], "options": options, "answer_idx": "ABCD"[answer]}
    return {
        "_id": f"LONG-{index:04d}",
        "case_report": report,
        "test_results": tests,
        "diagnosis": DIAGNOSES[answer],
        "Orpha_name": DIAGNOSES[answer],
        "Orpha_id": str(90000 + answer),
        "age": [rng.randint(2, 70), "year"],
        "gender": rng.choice(["Male", "Female"]),
        "pub_date": "synthetic",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    p.add_argument("--layout", choices=["medqa", "rdc"], default="medqa")
    p.add_argument("--cases", type=int, default=16)
    p.add_argument("--words", type=int, default=750, help="words of case report per case (~1,000 tokens at 750)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.cases < 1 or args.words < 1:
        p.error("--cases and --words must be at least 1")
    rng = random.Random(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps(case(rng, i, args.words, args.layout)) for i in range(args.cases)]
    args.out.write_text("\n".join(rows) + "\n")
    print(f"wrote {args.cases} synthetic cases ({args.layout} layout) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
