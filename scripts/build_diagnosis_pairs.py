"""Build the labelled (answer, gold, full credit?) pairs that measure the diagnosis matcher.

python scripts/build_diagnosis_pairs.py                 # writes scripts/data/diagnosis_pairs.jsonl
python scripts/build_diagnosis_pairs.py --hypernyms PATH --out PATH

Two sources (``source`` in each row):

* ``orphanet``: drawn with a fixed seed from RareArena's ``orphanet_hypernym.json`` (``../shared/data/rarearena``):
  siblings with confusable names (``full: false``), parent / child pairs in both directions (``false``: a broader or
  a more specific entity is not the diagnosis), unrelated disorders with near spellings (``false``), and
  disorders whose names differ by one similar long word ("Glioblastoma" / "Lipoblastoma": ``false``), and
  meaning-preserving rewrites of real names (``true``): roman / arabic type numbers, hyphens, case, British
  spelling, eponym possessives, a qualifier or a type moved after a comma, a dropped "type", a hedge
  ("Probable ..."), markdown or end punctuation, one typo in a long word.
* ``hand``: cases written here: synonyms as Orphanet lists them (written from memory of Orphanet's synonym lists,
  not extracted: the synonym file is not on this machine), abbreviations, hedges and lists, word order, punctuation,
  and each class of distinguishing token (type numbers and letters, IIIA / IIIB, 2a / 2b, 4B2 / 4A, gene symbols,
  Ig and amyloid classes, Greek letters, age of onset, Cushing disease / syndrome).

``split`` is ``calibration`` or ``heldout`` by a hash of the gold name's first two words, so a family's pairs stay on
one side. Only derived pairs are written; the Orphanet file itself is never copied.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from itertools import combinations
from pathlib import Path

from rapidfuzz import fuzz, process

from medzero_pl.rewards.diagnosis import normalize_name
from medzero_pl.rewards.diagnosis.calibration import orphanet_relations, orphanet_siblings

ROOT = Path(__file__).resolve().parents[1]
HYPERNYMS = ROOT.parent / "shared" / "data" / "rarearena" / "orphanet_hypernym.json"
OUT = ROOT / "scripts" / "data" / "diagnosis_pairs.jsonl"

# (answer, gold) pairs that deserve full credit: Orphanet synonyms (from memory of Orphanet's lists).
SYNONYMS = [
    ("Glycogen storage disease type II", "Pompe disease"),
    ("Acid maltase deficiency", "Pompe disease"),
    ("Pompe disease", "Glycogen storage disease due to acid maltase deficiency"),
    ("Anderson-Fabry disease", "Fabry disease"),
    ("Alpha-galactosidase A deficiency", "Fabry disease"),
    ("Hepatolenticular degeneration", "Wilson disease"),
    ("Glucocerebrosidase deficiency", "Gaucher disease"),
    ("Mucopolysaccharidosis type 2", "Hunter syndrome"),
    ("Mucopolysaccharidosis type 3", "Sanfilippo syndrome"),
    ("Mucopolysaccharidosis type 6", "Maroteaux-Lamy syndrome"),
    ("Mucopolysaccharidosis type 7", "Sly syndrome"),
    ("Von Gierke disease", "Glycogen storage disease type 1"),
    ("McArdle disease", "Glycogen storage disease type 5"),
    ("Cori disease", "Glycogen storage disease type 3"),
    ("Andersen disease", "Glycogen storage disease type 4"),
    ("Globoid cell leukodystrophy", "Krabbe disease"),
    ("Hexosaminidase A deficiency", "Tay-Sachs disease"),
    ("Werdnig-Hoffmann disease", "Spinal muscular atrophy type 1"),
    ("Kugelberg-Welander disease", "Spinal muscular atrophy type 3"),
    ("Steinert disease", "Myotonic dystrophy type 1"),
    ("Proximal myotonic myopathy", "Myotonic dystrophy type 2"),
    ("Rendu-Osler-Weber disease", "Hereditary hemorrhagic telangiectasia"),
    ("Adamantiades-Behcet disease", "Behcet disease"),
    ("Pulseless disease", "Takayasu arteritis"),
    ("Mucocutaneous lymph node syndrome", "Kawasaki disease"),
    ("Von Recklinghausen disease", "Neurofibromatosis type 1"),
    ("Central neurofibromatosis", "Neurofibromatosis type 2"),
    ("Bourneville syndrome", "Tuberous sclerosis complex"),
    ("Marchiafava-Micheli disease", "Paroxysmal nocturnal hemoglobinuria"),
    ("Polyostotic sclerosing histiocytosis", "Erdheim-Chester disease"),
    ("Histiocytosis X", "Langerhans cell histiocytosis"),
    ("Angiofollicular lymph node hyperplasia", "Castleman disease"),
    ("Primary biliary cirrhosis", "Primary biliary cholangitis"),
    ("Mucoviscidosis", "Cystic fibrosis"),
    ("Branched-chain ketoaciduria", "Maple syrup urine disease"),
    ("Homogentisic acid oxidase deficiency", "Alkaptonuria"),
    ("Lou Gehrig disease", "Amyotrophic lateral sclerosis"),
    ("Huntington chorea", "Huntington disease"),
    ("Louis-Bar syndrome", "Ataxia-telangiectasia"),
    ("Encephalotrigeminal angiomatosis", "Sturge-Weber syndrome"),
    ("Trisomy 21", "Down syndrome"),
    ("Trisomy 18", "Edwards syndrome"),
    ("Trisomy 13", "Patau syndrome"),
    ("Monosomy X", "Turner syndrome"),
    ("DiGeorge syndrome", "22q11.2 deletion syndrome"),
    ("Williams-Beuren syndrome", "Williams syndrome"),
    ("Martin-Bell syndrome", "Fragile X syndrome"),
    ("Factor VIII deficiency", "Hemophilia A"),
    ("Christmas disease", "Hemophilia B"),
    ("Factor IX deficiency", "Hemophilia B"),
    ("Moschcowitz disease", "Thrombotic thrombocytopenic purpura"),
    ("Idiopathic thrombocytopenic purpura", "Immune thrombocytopenia"),
    ("Kahler disease", "Multiple myeloma"),
    ("Hodgkin disease", "Hodgkin lymphoma"),
    ("Besnier-Boeck-Schaumann disease", "Sarcoidosis"),
    ("Wegener granulomatosis", "Granulomatosis with polyangiitis"),
    ("Churg-Strauss syndrome", "Eosinophilic granulomatosis with polyangiitis"),
    ("Anti-glomerular basement membrane disease", "Goodpasture syndrome"),
    ("Systemic scleroderma", "Systemic sclerosis"),
    ("Wermer syndrome", "Multiple endocrine neoplasia type 1"),
    ("Sipple syndrome", "Multiple endocrine neoplasia type 2A"),
    ("Hereditary nonpolyposis colorectal cancer", "Lynch syndrome"),
    ("Nevoid basal cell carcinoma syndrome", "Gorlin syndrome"),
    ("Brittle bone disease", "Osteogenesis imperfecta"),
    ("Multiple enchondromatosis", "Ollier disease"),
    ("Osteitis deformans", "Paget disease of bone"),
    ("Histiocytic necrotizing lymphadenitis", "Kikuchi-Fujimoto disease"),
    ("Sinus histiocytosis with massive lymphadenopathy", "Rosai-Dorfman disease"),
    ("Congenital aganglionic megacolon", "Hirschsprung disease"),
    ("Kinky hair disease", "Menkes disease"),
    ("Phytanic acid storage disease", "Refsum disease"),
    ("Cerebrohepatorenal syndrome", "Zellweger syndrome"),
    ("Aspartoacylase deficiency", "Canavan disease"),
    ("Subacute necrotizing encephalomyelopathy", "Leigh syndrome"),
    ("Fundus flavimaculatus", "Stargardt disease"),
    ("Devic disease", "Neuromyelitis optica"),
    ("Hughes syndrome", "Antiphospholipid syndrome"),
    ("Tropheryma whipplei infection", "Whipple disease"),
    ("Lambert-Eaton syndrome", "Lambert-Eaton myasthenic syndrome"),
    ("Alstrom syndrome", "Alström syndrome"),
    ("Ehlers-Danlos syndrome type 4", "Vascular Ehlers-Danlos syndrome"),
]
ABBREVIATIONS = [
    ("GPA", "Granulomatosis with polyangiitis"),
    ("PNH", "Paroxysmal nocturnal hemoglobinuria"),
    ("NMOSD", "Neuromyelitis optica spectrum disorder"),
    ("AIP", "Acute intermittent porphyria"),
    ("HLH", "Hemophagocytic lymphohistiocytosis"),
    ("TTP", "Thrombotic thrombocytopenic purpura"),
    ("CIDP", "Chronic inflammatory demyelinating polyneuropathy"),
    ("LCH", "Langerhans cell histiocytosis"),
    ("HHT", "Hereditary hemorrhagic telangiectasia"),
    ("DMD", "Duchenne muscular dystrophy"),
    ("CJD", "Creutzfeldt-Jakob disease"),
    ("HAE", "Hereditary angioedema"),
    ("SLE", "Systemic lupus erythematosus"),
    ("PSC", "Primary sclerosing cholangitis"),
    ("FMF", "Familial Mediterranean fever"),
    ("AOSD", "Adult-onset Still disease"),
    ("LEMS", "Lambert-Eaton myasthenic syndrome"),
    ("GBS", "Guillain-Barre syndrome"),
    ("aHUS", "Atypical hemolytic uremic syndrome"),
    ("IgG4-RD", "IgG4-related disease"),
    ("MFS", "Marfan syndrome"),
    ("CMT1A", "Charcot-Marie-Tooth disease type 1A"),
    ("SMA type 1", "Spinal muscular atrophy type 1"),
    ("PKU", "Phenylketonuria"),
    ("MSUD", "Maple syrup urine disease"),
    ("VHL disease", "Von Hippel-Lindau disease"),
    ("FAP", "Familial adenomatous polyposis"),
    ("LHON", "Leber hereditary optic neuropathy"),
    ("MEN1", "Multiple endocrine neoplasia type 1"),
    ("MPS II", "Mucopolysaccharidosis type 2"),
    ("Granulomatosis with polyangiitis (GPA)", "GPA"),
    ("Amyotrophic lateral sclerosis (ALS)", "Amyotrophic lateral sclerosis"),
]
WORDING = [  # word order, punctuation, spelling, hedges: all full credit
    ("Mediterranean fever, familial", "Familial Mediterranean fever"),
    ("Diabetes mellitus type 1", "Type 1 diabetes mellitus"),
    ("Ehlers-Danlos syndrome, vascular type", "Vascular Ehlers-Danlos syndrome"),
    ("Eaton-Lambert syndrome", "Lambert-Eaton myasthenic syndrome"),
    ("Blackfan-Diamond anemia", "Diamond-Blackfan anemia"),
    ("Gaucher disease, type 1", "Gaucher disease type 1"),
    ("Gaucher's disease, type I", "Gaucher disease type 1"),
    ("Niemann-Pick disease, type C", "Niemann-Pick disease type C"),
    ("Glycogen storage disease type IIIa", "Glycogen storage disease type 3a"),
    ("Mucopolysaccharidosis type IIIB", "Mucopolysaccharidosis type 3B"),
    ("Charcot-Marie-Tooth disease type 4B2", "Charcot-Marie-Tooth disease, type 4B2"),
    ("Spinal muscular atrophy type I", "Spinal muscular atrophy type 1"),
    ("Wilson's disease (hepatolenticular degeneration)", "Wilson disease"),
    ("Fabry disease.", "Fabry disease"),
    ("**Fabry disease**", "Fabry disease"),
    ("Erdheim–Chester disease", "Erdheim-Chester disease"),
    ("Sjögren syndrome", "Sjogren syndrome"),
    ("Behcet's disease", "Behçet disease"),
    ("Paroxysmal nocturnal haemoglobinuria", "Paroxysmal nocturnal hemoglobinuria"),
    ("Paroxysmal nocturnal hemoglobinurea", "Paroxysmal nocturnal hemoglobinuria"),
    ("Hereditary haemorrhagic telangiectasia", "Hereditary hemorrhagic telangiectasia"),
    ("Wilsons disease", "Wilson's disease"),
    ("Kawasaki syndrome", "Kawasaki disease"),
    ("Adult onset Still's disease", "Adult-onset Still disease"),
    ("Cushing's disease", "Cushing disease"),
    ("IgG4 related disease", "IgG4-related disease"),
    ("ATTR amyloidosis", "Attr amyloidosis"),
    ("Alpha 1 antitrypsin deficiency", "Alpha-1-antitrypsin deficiency"),
    ("COL4A5-related Alport syndrome", "Alport syndrome, COL4A5-related"),
]
HEDGES = [
    ("Probable Fabry disease", "Fabry disease", True),
    ("Fabry disease (probable)", "Fabry disease", True),
    ("Fabry disease, probable", "Fabry disease", True),
    ("Most likely Pompe disease", "Pompe disease", True),
    ("Suspected Wilson disease", "Wilson disease", True),
    ("Diagnosis: Gaucher disease type 1", "Gaucher disease type 1", True),
    ("Likely diagnosis is Takayasu arteritis", "Takayasu arteritis", True),
    ("Fabry disease or Gaucher disease", "Fabry disease", False),
    ("Fabry vs Gaucher disease", "Gaucher disease", False),
    ("Not Fabry disease", "Fabry disease", False),
    ("No evidence of Fabry disease", "Fabry disease", False),
    ("Fabry disease unlikely", "Fabry disease", False),
    ("Fabry disease, Gaucher disease", "Gaucher disease", False),
    ("Fabry disease ruled out", "Fabry disease", False),
    ("Pompe disease or Danon disease", "Pompe disease", False),
    ("Type 1 or type 2 diabetes mellitus", "Type 1 diabetes mellitus", False),
    ("Hemophilia A or B", "Hemophilia A", False),
]
# (answer, gold) pairs that differ by a distinguishing token (or name another disease): never full credit.
DISTINGUISHING = [
    ("Glycogen storage disease type IIIa", "Glycogen storage disease type IIIb"),
    ("Mucopolysaccharidosis type IIIA", "Mucopolysaccharidosis type IIIB"),
    ("Mucopolysaccharidosis type IIIC", "Mucopolysaccharidosis type IIIA"),
    ("Charcot-Marie-Tooth disease type 2A", "Charcot-Marie-Tooth disease type 2B"),
    ("Charcot-Marie-Tooth disease type 4B2", "Charcot-Marie-Tooth disease type 4A"),
    ("Charcot-Marie-Tooth disease type 4B1", "Charcot-Marie-Tooth disease type 4B2"),
    ("Charcot-Marie-Tooth disease type 1A", "Charcot-Marie-Tooth disease type 1B"),
    ("Limb-girdle muscular dystrophy type 2a", "Limb-girdle muscular dystrophy type 2b"),
    ("COL4A5-related Alport syndrome", "COL4A3-related Alport syndrome"),
    ("SCN1A-related epilepsy", "SCN2A-related epilepsy"),
    ("IgG4-related disease", "IgE-related disease"),
    ("IgA nephropathy", "IgM nephropathy"),
    ("Selective IgA deficiency", "Selective IgM deficiency"),
    ("ATTR amyloidosis", "AA amyloidosis"),
    ("AL amyloidosis", "AA amyloidosis"),
    ("Hereditary ATTR amyloidosis", "AL amyloidosis"),
    ("Alpha-thalassemia", "Beta-thalassemia"),
    ("Alpha-mannosidosis", "Beta-mannosidosis"),
    ("Infantile-onset Pompe disease", "Late-onset Pompe disease"),
    ("Juvenile neuronal ceroid lipofuscinosis", "Late infantile neuronal ceroid lipofuscinosis"),
    ("Adult Krabbe disease", "Infantile Krabbe disease"),
    ("Juvenile Huntington disease", "Huntington disease"),
    ("Type 1 diabetes", "Type 2 diabetes"),
    ("Type 1 diabetes mellitus", "Type 2 diabetes mellitus"),
    ("Spinal muscular atrophy type 1", "Spinal muscular atrophy type 2"),
    ("Spinal muscular atrophy type I", "Spinal muscular atrophy type II"),
    ("Neurofibromatosis type 1", "Neurofibromatosis type 2"),
    ("Gaucher disease type 2", "Gaucher disease type 1"),
    ("Niemann-Pick disease type C", "Niemann-Pick disease type A"),
    ("Mucopolysaccharidosis type I", "Mucopolysaccharidosis type II"),
    ("Glycogen storage disease type I", "Glycogen storage disease type II"),
    ("Primary hyperoxaluria type 1", "Primary hyperoxaluria type 2"),
    ("Multiple endocrine neoplasia type 2A", "Multiple endocrine neoplasia type 2B"),
    ("Autoimmune polyendocrine syndrome type 1", "Autoimmune polyendocrine syndrome type 2"),
    ("Hemophilia A", "Hemophilia B"),
    ("Xeroderma pigmentosum group A", "Xeroderma pigmentosum group C"),
    ("Fanconi anemia complementation group A", "Fanconi anemia complementation group C"),
    ("Hereditary spastic paraplegia 3 type 2", "Hereditary spastic paraplegia 3 type 3"),
    ("Cushing syndrome", "Cushing disease"),
    ("Cushing disease", "Cushing syndrome due to ectopic ACTH secretion"),
    ("Caroli disease", "Caroli syndrome"),
    ("Myotonic dystrophy type 1", "Myotonic dystrophy"),  # more specific: partial at most
    ("Gaucher disease", "Gaucher disease type 1"),  # broader
    ("Still disease", "Adult-onset Still disease"),
    ("Classic infantile-onset Pompe disease", "Pompe disease"),
    ("Idiopathic multicentric Castleman disease", "Castleman disease"),
    ("Hypokalemic periodic paralysis", "Hyperkalemic periodic paralysis"),
    ("Congenital adrenal hypoplasia", "Congenital adrenal hyperplasia"),
    ("Primary hyperparathyroidism", "Secondary hyperparathyroidism"),
    ("Acute myeloid leukemia", "Chronic myeloid leukemia"),
    ("Non-Hodgkin lymphoma", "Hodgkin lymphoma"),
    ("Eosinophilic granulomatosis with polyangiitis", "Granulomatosis with polyangiitis"),
    ("Microscopic polyangiitis", "Granulomatosis with polyangiitis"),
    ("Atypical hemolytic uremic syndrome", "Hemolytic uremic syndrome"),
    ("Pseudo-Hurler polydystrophy", "Hurler syndrome"),
    ("Unicentric Castleman disease", "Idiopathic multicentric Castleman disease"),
    ("Benign familial neonatal seizures", "Benign familial infantile seizures"),
    ("Paroxysmal cold hemoglobinuria", "Paroxysmal nocturnal hemoglobinuria"),
    ("Duchenne muscular dystrophy", "Becker muscular dystrophy"),
    ("Autoimmune hepatitis", "Autoimmune pancreatitis"),
    ("Porphyria cutanea tarda", "Acute intermittent porphyria"),
    ("Myasthenia gravis", "Lambert-Eaton myasthenic syndrome"),
    ("Marfan syndrome", "Loeys-Dietz syndrome"),
    ("Menkes disease", "Wilson's disease"),
    ("Danon disease", "Pompe disease"),
    ("Disease", "Fabry disease"),
    ("Syndrome", "Marfan syndrome"),
]

_TYPE_NUMBER = re.compile(r"\b(type|Type) (\d{1,2}|[IVX]{1,4})\b")
_ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV", "XV"]
_BRITISH = [("hemo", "haemo"), ("hema", "haema"), ("edema", "oedema"), ("esophag", "oesophag"), ("anemia", "anaemia")]
_BRITISH += [("leukemia", "leukaemia"), ("tumor", "tumour"), ("fetal", "foetal"), ("pediatric", "paediatric")]
_ADJECTIVES = {"familial", "hereditary", "congenital", "idiopathic", "primary", "isolated", "classic", "acquired"}
_HEDGES = ["Probable {}", "Most likely {}", "Suspected {}", "Diagnosis: {}", "{} (probable)", "Likely {}"]
_MARKUP = ["{}.", "**{}**", "{};", "  {}  ", "`{}`"]


def _roman_arabic(name: str) -> str | None:
    match = _TYPE_NUMBER.search(name)
    if not match:
        return None
    value = match.group(2)
    if value.isdigit():
        new = _ROMAN[int(value) - 1] if 0 < int(value) <= len(_ROMAN) else None
    else:
        new = str(_ROMAN.index(value) + 1) if value in _ROMAN else None
    return None if new is None else name[: match.start(2)] + new + name[match.end(2) :]


def _british(name: str) -> str | None:
    for us, uk in _BRITISH:
        if us in name:
            return name.replace(us, uk, 1)
    return None


def _possessive(name: str) -> str | None:
    match = re.fullmatch(r"([A-Z][a-z]{3,}) (disease|syndrome)(.*)", name)
    return f"{match.group(1)}'s {match.group(2)}{match.group(3)}" if match else None


def _comma_qualifier(name: str) -> str | None:
    first, _, rest = name.partition(" ")
    return f"{rest[0].upper()}{rest[1:]}, {first.lower()}" if first.lower() in _ADJECTIVES and rest else None


def _comma_type(name: str) -> str | None:
    match = re.fullmatch(r"(.+) (type \w+)", name)
    return f"{match.group(1)}, {match.group(2)}" if match and "," not in name else None


def _drop_type(name: str) -> str | None:
    match = re.fullmatch(r"(.+) type (\d+[A-Za-z]?)", name)
    return f"{match.group(1)} {match.group(2)}" if match else None


def _hyphens(name: str) -> str | None:
    return name.replace("-", " ") if "-" in name else None


def _typo(name: str, rng: random.Random) -> str | None:
    """One typo (deletion, doubling, substitution or swap of neighbours) in a word of at least 8 letters."""
    words = [w for w in re.findall(r"[A-Za-z]+", name) if len(w) >= 8]
    if not words:
        return None
    word = rng.choice(words)
    i = rng.randrange(2, len(word) - 2)
    kind = rng.randrange(4)
    if kind == 0:
        typo = word[:i] + word[i + 1 :]
    elif kind == 1:
        typo = word[:i] + word[i] + word[i:]
    elif kind == 2:
        typo = word[:i] + rng.choice([c for c in "aeiourstnl" if c != word[i]]) + word[i + 1 :]
    else:
        typo = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return name.replace(word, typo, 1) if typo != word else None


def one_word_apart(path: Path, names: list[str], ancestors) -> list[tuple[str, str]]:
    """Distinct disorders whose names differ by one word of 8+ letters on each side, the two words similar
    (rapidfuzz ratio >= 70): "Glioblastoma" / "Lipoblastoma", "Maternal / Paternal uniparental disomy ..."."""
    from medzero_pl.rewards.diagnosis import name_form

    index: dict[tuple, list[tuple[str, str]]] = {}
    for name in names:
        form = name_form(normalize_name(name))
        for word in form.content:
            if len(word) >= 8:
                index.setdefault((form.content - {word}, form.codes), []).append((word, name))
    pairs = []
    for group in index.values():
        for (w1, n1), (w2, n2) in combinations(group, 2):
            if w1 != w2 and n1 not in ancestors(n2) and n2 not in ancestors(n1) and fuzz.ratio(w1, w2) >= 70:
                pairs.append((n1, n2))
    return sorted(set(pairs))


def _split(gold: str) -> str:
    family = " ".join(normalize_name(gold).split()[:2])
    return "calibration" if hashlib.md5(family.encode()).digest()[0] % 2 == 0 else "heldout"


def _row(answer: str, gold: str, full: bool, kind: str, source: str) -> dict:
    return {"answer": answer, "gold": gold, "full": full, "kind": kind, "source": source, "split": _split(gold)}


def orphanet_rows(path: Path, rng: random.Random) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    parents, ancestors = orphanet_relations(path)
    counts = {p["parent"]: p["parent_disease_count"] for r in records for p in r["parents"]}
    names = sorted(parents)
    rows = []

    siblings = orphanet_siblings(path)
    coded = [p for p in siblings if re.search(r"\d|\b[IVX]+[A-Da-d]?\b|\b[A-Z]\b", p[0] + p[1])]
    other = [p for p in siblings if p not in set(coded)]
    for a, b in rng.sample(coded, 110) + rng.sample(other, 70):
        answer, gold = (a, b) if rng.random() < 0.5 else (b, a)
        rows.append(_row(answer, gold, False, "sibling", "orphanet"))

    family = [
        (child, parent)
        for child in names
        for parent in parents[child]
        if parent in parents and counts.get(parent, 99) <= 10 and fuzz.token_sort_ratio(child, parent) >= 70
    ]
    for child, parent in rng.sample(family, 80):
        rows.append(_row(parent, child, False, "broader", "orphanet"))
        rows.append(_row(child, parent, False, "narrower", "orphanet"))

    normalized = [normalize_name(n) for n in names]
    close = process.cdist(normalized, normalized, scorer=fuzz.ratio, score_cutoff=88, workers=1)
    near = [
        (names[i], names[j])
        for i, j in zip(*close.nonzero(), strict=True)
        if i < j
        and names[i] not in ancestors(names[j])
        and names[j] not in ancestors(names[i])
        and not set(parents[names[i]]) & set(parents[names[j]])
    ]
    for a, b in rng.sample(near, 80):
        answer, gold = (a, b) if rng.random() < 0.5 else (b, a)
        rows.append(_row(answer, gold, False, "near_spelling", "orphanet"))

    for a, b in one_word_apart(path, names, ancestors):  # all of them: they bound the threshold from below
        answer, gold = (a, b) if rng.random() < 0.5 else (b, a)
        rows.append(_row(answer, gold, False, "one_word", "orphanet"))

    rewrites = [_roman_arabic, _british, _possessive, _comma_qualifier, _comma_type, _drop_type, _hyphens]
    for name in rng.sample(names, 450):
        options = [(f.__name__.strip("_"), f(name)) for f in rewrites] + [("typo", _typo(name, rng))]
        options = [(kind, v) for kind, v in options if v and v != name]
        if options:
            kind, answer = rng.choice(options)
            rows.append(_row(answer, name, True, f"variant:{kind}", "orphanet"))
    for name in rng.sample(names, 40):
        rows.append(_row(rng.choice(_HEDGES).format(name), name, True, "hedge", "orphanet"))
        rows.append(_row(rng.choice(_MARKUP).format(name), name, True, "punctuation", "orphanet"))
    return rows


def hand_rows() -> list[dict]:
    rows = [_row(a, g, True, "synonym", "hand") for a, g in SYNONYMS]
    rows += [_row(a, g, True, "abbreviation", "hand") for a, g in ABBREVIATIONS]
    rows += [_row(a, g, True, "wording", "hand") for a, g in WORDING]
    rows += [_row(a, g, full, "hedge", "hand") for a, g, full in HEDGES]
    for answer, gold in DISTINGUISHING:
        rows += [
            _row(answer, gold, False, "distinguishing", "hand"),
            _row(gold, answer, False, "distinguishing", "hand"),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypernyms", type=Path, default=HYPERNYMS, help="RareArena orphanet_hypernym.json")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = orphanet_rows(args.hypernyms, random.Random(args.seed)) + hand_rows()
    unique = list({(r["answer"], r["gold"]): r for r in rows}.values())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for row in unique:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    full = sum(r["full"] for r in unique)
    print(f"wrote {len(unique)} pairs ({full} full credit, {len(unique) - full} not) to {args.out}")


if __name__ == "__main__":
    main()
