"""Rule-based rewards for R1-Zero style RL on medical questions (standard library + rapidfuzz only).

Each reward is a pure per-item function ``(completion text, gold fields) -> float | None``, lifted once to the
TRL / open-r1 batch convention ``reward(prompts, completions, **columns) -> list[float | None]``
(:mod:`~medzero_pl.rewards.batch`); ``None`` means "not applicable to this row". Runs configure a weighted list
(:func:`build_rewards`, ``conf/rewards/*.yaml``).

Modules: ``extract`` (the ``<answer>`` block), ``mcq`` (option-letter accuracy), ``diagnosis``
(disease-name matching: a package), ``format``, ``length``, ``language``, ``grade`` (a row's own grader), ``registry``.
"""

from medzero_pl.rewards.batch import BatchReward, completion_text
from medzero_pl.rewards.diagnosis import (
    diagnosis_match,
    diagnosis_zero_similarity,
    fuzzy_score,
    normalize_name,
    split_diagnoses,
)
from medzero_pl.rewards.extract import extract_answer, text_after_answer
from medzero_pl.rewards.format import strict_format, tag_count_format
from medzero_pl.rewards.grade import make_grader
from medzero_pl.rewards.language import foreign_script_fraction
from medzero_pl.rewards.length import cosine_length, repetition_penalty, soft_overlong
from medzero_pl.rewards.mcq import mcq_accuracy, open_medical_r1_accuracy, parse_choice
from medzero_pl.rewards.registry import REWARDS, RewardOutput, RewardSet, RewardSpec, build_rewards, check_rewards

__all__ = [
    "REWARDS",
    "BatchReward",
    "RewardOutput",
    "RewardSet",
    "RewardSpec",
    "build_rewards",
    "check_rewards",
    "completion_text",
    "cosine_length",
    "diagnosis_match",
    "diagnosis_zero_similarity",
    "extract_answer",
    "foreign_script_fraction",
    "fuzzy_score",
    "make_grader",
    "mcq_accuracy",
    "normalize_name",
    "open_medical_r1_accuracy",
    "parse_choice",
    "repetition_penalty",
    "soft_overlong",
    "split_diagnoses",
    "strict_format",
    "tag_count_format",
    "text_after_answer",
]
