"""Precision, recall and confusion table of each diagnosis matching mode on the labelled pairs, and Orphanet siblings.

python scripts/eval_diagnosis_match.py                  # scripts/data/diagnosis_pairs.jsonl, ../shared/data
python scripts/eval_diagnosis_match.py --errors         # also list the misclassified held-out pairs

With the hypernym file, a third mode is measured: "rubric", the diagnosis_rubric preset (fuzzy, with credit 1.0 for a
subtype of the gold and 0.5 for a narrow Orphanet parent); every mode is also scored against the judge's rubric,
where a subtype (the "narrower" pairs) is the diagnosis made (calibration.rubric_full; docs/rewards.md).

"Full credit" is a score of 1.0 (see medzero_pl/rewards/diagnosis/calibration.py for what the labels mean). The fuzzy
threshold is chosen on the calibration split (the lowest with no undeserved full credit there) and reported on the held-out
split; diagnosis_zero has no free parameter (the seed's 0.8). The last table counts Orphanet sibling pairs (both
directions) that get full credit: a matcher that pays them teaches the policy to guess the subtype.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from medzero_pl.rewards.diagnosis.calibration import (
    calibrate_threshold,
    confusion,
    orphanet_siblings,
    read_pairs,
    rubric_full,
    scorer,
    siblings_with_full_credit,
)

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "scripts" / "data" / "diagnosis_pairs.jsonl"
HYPERNYMS = ROOT.parent / "shared" / "data" / "rarearena" / "orphanet_hypernym.json"
THRESHOLDS = [round(0.70 + 0.01 * i, 2) for i in range(31)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--hypernyms", type=Path, default=HYPERNYMS)
    parser.add_argument("--errors", action="store_true", help="list the misclassified held-out pairs")
    args = parser.parse_args()
    pairs = read_pairs(args.pairs)
    split = {name: [p for p in pairs if p.split == name] for name in ("calibration", "heldout")}
    print(f"{len(pairs)} labelled pairs: " + ", ".join(f"{len(v)} {k}" for k, v in split.items()))

    threshold, window = calibrate_threshold(split["calibration"], THRESHOLDS)
    print(
        f"fuzzy threshold calibrated on the calibration split: {threshold} (precision 1 from {window[0]} to {window[-1]})"
    )
    modes = {"diagnosis_zero": scorer("diagnosis_zero"), "fuzzy": scorer("fuzzy", threshold=threshold)}
    if args.hypernyms.exists():
        modes["rubric"] = scorer("fuzzy", threshold=threshold, hypernym_path=args.hypernyms, narrower_credit=1.0)

    for title, label in (("labels as written", None), ("the judge's rubric (a subtype is the diagnosis)", rubric_full)):
        print(f"\nagainst {title}:")
        print(f"{'mode':<16}{'split':<13}{'TP':>5}{'FP':>5}{'FN':>5}{'TN':>5}{'precision':>11}{'recall':>8}")
        for mode, score in modes.items():
            for name, rows in split.items():
                c = confusion(score, rows, label)
                print(f"{mode:<16}{name:<13}{c.tp:>5}{c.fp:>5}{c.fn:>5}{c.tn:>5}{c.precision:>11.3f}{c.recall:>8.3f}")

    print("\nfull credit by kind (held-out), given / pairs:")
    kinds = sorted({p.kind.split(":")[0] for p in split["heldout"]})
    print(f"{'kind':<16}{'label':<7}" + "".join(f"{m:>16}" for m in modes))
    for kind in kinds:
        rows = [p for p in split["heldout"] if p.kind.split(":")[0] == kind]
        for full in (True, False):
            subset = [p for p in rows if p.full == full]
            if subset:
                given = {m: sum(s(p.answer, (p.gold,)) == 1.0 for p in subset) for m, s in modes.items()}
                print(f"{kind:<16}{str(full):<7}" + "".join(f"{f'{given[m]}/{len(subset)}':>16}" for m in modes))

    if args.errors:
        print("\nmisclassified held-out pairs (fuzzy):")
        for p in split["heldout"]:
            if (modes["fuzzy"](p.answer, (p.gold,)) == 1.0) != p.full:
                print(f"  [{p.kind}] full={p.full}: {p.answer!r} -> {p.gold!r}")

    if args.hypernyms.exists():
        siblings = orphanet_siblings(args.hypernyms)
        print(f"\nOrphanet sibling pairs with confusable names: {len(siblings)} ({2 * len(siblings)} directed)")
        for mode, score in modes.items():
            paid = siblings_with_full_credit(score, siblings)
            print(f"{mode:<16}full credit to {len(paid)} sibling answers")
            for answer, gold in Counter(paid).most_common(3):
                print(f"{'':<16}e.g. {answer!r} -> {gold!r}")
    else:
        print(f"\n{args.hypernyms} not found: sibling count skipped")


if __name__ == "__main__":
    main()
