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
* ``"fuzzy"`` (default): normalised names (:mod:`medzero_pl.rewards.names`) and synonyms; full credit only for the
  gold disease itself (the judge's score 2), and optional partial credit for the same family or an Orphanet parent
  (the offline counterpart of the judge's score 1). See :func:`compare_names`.

What the fuzzy mode pays, and why. The reward is the policy's only teacher: a matcher that pays a wrong but similar
name teaches it to name the family and guess the subtype. So:

* Distinguishing tokens must agree for full credit (:func:`code_relation`): type numbers and letters (``type 1`` /
  ``type 2``, ``hemophilia A`` / ``B``, ``group A`` / ``group C``), roman numerals also with a letter (``IIIA`` /
  ``IIIB`` is ``3a`` / ``3b``), mixed codes (``2a`` / ``2b``, ``4B2`` / ``4A``), gene symbols (``COL4A5`` /
  ``COL4A3``), immunoglobulin and amyloid classes (``IgG4`` / ``IgE``, ``ATTR`` / ``AA`` / ``AL``), Greek letters
  (alpha / beta thalassemia), and ages of onset (infantile / juvenile / adult / late-onset), which Orphanet uses to
  separate entities. They are compared as multisets, so a number shared elsewhere in the name cannot hide a
  differing type number. A differing token makes the answer a *sibling*: ``partial_credit`` at most, never 1.
* A more specific answer ("Gaucher disease type 1" or "Familial X" for "X") and a broader one ("Gaucher disease"
  for "Gaucher disease type 1") also get ``partial_credit`` at most: Orphanet lists "Familial X", "Adult-onset X"
  and "X type 4" beside "X" as siblings, and no string rule can tell a subtype from a sibling.
* Only the words the two names do not share are compared, and they must be the same words spelt differently:
  British spelling, a plural or possessive ``s``, a joined compound, or one typo per word of 6+ letters whose
  rapidfuzz similarity reaches ``threshold`` (0.88: the lowest with no undeserved full credit on the calibration
  half of ``scripts/data/diagnosis_pairs.jsonl``). A long shared stem can no longer make a differing word look like
  a typo. Acronyms (two capitals or more in the raw text) get no typo tolerance (PAPASH / PsAPASH).
* "Cushing disease" vs "Cushing syndrome": not equal. "Disease" and "syndrome" are generic words ("Kawasaki
  syndrome" is Kawasaki disease), except after the :data:`DISTINCT_EPONYMS` Cushing and Caroli: Cushing disease is
  the pituitary cause of Cushing syndrome (Orphanet lists it beside "Cushing syndrome due to ectopic ACTH
  secretion"), so naming the syndrome for the disease, or the disease for an adrenal or ectopic Cushing syndrome, is
  the family, not the diagnosis: partial credit at most.

Measured by ``scripts/eval_diagnosis_match.py`` on 1,580 labelled pairs (held-out half: precision 0.996, recall
0.852; diagnosis_zero: 0.639 / 0.750) and on the 5,421 Orphanet sibling pairs with confusable names: the fuzzy mode
gives full credit to none of the 10,842 directed answers, diagnosis_zero to 7,565. Recall is lost mostly on
synonyms that share no words (Sly syndrome = mucopolysaccharidosis type 7): pass a synonyms file.

With ``top_k`` set, the answer is read as a list (numbered lines, bullets, semicolons, ``or``, and commas when each
piece has several words) and the best of its first ``top_k`` items counts; ``top_k=None`` reads it as one name.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache, partial
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from medzero_pl.rewards.batch import BatchReward
from medzero_pl.rewards.extract import check_extraction, extract_answer
from medzero_pl.rewards.names import Lexicon, load_lexicon, name_variants

DIAGNOSIS = "diagnosis"
CandidateScore = Callable[[str, tuple[str, ...]], float]
_MAX_LIST_CHARS = 5000  # a top-5 list is a few hundred characters; bounds the work on pathological answers
_MAX_NAME_CHARS = 300  # longer "names" are prose, never a match


def clean_gold(diagnoses: Any) -> tuple[str, ...]:
    """The gold names as a tuple of non-empty strings (a bare string counts as one name)."""
    if isinstance(diagnoses, str):
        diagnoses = [diagnoses]
    if not isinstance(diagnoses, Sequence):
        return ()
    return tuple(dict.fromkeys(d.strip() for d in diagnoses if isinstance(d, str) and d.strip()))


# ----------------------------------------------------------------------------------------------- reading the answer

_SEPARATORS = re.compile(r"[\n\r;]")
_INLINE_NUMBER = re.compile(r"\s\(?\d{1,2}[.)]\s")
_NUMBERED_START = re.compile(r"\s*\(?1[.)]\s")
_ALTERNATIVE = re.compile(r"\s(?:or|vs\.?|versus)\s", re.IGNORECASE)
_BULLET = re.compile(r"\s*(?:[-*•·]+|\(?\d{1,2}[.):])\s*")
_PREAMBLE = re.compile(
    r"(?:(?:the\s+)?(?:most\s+likely\s+|final\s+|probable\s+|likely\s+|primary\s+|working\s+)?"
    r"(?:diagnosis|dx)\b(?:\s+is)?\s*[:\-]?\s*)?"
    r"(?:(?:most\s+likely|likely|probably|probable|possible|possibly|suspected|presumed)\s+)?"
    r"(?:(?:a|an|the)\s+)?",
    re.IGNORECASE,
)
_TRIM = " \t*_`\"'.,;:"


def clean_candidate(name: str) -> str:
    """One diagnosis without list bullets, markdown, ``Diagnosis:``-style preambles or end punctuation."""
    name = name.strip(_TRIM)
    bullet = _BULLET.match(name)
    if bullet:
        name = name[bullet.end() :].strip(_TRIM)
    return name[_PREAMBLE.match(name).end() :].strip(_TRIM)


def split_diagnoses(answer: str) -> list[str]:
    """The diagnoses of an answer read as a ranked list, in order (at most the first 5,000 characters)."""
    text = answer[:_MAX_LIST_CHARS]
    lines = _SEPARATORS.split(text)
    if len(lines) == 1 and _NUMBERED_START.match(text):
        lines = _INLINE_NUMBER.split(text)  # "1. Fabry disease 2. Gaucher disease"
    out = []
    for line in lines:
        for piece in _ALTERNATIVE.split(clean_candidate(line)):
            parts = piece.split(",")
            # "Fever, familial Mediterranean" is one name; "Pompe disease, Danon disease" is two
            split = len(parts) > 1 and all(len(p.split()) >= 2 for p in parts)
            out += [c for c in map(clean_candidate, parts if split else [piece]) if c]
    return out


# ----------------------------------------------------------------------------------------------- diagnosis_zero mode

_WORD = re.compile(r"\w+")


def diagnosis_zero_similarity(prediction: str, golds: Sequence[str]) -> float:
    """The similarity of the DiagnosisZero seed (wizardlancet/diagnosis_zero, ``verl/utils/reward_score/
    rarearena.py::calculate_similarity``, last version e9da98f): lower-case and strip both sides; 1.0 on an exact
    match; else the max over gold names of ``0.8 * SequenceMatcher(None, pred, gold).ratio() + 0.2 * Jaccard``
    over the ``\\w+`` word sets (0 if either set is empty). Its first version weighted 0.8 / 0.1 Jaccard / 0.1
    word-frequency; the commit "rare_arena reward" changed it to the rule above, which is the one reproduced."""
    prediction = prediction.lower().strip()
    labels = [g.lower().strip() for g in golds]
    if prediction in labels:
        return 1.0
    words = set(_WORD.findall(prediction))
    best = 0.0
    for label in labels:
        sequence_sim = SequenceMatcher(None, prediction, label).ratio()
        best = max(best, 0.8 * sequence_sim + 0.2 * _jaccard(words, label))
    return best


def _jaccard(words: set[str], label: str) -> float:
    label_words = set(_WORD.findall(label))
    return len(words & label_words) / len(words | label_words) if words and label_words else 0


def diagnosis_zero_score(candidate: str, golds: tuple[str, ...]) -> float:
    """The seed's ``compute_score`` for a present answer: 1.0 if similarity > 0.8, else 0.1 (its "format score";
    an empty ``<answer></answer>`` also gets 0.1, as in the seed; no answer at all gets 0, see
    :func:`diagnosis_match`).

    Same result as thresholding :func:`diagnosis_zero_similarity`, but ``SequenceMatcher``'s cheap upper bounds
    (``real_quick_ratio``, ``quick_ratio``) skip the quadratic ``ratio()`` when they already prove the score cannot
    exceed 0.8, which keeps megabyte-long answers fast. Exact: ``0.8 * x + 0.2 * j`` is monotone in ``x`` in
    floating point, and each bound is computed as ``2.0 * count / total`` with a count >= the true match count.
    """
    prediction = candidate.lower().strip()
    labels = [g.lower().strip() for g in golds]
    if prediction in labels:
        return 1.0
    words = set(_WORD.findall(prediction))
    for label in labels:
        word_sim = _jaccard(words, label)
        matcher = SequenceMatcher(None, prediction, label)
        for bound in (matcher.real_quick_ratio, matcher.quick_ratio, matcher.ratio):
            if not 0.8 * bound() + 0.2 * word_sim > 0.8:
                break
        else:
            return 1.0
    return 0.1


# ----------------------------------------------------------------------------------------------- fuzzy mode

GENERIC_WORDS = frozenset(
    ["disease", "diseases", "syndrome", "disorder", "of", "the", "with", "and", "due", "to", "in", "a", "an", "type"]
    + ["types", "subtype", "group", "complementation", "onset", "probable", "probably", "possible", "possibly"]
    + ["likely", "suspected", "presumed", "presumptive", "definite", "confirmed"]
)
"""Words that do not tell diseases apart ("Kawasaki syndrome" is "Kawasaki disease") and hedges ("Fabry disease,
probable"): left out of the comparison, except "disease" / "syndrome" in a :data:`DISTINCT_EPONYMS` name."""
DISTINCT_EPONYMS = frozenset(["cushing", "caroli"])
"""Names whose "disease" and "syndrome" are different diagnoses, so the word is a distinguishing token there:
Cushing disease is the pituitary (ACTH-secreting adenoma) cause of Cushing syndrome, and Orphanet lists it beside
"Cushing syndrome due to ectopic ACTH secretion" and the adrenal causes; Orphanet's Caroli syndrome is Caroli disease
with congenital hepatic fibrosis. "Cushing syndrome" for a gold "Cushing disease" names the family, not the
diagnosis: at most the partial credit."""
BLOCKING_WORDS = frozenset(
    ["not", "no", "non", "without", "nor", "or", "vs", "versus", "excluded", "excluding", "unlikely", "rather"]
    + ["than", "instead", "pseudo"]
)
"""Negations and alternatives: "not Fabry disease", "Fabry or Gaucher disease", "non-Hodgkin" vs "Hodgkin"."""
QUALIFIERS = frozenset(
    ["idiopathic", "multicentric", "unicentric", "familial", "hereditary", "inherited", "congenital", "acquired"]
    + ["classic", "classical", "primary", "secondary", "systemic", "localized", "localised", "generalized"]
    + ["generalised", "acute", "chronic", "autosomal", "dominant", "recessive", "linked", "sporadic", "spectrum"]
    + ["complex", "variant", "severe", "mild", "progressive", "relapsing", "remitting", "recurrent", "isolated"]
    + ["disseminated", "form"]
)
"""Words that make a name more specific without naming another disease ("Idiopathic multicentric Castleman
disease" is a Castleman disease, while "Eosinophilic granulomatosis with polyangiitis" is not a GPA)."""
AGE_CODES = frozenset(
    ["prenatal", "fetal", "neonatal", "perinatal", "infantile", "infancy", "childhood", "juvenile", "adolescent"]
    + ["adolescence", "adult", "adulthood", "early", "late", "senile"]
)
"""Age-of-onset words: Orphanet separates entities by them ("Infantile / Juvenile / Adult Krabbe disease"), so they
are distinguishing tokens, not qualifiers."""
CLASS_CODES = frozenset(
    ["iga", "igd", "ige", "igg", "igm", "aa", "al", "ah", "attr", "alect", "agel", "alys", "afib", "abri", "adan"]
    + ["acys", "aapoai", "aapoaii", "aapoaiv", "abeta", "alpha", "beta", "gamma", "delta", "epsilon", "kappa"]
    + ["lambda", "zeta", "theta"]
)
"""Immunoglobulin classes (IgG4-related disease vs IgE), amyloid proteins (ATTR / AA / AL amyloidosis) and Greek
letters (alpha / beta thalassemia): one short token that is the whole difference between two diseases."""
OPPOSED_PREFIXES = tuple(
    ["hyper", "hypo", "intra", "extra", "inter", "infra", "supra", "macro", "micro", "mono", "poly", "uni"]
    + ["multi", "endo", "exo", "hetero", "homo", "pre", "post", "non", "un", "an", "a", "para", "de", ""]
)
"""Prefixes that flip a word's meaning: hypokalemic vs hyperkalemic, unicentric vs multicentric, atypical vs
typical, paracoccidioidomycosis vs coccidioidomycosis, debranching vs branching (``""``: the bare word)."""
OPPOSITE_WORDS = frozenset(
    frozenset(pair)
    for pair in [("acute", "chronic"), ("primary", "secondary"), ("benign", "malignant")]
    + [("congenital", "acquired"), ("dominant", "recessive"), ("central", "peripheral"), ("upper", "lower")]
    + [("left", "right")]
)
_CODE = re.compile(r"\w*\d\w*|[a-z]")  # a digit anywhere (2, 2a, 4b2, col4a5, igg4, 11p15) or a single letter
_LISTY = re.compile(r"[,;/&|\n]|\band\b", re.IGNORECASE)
_ACRONYM = re.compile(r"\b[A-Za-z]*[A-Z][a-z]*[A-Z][A-Za-z]*\b")
SCORERS: dict[str, Callable[[str, str], float]] = {
    "token_sort_ratio": fuzz.token_sort_ratio,
    "token_set_ratio": fuzz.token_set_ratio,
    "WRatio": fuzz.WRatio,
    "ratio": fuzz.ratio,
    "QRatio": fuzz.QRatio,
}
MATCH, BROADER, NARROWER, SIBLING, NO_MATCH = "match", "broader", "narrower", "sibling", "none"


@dataclass(frozen=True)
class NameForm:
    """A normalised name cut into the parts the comparison treats differently.

    Attributes:
        name: The normalised name.
        content: Words that identify the disease (no generic words, no distinguishing tokens).
        words: The content words in the order of the name.
        codes: Distinguishing tokens in order (type numbers and letters, roman numerals, gene symbols, Ig and amyloid
            classes, Greek letters, age of onset); a number directly followed by a letter is one code
            (``type 1 a`` -> ``1a``).
        blockers: Negation / alternative words: both names must have the same ones.
        listy: The raw text looked like a list ("X, Y", "X and Y"): no credit for merely containing a gold name.
        acronyms: Content words written with two capitals or more in the raw text (PAPASH, PsAPASH, McArdle):
            compared without typo tolerance.
    """

    name: str
    content: frozenset[str]
    words: tuple[str, ...]
    codes: tuple[str, ...]
    blockers: frozenset[str]
    listy: bool = False
    acronyms: frozenset[str] = frozenset()


def is_code(token: str) -> bool:
    """Is a normalised token a distinguishing token (see :attr:`NameForm.codes`)?"""
    return token in CLASS_CODES or token in AGE_CODES or _CODE.fullmatch(token) is not None


def acronyms(raw: str) -> frozenset[str]:
    """The lower-cased words of a raw name written with at least two capitals ("PsAPASH", "CHARGE")."""
    return frozenset(w.lower() for w in _ACRONYM.findall(raw))


def name_form(normalized: str, listy: bool = False, acronyms: frozenset[str] = frozenset()) -> NameForm:
    """Cut a normalised name (see :func:`medzero_pl.rewards.names.normalize_name`) into a :class:`NameForm`;
    ``acronyms``: see :func:`acronyms`."""
    tokens = normalized.split()
    distinct = not DISTINCT_EPONYMS.isdisjoint(tokens)
    codes: list[str] = []
    words: list[str] = []
    previous_was_code = False
    for token in tokens:
        if is_code(token) or (distinct and token in ("disease", "syndrome")):
            if previous_was_code and _joins(codes[-1], token):
                codes[-1] += token  # "1 a" -> "1a", "igg 4" -> "igg4"
            else:
                codes.append(token)
            previous_was_code = True
            continue
        previous_was_code = False
        if token not in GENERIC_WORDS and not _misspelt_generic(token):
            words.append(token)
    blockers = frozenset(t for t in tokens if t in BLOCKING_WORDS)
    return NameForm(normalized, frozenset(words), tuple(words), tuple(codes), blockers, listy, acronyms & set(words))


@lru_cache(maxsize=65536)
def _misspelt_generic(token: str) -> bool:
    """Is the token "syndrome", "disease" or "disorder" with one typo ("syndrme", "disaese")?"""
    return len(token) >= 6 and any(OSA.distance(token, word, score_cutoff=1) <= 1 for word in _LONG_GENERIC_WORDS)


_LONG_GENERIC_WORDS = ("syndrome", "disease", "disorder")


def _joins(code: str, token: str) -> bool:
    """Does ``token`` continue ``code`` as one code: a number then a letter ("1 a"), or a class then a number?"""
    if code in AGE_CODES or token in AGE_CODES:
        return False
    return (code[-1].isdigit() and len(token) == 1 and token.isalpha()) or (code[-1].isalpha() and token[0].isdigit())


def _refines(code: str, broader: str) -> bool:
    """Is ``code`` a subtype of ``broader`` by its spelling: ``4b2`` of ``4b``, ``2a`` of ``2``, ``igg4`` of ``igg``
    (never ``12`` of ``1`` nor ``2dd`` of ``2d``: the continuation must switch between digits and letters)?"""
    n = len(broader)
    return len(code) > n and code.startswith(broader) and code[n - 1].isdigit() != code[n].isdigit()


def code_relation(answer: Sequence[str], gold: Sequence[str]) -> str:
    """How the answer's distinguishing tokens relate to the gold's: :data:`MATCH` (the same), :data:`NARROWER` (the
    gold's and more: "type 1a" for "type 1", "juvenile X" for "X"), :data:`BROADER` (fewer: "type 1" for "type 1a")
    or :data:`SIBLING` (a differing token: "type 1" / "type 2", "IIIA" / "IIIB", "COL4A5" / "COL4A3", "IgG4" / "IgE",
    "juvenile" / "adult").

    Tokens are compared as multisets, so a number shared elsewhere in the name cannot stand in for a differing type
    number ("X 3 type 2" vs "X 3 type 3" differ).
    """
    extra, missing = list(answer), list(gold)
    for code in answer:
        if code in missing:
            extra.remove(code)
            missing.remove(code)
    narrower = broader = False
    for code in list(extra):
        for other in missing:
            if _refines(code, other) or _refines(other, code):
                narrower, broader = narrower or _refines(code, other), broader or _refines(other, code)
                extra.remove(code)
                missing.remove(other)
                break
    narrower, broader = narrower or bool(extra), broader or bool(missing)
    if narrower and broader:
        return SIBLING
    return NARROWER if narrower else BROADER if broader else MATCH


def compare_names(
    answer: NameForm, gold: NameForm, threshold: float, scorer: str = "token_sort_ratio", max_extra_words: int = 3
) -> str:
    """:data:`MATCH` (the gold disease, spelt differently), :data:`BROADER` (a broader form: "Still disease" for
    "Adult-onset Still disease"), :data:`NARROWER` (a more specific form: "Familial X" or "X type 2" for "X"),
    :data:`SIBLING` (same family, a differing distinguishing token: "Gaucher disease type 2" for "Gaucher disease
    type 1") or :data:`NO_MATCH`.

    Rules, in order: equal names match; negations/alternatives must agree; names with no content words only match
    exactly; the content words both names share are set aside, and what remains must be a spelling variant (see
    :func:`spelling_variants`) without opposed words (hypo- / hyper-, acute / chronic); an answer holding all of the
    gold's content words plus at most ``max_extra_words`` words that are :data:`QUALIFIERS` or trail the gold name
    ("Idiopathic multicentric Castleman disease" for "Castleman disease") is narrower, unless it reads as a list; an
    answer whose content words are a strict subset of the gold's is broader. Then the distinguishing tokens
    (:func:`code_relation`) must be the same for a match. Narrower is not a match: Orphanet lists "Familial X",
    "Adult-onset X" and "X type 4" beside "X" as siblings, so a string cannot tell a subtype from a sibling.
    """
    if answer.name == gold.name:
        return MATCH
    if answer.blockers != gold.blockers or not answer.content or not gold.content:
        return NO_MATCH
    only_answer, only_gold = answer.content - gold.content, gold.content - answer.content
    if only_answer and only_gold:
        if not spelling_variants(answer, gold, threshold, scorer) or _opposed(only_answer, only_gold):
            return NO_MATCH
        content = MATCH
    elif only_answer:
        specific = only_answer <= QUALIFIERS or answer.name.startswith(gold.name + " ")
        if answer.listy or len(only_answer) > max_extra_words or not specific:
            return NO_MATCH
        content = NARROWER  # "Idiopathic multicentric Castleman disease", "MMN with conduction block"
    else:
        content = BROADER if only_gold else MATCH
    verdicts = {content, code_relation(answer.codes, gold.codes)} - {MATCH}
    return verdicts.pop() if len(verdicts) == 1 else SIBLING if verdicts else MATCH


_BRITISH = (("ae", "e"), ("oe", "e"), ("our", "or"))
_MIN_TYPO_LETTERS = 6


@lru_cache(maxsize=65536)
def _spelling_key(word: str) -> str:
    """A word without British digraphs or a plural / possessive ``s``: haemorrhagic, oedema, tumour, Wilsons."""
    for british, american in _BRITISH:
        word = word.replace(british, american)
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def spelling_variants(answer: NameForm, gold: NameForm, threshold: float, scorer: str = "token_sort_ratio") -> bool:
    """Are the content words only one name has the same words spelt differently?

    Yes if they agree word for word up to British spelling and a final ``s`` ("haemoglobinuria", "Wilsons"), or
    once joined ("osteo arthritis" / "osteoarthritis"); or if every differing word has at least 6 letters, they
    differ by at most one typo per word (an insertion, deletion, substitution or swap of neighbours: "hemoglobinurea",
    "adolsecence") and their ``scorer`` similarity is >= ``threshold``. Only the differing words are scored, never
    the whole name, so a long shared stem cannot make a differing word look like a typo; and two typos are a
    different word (glioblastoma / lipoblastoma, branching / debranching), while one typo in a short word is too
    (maternal / paternal, ectropion / entropion: below the threshold). Short words (acronyms such as PAPASH /
    PsAPASH) must agree up to spelling.
    """
    raw_mine = [w for w in answer.words if w not in gold.content]
    raw_theirs = [w for w in gold.words if w not in answer.content]
    mine, theirs = list(map(_spelling_key, raw_mine)), list(map(_spelling_key, raw_theirs))
    if sorted(mine) == sorted(theirs) or "".join(mine) == "".join(theirs):
        return True
    if min(map(len, raw_mine + raw_theirs)) < _MIN_TYPO_LETTERS or answer.acronyms | gold.acronyms:
        return False
    a, b = " ".join(sorted(raw_mine)), " ".join(sorted(raw_theirs))
    typos = max(len(mine), len(theirs))
    return OSA.distance(a, b, score_cutoff=typos + 1) <= typos and SCORERS[scorer](a, b) >= 100 * threshold


def _opposed(words: frozenset[str], others: frozenset[str]) -> bool:
    """Does a word of one name contradict a word of the other ("hypokalemic" / "hyperkalemic", "acute" /
    "chronic")?"""
    if not words or not others:
        return False
    if any(frozenset((w, o)) in OPPOSITE_WORDS for w in words for o in others):
        return True
    prefixes: dict[str, set[str]] = {}
    for word in words:
        for prefix, stem in _prefix_stems(word):
            prefixes.setdefault(stem, set()).add(prefix)
    return any(prefixes.get(stem, {prefix}) - {prefix} for other in others for prefix, stem in _prefix_stems(other))


@lru_cache(maxsize=65536)
def _prefix_stems(word: str) -> tuple[tuple[str, str], ...]:
    return tuple((p, word[len(p) :]) for p in OPPOSED_PREFIXES if word.startswith(p) and len(word) - len(p) >= 4)


@dataclass(frozen=True)
class FuzzyMatcher:
    """The configuration of the fuzzy mode (see :func:`fuzzy_score`)."""

    lexicon: Lexicon
    threshold: float = 0.88
    scorer: str = "token_sort_ratio"
    partial_credit: float = 0.0
    hypernym_credit: float = 0.5
    max_extra_words: int = 3


@lru_cache(maxsize=4096)
def _gold_forms(golds: tuple[str, ...], lexicon: Lexicon) -> tuple[tuple[NameForm, ...], tuple[NameForm, ...]]:
    """Forms of the gold names with their synonyms, and of their hypernyms (cached: a group of G completions
    shares one gold)."""
    names = {v for g in golds for v in name_variants(g)}
    equivalents = lexicon.equivalents(names)
    broader = lexicon.broader(names) - equivalents
    caps = frozenset().union(*map(acronyms, golds))
    return tuple(name_form(n, False, caps) for n in sorted(equivalents)), tuple(map(name_form, sorted(broader)))


def fuzzy_score(candidate: str, golds: tuple[str, ...], matcher: FuzzyMatcher) -> float:
    """1.0 if the candidate names a gold diagnosis (or a synonym); ``matcher.hypernym_credit`` if it names a narrow
    Orphanet parent of one; ``matcher.partial_credit`` if it names the same family (a sibling, a broader or a more
    specific form: see :func:`compare_names`); else 0.0."""
    name = clean_candidate(candidate)
    if not name or len(name) > _MAX_NAME_CHARS:
        return 0.0
    listy = bool(_LISTY.search(name))
    caps = acronyms(name)
    answers = [name_form(n, listy, caps) for n in matcher.lexicon.equivalents(name_variants(name))]
    equivalents, parents = _gold_forms(golds, matcher.lexicon)
    verdicts = set()
    for a in answers:
        for g in equivalents:
            verdicts.add(compare_names(a, g, matcher.threshold, matcher.scorer, matcher.max_extra_words))
            if MATCH in verdicts:
                return 1.0
    best = matcher.partial_credit if verdicts & {BROADER, NARROWER, SIBLING} else 0.0
    if matcher.hypernym_credit > best and any(
        compare_names(a, p, matcher.threshold, matcher.scorer, matcher.max_extra_words) == MATCH
        for a in answers
        for p in parents
    ):
        best = matcher.hypernym_credit
    return best


# ----------------------------------------------------------------------------------------------- modes and reward


def _diagnosis_zero_mode() -> CandidateScore:
    return diagnosis_zero_score


def _fuzzy_mode(
    threshold: float = 0.88,
    scorer: str = "token_sort_ratio",
    partial_credit: float = 0.0,
    builtin_synonyms: bool = True,
    synonyms_path: str | None = None,
    hypernym_path: str | None = None,
    hypernym_credit: float = 0.5,
    hypernym_max_diseases: int = 10,
    max_extra_words: int = 3,
) -> CandidateScore:
    if not _is_number(threshold) or not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {sorted(SCORERS)}, got {scorer!r}")
    for label, credit in (("partial_credit", partial_credit), ("hypernym_credit", hypernym_credit)):
        if not _is_number(credit) or not 0.0 <= credit < 1.0:
            raise ValueError(f"{label} must be a number in [0, 1), got {credit!r}")
    for label, count in (("hypernym_max_diseases", hypernym_max_diseases), ("max_extra_words", max_extra_words)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {count!r}")
    if not isinstance(builtin_synonyms, bool):
        raise ValueError(f"builtin_synonyms must be true or false, got {builtin_synonyms!r}")
    lexicon = load_lexicon(builtin_synonyms, synonyms_path, hypernym_path, hypernym_max_diseases)
    matcher = FuzzyMatcher(lexicon, threshold, scorer, partial_credit, hypernym_credit, max_extra_words)
    return partial(fuzzy_score, matcher=matcher)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


MODES: dict[str, Callable[..., CandidateScore]] = {"diagnosis_zero": _diagnosis_zero_mode, "fuzzy": _fuzzy_mode}
"""Mode name -> builder of a ``(candidate, golds) -> score`` function; the builder's keywords are the mode's."""


def diagnosis_match(
    text: str,
    diagnoses: Any,
    task: Any = None,
    *,
    score: CandidateScore,
    top_k: int | None = None,
    policy: str = "first",
    fallbacks: Sequence[str] = (),
) -> float | None:
    """The best ``score`` of the first ``top_k`` listed diagnoses of the completion's answer (or of the whole answer
    if ``top_k`` is None); 0.0 without an answer; ``None`` if the row has no gold diagnosis or another task."""
    if task is not None and task != DIAGNOSIS:
        return None
    golds = clean_gold(diagnoses)
    if not golds:
        return None
    answer = extract_answer(text, policy, fallbacks)
    if answer is None:
        return 0.0
    candidates = [answer] if top_k is None else split_diagnoses(answer)[:top_k] or [answer]
    return max(score(c, golds) for c in candidates)


def diagnosis_match_reward(
    mode: str = "fuzzy",
    top_k: int | None = None,
    policy: str = "first",
    fallbacks: Sequence[str] = (),
    **mode_kwargs: Any,
) -> BatchReward:
    """Registry factory for :func:`diagnosis_match`.

    Args:
        mode: ``"fuzzy"`` or ``"diagnosis_zero"`` (the seed's rule; takes no further keywords).
        top_k: ``None``: the answer is one name. ``k``: read it as a ranked list, score the best of the first k
            (RareArena's top-1 / top-5).
        policy: Several ``<answer>`` blocks: ``"first"`` (the seed's choice), ``"last"`` or ``"reject"``.
        fallbacks: Evaluation only, e.g. ``["answer_is", "boxed"]``; see :mod:`medzero_pl.rewards.extract`.
        **mode_kwargs: For ``"fuzzy"``: ``threshold`` (0.88, the similarity in [0, 1] a typo needs), ``scorer``
            (``"token_sort_ratio"``; also ``token_set_ratio``, ``WRatio``, ``ratio``, ``QRatio``),
            ``partial_credit`` (0.0: credit for a same-family name: a sibling, a broader or a more specific one),
            ``builtin_synonyms`` (True), ``synonyms_path``,
            ``hypernym_path`` (RareArena ``orphanet_hypernym.json``), ``hypernym_credit`` (0.5),
            ``hypernym_max_diseases`` (10, as RareArena's judge), ``max_extra_words`` (3).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
    fallbacks = check_extraction(policy, fallbacks)
    accepted = list(inspect.signature(MODES[mode]).parameters)
    unknown = sorted(set(mode_kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"mode {mode!r} does not take {unknown}; its keywords are {accepted or 'none'}")
    score = MODES[mode](**mode_kwargs)
    item = partial(diagnosis_match, score=score, top_k=top_k, policy=policy, fallbacks=fallbacks)
    return BatchReward("diagnosis_match", item, required=("diagnoses",), optional=("task",))
