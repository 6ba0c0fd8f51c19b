"""How well does a diagnosis matching mode give full credit exactly when it should? Labelled pairs, Orphanet siblings.

The labelled pairs (``scripts/data/diagnosis_pairs.jsonl``, written by ``scripts/build_diagnosis_pairs.py`` from
RareArena's ``orphanet_hypernym.json`` and hand-written cases) are JSON lines::

    {"answer": "Gaucher disease type 2", "gold": "Gaucher disease type 1", "full": false, "kind": "sibling",
     "source": "orphanet", "split": "heldout"}

``full`` says whether the answer deserves full credit: it names the gold disease (a strict synonym, another spelling,
word order or punctuation, with or without a hedge such as "probable"), which is RareArena's judge score 2. A
sibling, a broader or a more specific entity does not (partial credit at most). Precision and recall are those of
"the mode gave full credit" against ``full``.

Orphanet siblings are pairs of disorders that share a parent while neither is an ancestor of the other, restricted
to names close enough to be confused (normalised names with rapidfuzz ``token_sort_ratio`` >= 80); each is scored in
both directions, and a matcher meant for rewards should give full credit to none of them.

Two labellings: ``full`` as written (a more specific entity is not the diagnosis), and RareArena's judge rubric as
this project reads it (:func:`rubric_full`: a subtype of the gold, the ``narrower`` pairs, is the diagnosis made;
see docs/rewards.md, "Narrower and broader answers").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from medzero_pl.rewards.diagnosis.names import normalize_name
from medzero_pl.rewards.diagnosis.reward import MODES, CandidateScore

SPLITS = ("calibration", "heldout")


@dataclass(frozen=True)
class LabelledPair:
    """One labelled (answer, gold) pair; see the module docstring."""

    answer: str
    gold: str
    full: bool
    kind: str
    source: str
    split: str


@dataclass(frozen=True)
class Confusion:
    """Counts of "full credit given" (predicted) against "full credit deserved" (label)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def read_pairs(path: str | os.PathLike) -> list[LabelledPair]:
    """The labelled pairs of a JSONL file; raises a clear error on a malformed line."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                pair = LabelledPair(**row)
            except TypeError as e:
                raise ValueError(f"{path}:{number}: expected keys {list(LabelledPair.__annotations__)}: {e}") from e
            if not isinstance(pair.full, bool) or pair.split not in SPLITS:
                raise ValueError(f"{path}:{number}: 'full' must be true/false and 'split' one of {SPLITS}")
            pairs.append(pair)
    return pairs


def scorer(mode: str, **kwargs: object) -> CandidateScore:
    """The ``(candidate, golds) -> score`` function of a matching mode (see ``diagnosis_match_reward``)."""
    return MODES[mode](**kwargs)


HAND_SUBTYPES = frozenset(
    [
        ("Myotonic dystrophy type 1", "Myotonic dystrophy"),
        ("Gaucher disease type 1", "Gaucher disease"),
        ("Classic infantile-onset Pompe disease", "Pompe disease"),
        ("Idiopathic multicentric Castleman disease", "Castleman disease"),
        ("Atypical hemolytic uremic syndrome", "Hemolytic uremic syndrome"),
        ("Juvenile Huntington disease", "Huntington disease"),
        ("Adult-onset Still disease", "Still disease"),
    ]
)
"""The hand-written ``distinguishing`` pairs whose answer is a subtype of the gold (judged by hand, not by Orphanet)."""


def rubric_full(pair: LabelledPair) -> bool:
    """Does the judge's rubric count the answer as the diagnosis (score 2)? The label, and also a subtype: the
    ``narrower`` pairs (Orphanet disorders directly below the gold) and :data:`HAND_SUBTYPES`."""
    return pair.full or pair.kind == "narrower" or (pair.answer, pair.gold) in HAND_SUBTYPES


def confusion(
    score: CandidateScore, pairs: Iterable[LabelledPair], label: Callable[[LabelledPair], bool] | None = None
) -> Confusion:
    """Full credit means a score of 1.0; ``label`` says whether it is deserved (default: the pair's ``full``)."""
    counts = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for pair in pairs:
        counts[(score(pair.answer, (pair.gold,)) == 1.0, pair.full if label is None else label(pair))] += 1
    return Confusion(counts[True, True], counts[True, False], counts[False, True], counts[False, False])


def calibrate_threshold(
    pairs: Sequence[LabelledPair], thresholds: Sequence[float], **fuzzy_kwargs: object
) -> tuple[float, list[float]]:
    """The lowest fuzzy threshold that gives no undeserved full credit on ``pairs`` (so the best recall at
    precision 1), and every threshold that does. For a reward, full credit wrongly given (a sibling paid) is worse
    than full credit missed; raises if no threshold reaches precision 1."""
    clean = [t for t in thresholds if confusion(scorer("fuzzy", threshold=t, **fuzzy_kwargs), pairs).fp == 0]
    if not clean:
        raise ValueError("no threshold gives precision 1 on these pairs: the errors are not the threshold's")
    return clean[0], clean


def orphanet_relations(path: str | os.PathLike) -> tuple[dict[str, list[str]], Callable[[str], frozenset[str]]]:
    """``name -> parent names`` of RareArena's ``orphanet_hypernym.json``, and ``name -> all ancestors``."""
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    parents = {r["name"]: [p["parent"] for p in r.get("parents") or ()] for r in records}
    cache: dict[str, frozenset[str]] = {}

    def ancestors(name: str) -> frozenset[str]:
        if name not in cache:
            cache[name] = frozenset()  # cycle guard
            found: set[str] = set()
            for parent in parents.get(name, ()):
                found |= {parent} | ancestors(parent)
            cache[name] = frozenset(found)
        return cache[name]

    return parents, ancestors


def orphanet_siblings(path: str | os.PathLike, min_similarity: float = 80) -> list[tuple[str, str]]:
    """Sibling disorders with confusable names (see the module docstring), sorted."""
    parents, ancestors = orphanet_relations(path)
    children: dict[str, set[str]] = {}
    for name, ps in parents.items():
        for parent in ps:
            children.setdefault(parent, set()).add(name)
    pairs = set()
    for group in children.values():
        names = sorted(group)
        if len(names) < 2:
            continue
        normalized = [normalize_name(n) for n in names]
        close = process.cdist(normalized, normalized, scorer=fuzz.token_sort_ratio, score_cutoff=min_similarity)
        for i, j in zip(*close.nonzero(), strict=True):  # a numpy array: no numpy import needed
            a, b = names[i], names[j]
            if i < j and a not in ancestors(b) and b not in ancestors(a):
                pairs.add((a, b))
    return sorted(pairs)


def siblings_with_full_credit(score: CandidateScore, siblings: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(answer, gold)`` sibling pairs, in both directions, that the mode gives full credit."""
    return [(x, y) for a, b in siblings for x, y in ((a, b), (b, a)) if score(x, (y,)) == 1.0]
