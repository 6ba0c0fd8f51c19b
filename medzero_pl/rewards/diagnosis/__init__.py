"""Diagnosis match for RareArena-style cases: does the extracted diagnosis name one of the gold diagnoses?

Example (RareArena RDC layout; ``rarearena/RDC_synthetic.jsonl``, a synthetic case)::

    {"_id": "SYN-0003", "case_report": "A 7-month-old infant ... profound generalized hypotonia ('floppy infant'),
     macroglossia and hepatomegaly ...", "test_results": "... acid alpha-glucosidase activity is nearly absent ...",
     "diagnosis": "Pompe disease", "Orpha_name": "Glycogen storage disease due to acid maltase deficiency"}

The gold column ``diagnoses`` holds every accepted name (here both). RareArena's official scoring is a GPT-4o judge
(``zhao-zy15/RareArena`` ``eval/eval_updated.py``): 2 for the diagnosis or a strict synonym, 1 for a narrow
Orphanet parent (``orphanet_hypernym.json``), 0 otherwise; top-1 is the first of the 5 listed diagnoses, top-5 the
best of them (``eval/metric.py``). An RL reward cannot call a judge per sample, so two offline modes exist:

* ``"diagnosis_zero"``: the DiagnosisZero seed's rule, reproduced exactly (see :func:`diagnosis_zero_similarity`).
* ``"fuzzy"`` (default): normalised names (:mod:`.names`) and synonyms; full credit only for the
  gold disease itself (the judge's score 2), and optional partial credit for the same family or an Orphanet parent
  (the offline counterpart of the judge's score 1). See :mod:`.fuzzy`.

Modules: ``names`` (normalisation, synonyms, hypernyms), ``answers`` (reading one name or a ranked list),
``seed_rule`` (the ``diagnosis_zero`` mode), ``forms`` and ``fuzzy`` (the ``fuzzy`` mode), ``reward`` (modes, the
per-item function and its registry factory), ``calibration`` (measuring a mode on labelled pairs; not imported here).
"""

from medzero_pl.rewards.diagnosis.answers import clean_candidate, split_diagnoses
from medzero_pl.rewards.diagnosis.forms import NameForm, name_form
from medzero_pl.rewards.diagnosis.fuzzy import (
    FuzzyMatcher,
    code_relation,
    compare_names,
    fuzzy_score,
    spelling_variants,
)
from medzero_pl.rewards.diagnosis.names import Lexicon, load_lexicon, normalize_name
from medzero_pl.rewards.diagnosis.reward import (
    DIAGNOSIS,
    MODES,
    CandidateScore,
    clean_gold,
    diagnosis_match,
    diagnosis_match_reward,
)
from medzero_pl.rewards.diagnosis.seed_rule import diagnosis_zero_score, diagnosis_zero_similarity

__all__ = [
    "DIAGNOSIS",
    "MODES",
    "CandidateScore",
    "FuzzyMatcher",
    "Lexicon",
    "NameForm",
    "clean_candidate",
    "clean_gold",
    "code_relation",
    "compare_names",
    "diagnosis_match",
    "diagnosis_match_reward",
    "diagnosis_zero_score",
    "diagnosis_zero_similarity",
    "fuzzy_score",
    "load_lexicon",
    "name_form",
    "normalize_name",
    "spelling_variants",
    "split_diagnoses",
]
