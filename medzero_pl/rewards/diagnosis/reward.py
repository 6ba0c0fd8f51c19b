"""The diagnosis reward: the best score of the answer's first ``top_k`` diagnoses under a matching mode."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from medzero_pl.rewards.batch import BatchReward
from medzero_pl.rewards.diagnosis.answers import split_diagnoses
from medzero_pl.rewards.diagnosis.fuzzy import SCORERS, FuzzyMatcher, fuzzy_score
from medzero_pl.rewards.diagnosis.names import load_lexicon
from medzero_pl.rewards.diagnosis.seed_rule import diagnosis_zero_score
from medzero_pl.rewards.extract import check_extraction, extract_answer

DIAGNOSIS = "diagnosis"
CandidateScore = Callable[[str, tuple[str, ...]], float]


def clean_gold(diagnoses: Any) -> tuple[str, ...]:
    """The gold names as a tuple of non-empty strings (a bare string counts as one name)."""
    if isinstance(diagnoses, str):
        diagnoses = [diagnoses]
    if not isinstance(diagnoses, Sequence):
        return ()
    return tuple(dict.fromkeys(d.strip() for d in diagnoses if isinstance(d, str) and d.strip()))


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
    narrower_credit: float = 0.0,
) -> CandidateScore:
    if not _is_number(threshold) or not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {sorted(SCORERS)}, got {scorer!r}")
    for label, credit in (("partial_credit", partial_credit), ("hypernym_credit", hypernym_credit)):
        if not _is_number(credit) or not 0.0 <= credit < 1.0:
            raise ValueError(f"{label} must be a number in [0, 1), got {credit!r}")
    if not _is_number(narrower_credit) or not 0.0 <= narrower_credit <= 1.0:
        raise ValueError(f"narrower_credit must be a number in [0, 1], got {narrower_credit!r}")
    if narrower_credit and hypernym_path is None:
        raise ValueError("narrower_credit needs hypernym_path (Orphanet tells a subtype from a sibling)")
    for label, count in (("hypernym_max_diseases", hypernym_max_diseases), ("max_extra_words", max_extra_words)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {count!r}")
    if not isinstance(builtin_synonyms, bool):
        raise ValueError(f"builtin_synonyms must be true or false, got {builtin_synonyms!r}")
    for label, path in (("synonyms_path", synonyms_path), ("hypernym_path", hypernym_path)):
        if path is not None and not os.path.isfile(path):
            raise ValueError(
                f"{label}: no file {os.fspath(path)!r} (relative to {os.getcwd()}); the diagnosis presets expect "
                "RareArena's benchmark_data files under data/rarearena/ (docs/rewards.md)"
            )
    lexicon = load_lexicon(builtin_synonyms, synonyms_path, hypernym_path, hypernym_max_diseases)
    matcher = FuzzyMatcher(
        lexicon, threshold, scorer, partial_credit, hypernym_credit, max_extra_words, narrower_credit
    )
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
            ``hypernym_max_diseases`` (10, as RareArena's judge), ``max_extra_words`` (3), ``narrower_credit`` (0.0:
            credit for a subtype of the gold, an Orphanet disorder below it or the gold's name made more specific;
            1.0 in the ``diagnosis_rubric`` preset, as the judge counts it; needs ``hypernym_path``).
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
