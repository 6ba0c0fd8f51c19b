"""Language consistency: how much of a completion is written outside the expected script.

R1-Zero runs drift into language mixing (DeepSeek-R1, section 2.3.2); in the seed runs, English answers were
followed by Chinese or Japanese text after ``</answer>``. The default detector counts letters by Unicode script
with a handful of compiled character classes: no model download, a few microseconds per completion, and exact for
the case that matters (Latin vs CJK). It cannot tell English from French (same script); the optional ``lingua``
backend can (``pip install lingua-language-detector``; imported only when asked for).

``foreign_script_fraction``, ``script_counts`` and ``dominant_script`` are shared with the language-mixing statistics
(``medzero_pl.callbacks.language``), so the reward and the statistics detect scripts the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache, partial
from typing import Any

from medzero_pl.rewards.batch import BatchReward
from medzero_pl.rewards.extract import tagged_answer, text_after_answer

SCRIPTS: dict[str, str] = {
    "latin": "A-Za-z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff\u2c60-\u2c7f\ua720-\ua7ff"
    "\uff21-\uff3a\uff41-\uff5a",
    "greek": "\u0370-\u03ff\u1f00-\u1fff",
    "cyrillic": "\u0400-\u052f",
    "han": "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f",
    "hiragana": "\u3040-\u309f",
    "katakana": "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f",
    "hangul": "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af",
    "arabic": "\u0600-\u06ff\u0750-\u077f",
    "hebrew": "\u0590-\u05ff",
    "devanagari": "\u0900-\u097f",
    "thai": "\u0e00-\u0e7f",
}
"""Script name -> character ranges (letters of other scripts count as foreign whatever their name)."""
LANGUAGES: dict[str, tuple[str, ...]] = {
    "en": ("latin",),
    "fr": ("latin",),
    "de": ("latin",),
    "es": ("latin",),
    "zh": ("han",),
    "ja": ("han", "hiragana", "katakana"),
    "ko": ("hangul", "han"),
    "ru": ("cyrillic",),
}
"""Language code -> its scripts, so ``expected`` can be ``"en"`` or ``"zh"`` as well as a script name."""
ALLOWED_IN_SCIENCE = ("greek",)
"""Scripts tolerated by default whatever the language: medical text writes alpha-galactosidase as α-galactosidase."""

_NON_LETTERS = re.compile(r"[\W\d_]+")


def scripts_of(expected: str | Iterable[str]) -> tuple[str, ...]:
    """Script names for a script name, a language code, or a list of either; raises on unknown names."""
    names = [expected] if isinstance(expected, str) else list(expected)
    out: list[str] = []
    for name in names:
        if name in SCRIPTS:
            out.append(name)
        elif name in LANGUAGES:
            out += LANGUAGES[name]
        else:
            raise ValueError(
                f"unknown script or language {name!r}; scripts: {sorted(SCRIPTS)}, languages: {sorted(LANGUAGES)}"
            )
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=64)
def _script_letters(scripts: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(f"[{''.join(SCRIPTS[s] for s in scripts)}]+")


def foreign_script_fraction(
    text: str, expected: str | Sequence[str] = "latin", allowed: Sequence[str] = ALLOWED_IN_SCIENCE
) -> float:
    """The fraction of the letters of ``text`` that belong to neither the ``expected`` scripts nor the ``allowed``
    ones (digits, punctuation, symbols and spaces are not letters); 0.0 for text without letters.

    ``foreign_script_fraction("Fabry disease</answer>这是法布里病")`` is 6 / 24 = 0.25: 18 Latin letters (the tag's
    included) and 6 Han characters.
    """
    scripts = scripts_of(expected) + scripts_of(allowed)
    if "latin" in scripts and text.isascii():
        return 0.0
    letters = _NON_LETTERS.sub("", text)  # two C-level passes, no per-character Python work
    if not letters:
        return 0.0
    return len(_script_letters(scripts).sub("", letters)) / len(letters)


def script_counts(text: str) -> dict[str, int]:
    """Letters per script of :data:`SCRIPTS` (only scripts present), plus ``"other"`` for letters of none of them.

    ``script_counts("Fabry 病")`` is ``{"latin": 5, "han": 1}``.
    """
    letters = _NON_LETTERS.sub("", text)
    counts: dict[str, int] = {}
    if not letters:
        return counts
    if letters.isascii():
        return {"latin": len(letters)}
    for name in SCRIPTS:
        n = len(letters) - len(_script_letters((name,)).sub("", letters))
        if n:
            counts[name] = n
    other = len(_script_letters(tuple(SCRIPTS)).sub("", letters))
    if other:
        counts["other"] = other
    return counts


def dominant_script(text: str, allowed: Sequence[str] = ALLOWED_IN_SCIENCE) -> str | None:
    """The script with the most letters, ignoring ``allowed`` ones (Greek by default); None for text without any.

    Japanese text mixes kana and Han; its dominant script is whichever has more letters, and the language-mixing
    statistics treat Han and kana as one family (see :data:`LANGUAGES` ``"ja"``) when asked to.
    """
    counts = {k: v for k, v in script_counts(text).items() if k not in set(allowed)}
    return max(counts, key=counts.__getitem__) if counts else None


WRITING_SYSTEMS: tuple[tuple[str, ...], ...] = (("han", "hiragana", "katakana"), ("hangul", "han"))
"""Scripts written together in one language (Japanese, Korean): a switch between them is not a language change."""


def script_family(script: str) -> tuple[str, ...]:
    """The scripts one language writes together with ``script``: ``"hiragana"`` -> Han, hiragana and katakana."""
    for family in WRITING_SYSTEMS:
        if script in family:
            return family
    return (script,)


@lru_cache(maxsize=1)
def _lingua_detector() -> Any:
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError as e:
        raise ImportError(
            "the 'lingua' language backend needs the lingua-language-detector package: "
            "pip install lingua-language-detector"
        ) from e
    return LanguageDetectorBuilder.from_all_languages().build()


def lingua_foreign_fraction(text: str, expected: str = "en") -> float:
    """Like :func:`foreign_script_fraction` but by language (lingua): the fraction of the text's characters in
    sections detected as another language than ``expected`` (an ISO 639-1 code); 0.0 if nothing is detected."""
    from lingua import IsoCode639_1, Language

    target = Language.from_iso_code_639_1(getattr(IsoCode639_1, expected.upper()))
    sections = _lingua_detector().detect_multiple_languages_of(text)
    total = sum(s.end_index - s.start_index for s in sections)
    foreign = sum(s.end_index - s.start_index for s in sections if s.language != target)
    return foreign / total if total else 0.0


REGIONS = {
    "completion": lambda text: text,
    "answer": lambda text: tagged_answer(text) or "",
    "after_answer": text_after_answer,
}
"""Which part of the completion is measured."""


def _script_backend(expected: str | Sequence[str], allowed: Sequence[str]) -> Callable[[str], float]:
    scripts_of(expected), scripts_of(allowed)  # validate now
    return partial(foreign_script_fraction, expected=expected, allowed=tuple(allowed))


def _lingua_backend(expected: str | Sequence[str], allowed: Sequence[str]) -> Callable[[str], float]:
    if not (isinstance(expected, str) and len(expected) == 2):
        raise ValueError(f"the lingua backend needs one ISO 639-1 code such as 'en', got {expected!r}")
    _lingua_detector()  # a missing install fails at build time, not mid-training
    return partial(lingua_foreign_fraction, expected=expected)


BACKENDS = {"script": _script_backend, "lingua": _lingua_backend}
"""Backend name -> builder of a ``text -> foreign fraction`` function."""


def language_consistency(text: str, foreign_fraction: Callable[[str], float], region: str = "completion") -> float:
    """Minus the foreign fraction of the chosen region: 0.0 (consistent) down to -1.0 (all foreign)."""
    return 0.0 - foreign_fraction(REGIONS[region](text))


def language_consistency_reward(
    expected: str | Sequence[str] = "latin",
    allowed: Sequence[str] = ALLOWED_IN_SCIENCE,
    region: str = "completion",
    backend: str = "script",
) -> BatchReward:
    """Registry factory for :func:`language_consistency` (a penalty in [-1, 0]).

    Args:
        expected: Script name(s) or language code(s) for ``backend="script"``; one ISO 639-1 code (``"en"``) for
            ``backend="lingua"``.
        allowed: Scripts never counted as foreign by the script backend (default Greek, for α / β / μ).
        region: ``"completion"``, ``"answer"`` (the first ``<answer>`` block) or ``"after_answer"``.
        backend: ``"script"`` (default, built in) or ``"lingua"`` (optional package, imported at build time).
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {sorted(REGIONS)}, got {region!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    fraction = BACKENDS[backend](expected, allowed)
    return BatchReward("language_consistency", partial(language_consistency, foreign_fraction=fraction, region=region))
