"""Disease names as comparable objects: normalisation, equivalent names (synonyms) and broader names (hypernyms).

Two spellings of one disease differ in ways that say nothing about the diagnosis: case, accents (Sjögren), unicode
dashes (Erdheim–Chester), possessives (Wilson's), parenthetical qualifiers or abbreviations ("Granulomatosis with
polyangiitis (GPA)"), roman numerals (type II). :func:`normalize_name` removes those; :class:`Lexicon` adds what no
string rule can know: that GPA is Wegener granulomatosis, or that Pompe disease is "Glycogen storage disease due to
acid maltase deficiency" (an RDC case where the case's ``diagnosis`` and its ``Orpha_name`` differ).

Synonyms file (JSON): ``{"name": ["equivalent name", ...], ...}``; every name in an entry is equivalent to every
other. Hypernym file: RareArena's ``orphanet_hypernym.json``, a list of
``{"Orphanetid", "name", "type", "parents": [{"parent", "parent_child_count", "parent_disease_count"}]}``.
RareArena's updated judge (``eval/eval_updated.py``) gives score 1 to an answer naming one of the parents whose
``parent_disease_count`` is at most 10 (a narrow category), and score 2 to the diagnosis or a strict synonym.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-")
_APOSTROPHES = dict.fromkeys(map(ord, "\u2018\u2019\u02bc\u2032\uff07`"), "'")
_POSSESSIVE = re.compile(r"(?<=\w)'s\b|(?<=s)'(?!\w)")
_NON_WORD = re.compile(r"[\W_]+")
_PARENTHETICAL = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_HAS_DIGIT = re.compile(r"\d")
_ROMAN = {
    numeral: str(value)
    for value, numeral in enumerate(
        [
            "i",
            "ii",
            "iii",
            "iv",
            "v",
            "vi",
            "vii",
            "viii",
            "ix",
            "x",
            "xi",
            "xii",
            "xiii",
            "xiv",
            "xv",
            "xvi",
            "xvii",
            "xviii",
            "xix",
            "xx",
        ],
        start=1,
    )
}

_WORDS_LIKE_NUMERALS = frozenset(["via", "id", "if"])  # "ID" is intellectual disability, not type 1d


def normalize_name(name: str) -> str:
    """Lower-case ASCII-folded words: accents, dashes, possessives and punctuation removed, roman numerals made
    arabic, also with a subtype letter (``"Gaucher's disease, type I"`` -> ``"gaucher disease type 1"``,
    ``"type IIIB"`` -> ``"type 3b"``). Parenthesised text is kept as words; :func:`name_variants` decides what to
    do with it."""
    s = name.translate(_DASHES).translate(_APOSTROPHES)
    if not s.isascii():
        s = "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))
    s = s.casefold()
    s = _NON_WORD.sub(" ", _POSSESSIVE.sub("", s))
    return " ".join(map(_arabic, s.split()))


def _arabic(token: str) -> str:
    """A roman numeral as arabic digits, keeping a subtype letter a-f: ``iii`` -> ``3``, ``iiib`` -> ``3b``."""
    if token in _ROMAN:
        return _ROMAN[token]
    if len(token) > 1 and token[-1] in "abcdef" and token[:-1] in _ROMAN and token not in _WORDS_LIKE_NUMERALS:
        return _ROMAN[token[:-1]] + token[-1]
    return token


def name_variants(name: str) -> list[str]:
    """The normalised readings of a name: without its parentheticals, with them, and each parenthetical alone.

    ``"Hepatolenticular degeneration (Wilson disease)"`` -> ``["hepatolenticular degeneration",
    "hepatolenticular degeneration wilson disease", "wilson disease"]``. A parenthetical holding a digit is part of
    the name, never dropped nor read alone: in ``"AML with t(8;21)(q22;q22)"`` or ``"Gaucher disease (type 1)"`` it
    is what tells the disease from its siblings.
    """
    coded = [m.group() for m in _PARENTHETICAL.finditer(name) if _HAS_DIGIT.search(m.group())]
    kept = _PARENTHETICAL.sub(lambda m: m.group() if m.group() in coded else " ", name)
    variants = [normalize_name(kept), normalize_name(name)]
    alone = [normalize_name(m.group()[1:-1]) for m in _PARENTHETICAL.finditer(name) if m.group() not in coded]
    variants += [v for v in alone if any(len(t) > 1 for t in v.split())]  # "(GPA)", not the "(P)" of NAD(P)HX
    return list(dict.fromkeys(v for v in variants if v))


# Equivalent names for the rare diseases of the RDC examples and common abbreviations. A starting point, not a
# thesaurus: pass a synonyms file for more. Each group lists names that denote the same disease.
BUILTIN_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("Granulomatosis with polyangiitis", "GPA", "Wegener granulomatosis", "Wegener's granulomatosis"),
    ("Guillain-Barre syndrome", "GBS"),
    ("Acute intermittent porphyria", "AIP"),
    ("Paroxysmal nocturnal hemoglobinuria", "PNH"),
    ("Neuromyelitis optica spectrum disorder", "NMOSD", "Neuromyelitis optica", "NMO", "Devic disease"),
    ("Amyotrophic lateral sclerosis", "ALS", "Lou Gehrig disease"),
    (
        "Pompe disease",
        "Glycogen storage disease due to acid maltase deficiency",
        "Glycogen storage disease type II",
        "GSD type II",
        "GSD II",
        "Acid maltase deficiency",
        "Acid alpha-glucosidase deficiency",
    ),
    ("Fabry disease", "Anderson-Fabry disease", "Alpha-galactosidase A deficiency"),
    ("Wilson disease", "Hepatolenticular degeneration"),
    ("Lambert-Eaton myasthenic syndrome", "LEMS", "Lambert-Eaton syndrome"),
    ("Familial Mediterranean fever", "FMF"),
    ("Adult-onset Still disease", "AOSD"),
    ("Erdheim-Chester disease", "Erdheim-Chester histiocytosis"),
    ("Multifocal motor neuropathy", "MMN"),
    ("Kawasaki disease", "Kawasaki syndrome", "Mucocutaneous lymph node syndrome"),
    ("Takayasu arteritis", "Pulseless disease"),
    ("Idiopathic multicentric Castleman disease", "iMCD"),
    ("Whipple disease", "Tropheryma whipplei infection"),
    ("Hemophagocytic lymphohistiocytosis", "HLH"),
    ("Thrombotic thrombocytopenic purpura", "TTP"),
    ("Atypical hemolytic uremic syndrome", "aHUS"),
    ("Chronic inflammatory demyelinating polyneuropathy", "CIDP"),
    ("Langerhans cell histiocytosis", "LCH", "Histiocytosis X"),
    ("Hereditary hemorrhagic telangiectasia", "HHT", "Osler-Weber-Rendu disease", "Rendu-Osler-Weber disease"),
    ("Neurofibromatosis type 1", "NF1", "Von Recklinghausen disease"),
    ("Tuberous sclerosis complex", "TSC", "Tuberous sclerosis"),
    ("Duchenne muscular dystrophy", "DMD"),
    ("Creutzfeldt-Jakob disease", "CJD"),
    ("Hereditary angioedema", "HAE"),
    ("Antiphospholipid syndrome", "Hughes syndrome"),
    ("IgG4-related disease", "IgG4-RD"),
    ("Systemic lupus erythematosus", "SLE"),
    ("Primary biliary cholangitis", "PBC", "Primary biliary cirrhosis"),
    ("Primary sclerosing cholangitis", "PSC"),
)


@dataclass(frozen=True, eq=False)  # hashed by identity: matchers cache per lexicon
class Lexicon:
    """What is known about names beyond their spelling, keyed by normalised name.

    Attributes:
        synonyms: name -> every name equivalent to it (itself included).
        hypernyms: name -> broader names (narrow Orphanet parent categories) of that disease.
        disorders: Every name of the hypernym file (Orphanet's disorders), whether or not it has narrow parents.
    """

    synonyms: Mapping[str, frozenset[str]] = field(default_factory=dict)
    hypernyms: Mapping[str, frozenset[str]] = field(default_factory=dict)
    disorders: frozenset[str] = frozenset()

    def equivalents(self, names: Iterable[str]) -> set[str]:
        """The given normalised names and all their synonyms."""
        out = set()
        for name in names:
            out |= self.synonyms.get(name, {name})
        return out

    def broader(self, names: Iterable[str]) -> set[str]:
        """The hypernyms of any of the given normalised names (synonyms included)."""
        out = set()
        for name in self.equivalents(names):
            out |= self.hypernyms.get(name, frozenset())
        return out

    def narrower(self, names: Iterable[str]) -> set[str]:
        """The Orphanet subtypes of any of the given normalised names (synonyms included): the disorders below them,
        at any depth, through narrow parents only (a category of at most ``hypernym_max_diseases`` diseases)."""
        children: dict[str, set[str]] = _children(self)
        found: set[str] = set()
        todo = list(self.equivalents(names))
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found


@lru_cache(maxsize=16)
def _children(lexicon: Lexicon) -> dict[str, set[str]]:
    """parent -> its direct children: the hypernym table turned round (once per lexicon)."""
    out: dict[str, set[str]] = {}
    for child, parents in lexicon.hypernyms.items():
        for parent in parents:
            out.setdefault(parent, set()).add(child)
    return out


def synonym_table(groups: Iterable[Iterable[str]]) -> dict[str, frozenset[str]]:
    """Merge groups of equivalent names into ``normalised name -> equivalence class`` (transitively)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        names = [normalize_name(n) for n in group if isinstance(n, str)]
        names = [n for n in names if n]
        for other in names[1:]:
            parent[root(other)] = root(names[0])
        for name in names[:1]:
            root(name)
    classes: dict[str, set[str]] = {}
    for name in parent:
        classes.setdefault(root(name), set()).add(name)
    return {name: frozenset(members) for members in classes.values() for name in members}


def read_synonyms(path: str | os.PathLike) -> list[list[str]]:
    """Groups of equivalent names from a JSON file ``{"name": ["synonym", ...]}``; raises a clear error if not."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v) for k, v in data.items()
    ):
        raise ValueError(f"{path}: expected a JSON object mapping a name to a list of equivalent names")
    return [[name, *synonyms] for name, synonyms in data.items()]


def read_hypernyms(path: str | os.PathLike, max_diseases: int = 10) -> dict[str, frozenset[str]]:
    """``normalised disease name -> normalised parent names`` from RareArena's ``orphanet_hypernym.json``.

    Only parents grouping at most ``max_diseases`` diseases are kept, as in RareArena's judge: "Rare genetic
    disease" is a parent of thousands of entries and naming it says nothing.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{Orphanetid, name, type, parents}} records")
    out: dict[str, set[str]] = {}
    for record in data:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            raise ValueError(f"{path}: each record needs a 'name' and a 'parents' list, got {str(record)[:200]}")
        parents = {
            normalize_name(p["parent"])
            for p in record.get("parents") or ()
            if isinstance(p, dict)
            and isinstance(p.get("parent"), str)
            and not (isinstance(p.get("parent_disease_count"), int) and p["parent_disease_count"] > max_diseases)
        }
        out.setdefault(normalize_name(record["name"]), set()).update(parents - {""})
    return {name: frozenset(parents) for name, parents in out.items() if parents}


def read_disorder_names(path: str | os.PathLike) -> frozenset[str]:
    """The normalised names of every record of RareArena's ``orphanet_hypernym.json`` (checked by
    :func:`read_hypernyms`)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return frozenset(normalize_name(r["name"]) for r in data if isinstance(r, dict) and isinstance(r.get("name"), str))


@lru_cache(maxsize=16)
def _cached_lexicon(
    builtin: bool, synonyms: tuple[str, float] | None, hypernyms: tuple[str, float] | None, max_diseases: int
) -> Lexicon:
    groups: list[Iterable[str]] = list(BUILTIN_SYNONYMS) if builtin else []
    if synonyms:
        groups += read_synonyms(synonyms[0])
    return Lexicon(
        synonyms=synonym_table(groups),
        hypernyms=read_hypernyms(hypernyms[0], max_diseases) if hypernyms else {},
        disorders=read_disorder_names(hypernyms[0]) if hypernyms else frozenset(),
    )


def load_lexicon(
    builtin_synonyms: bool = True,
    synonyms_path: str | os.PathLike | None = None,
    hypernym_path: str | os.PathLike | None = None,
    hypernym_max_diseases: int = 10,
) -> Lexicon:
    """Build (once per file version: cached on path and modification time) the lexicon a matcher uses."""

    def key(path: str | os.PathLike | None) -> tuple[str, float] | None:
        return None if path is None else (os.fspath(path), os.path.getmtime(path))

    return _cached_lexicon(builtin_synonyms, key(synonyms_path), key(hypernym_path), hypernym_max_diseases)
