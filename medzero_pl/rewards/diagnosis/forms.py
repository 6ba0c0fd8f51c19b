"""A normalised disease name cut into the parts the fuzzy matcher compares differently (:class:`NameForm`).

Content words identify the disease; generic words ("disease", "syndrome", hedges) are left out; distinguishing
tokens (type numbers and letters, gene symbols, Ig and amyloid classes, Greek letters, ages of onset) must agree
for full credit; negations and alternatives must be the same on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz.distance import OSA

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
_CODE = re.compile(r"\w*\d\w*|[a-z]")  # a digit anywhere (2, 2a, 4b2, col4a5, igg4, 11p15) or a single letter
_ACRONYM = re.compile(r"\b[A-Za-z]*[A-Z][a-z]*[A-Z][A-Za-z]*\b")


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
    """Cut a normalised name (see :func:`~medzero_pl.rewards.diagnosis.names.normalize_name`) into a :class:`NameForm`;
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
