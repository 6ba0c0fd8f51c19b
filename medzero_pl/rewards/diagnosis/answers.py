"""Reading the answer: one diagnosis name cleaned of bullets and preambles, or a ranked list of them.

With ``top_k`` set, the reward reads the answer as a list (numbered lines, bullets, semicolons, ``or``, and commas
when each piece has several words) and the best of its first ``top_k`` items counts; ``top_k=None`` reads it as one
name.
"""

from __future__ import annotations

import re

_MAX_LIST_CHARS = 5000  # a top-5 list is a few hundred characters; bounds the work on pathological answers
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
