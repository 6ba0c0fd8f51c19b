"""Rewards by name, and the weighted set a config list builds.

A run's ``rewards`` config is a list of :class:`RewardSpec` (``conf/rewards/*.yaml``)::

    - {name: mcq_accuracy, weight: 1.0}
    - {name: strict_format, weight: 0.2, kwargs: {think_opened_in_prompt: true}}
    - {name: trl.rewards:think_format_reward, weight: 0.1}        # any TRL / open-r1 reward, unchanged

:func:`build_rewards` checks everything before training starts (unknown names with the closest valid one, bad
kwargs with the reward's name) and returns a :class:`RewardSet`. Calling the set scores a batch with every function
and sums ``weight * value`` per completion, where ``None`` ("not applicable to this row") contributes nothing, as
TRL's ``nansum``; a row on which every function returned ``None`` totals 0.0. A function that takes a ``log_metric``
keyword (TRL's callback: ``log_metric(name, value)``) gets one; what it logs is in :attr:`RewardOutput.metrics`.

A dotted name ``package.module:attribute`` is imported. Without kwargs the attribute is the reward function itself
(``trl.rewards:think_format_reward``); with kwargs it is a factory called with them
(``trl.rewards:get_soft_overlong_punishment`` with ``{max_completion_len: 1024, soft_punish_cache: 256}``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medzero_pl.errors import UserError
from medzero_pl.rewards.diagnosis import diagnosis_match_reward
from medzero_pl.rewards.format import format_steps_reward, strict_format_reward, tag_count_format_reward
from medzero_pl.rewards.judge.reward import diagnosis_judge_reward
from medzero_pl.rewards.language import language_consistency_reward
from medzero_pl.rewards.length import cosine_length_reward, repetition_penalty_reward, soft_overlong_reward
from medzero_pl.rewards.mcq import mcq_accuracy_reward, open_medical_r1_accuracy_reward

RewardFunction = Callable[..., Sequence[Any]]
log = logging.getLogger(__name__)

REWARDS: dict[str, Callable[..., RewardFunction]] = {
    "mcq_accuracy": mcq_accuracy_reward,
    "open_medical_r1_accuracy": open_medical_r1_accuracy_reward,
    "diagnosis_match": diagnosis_match_reward,
    "diagnosis_judge": diagnosis_judge_reward,
    "strict_format": strict_format_reward,
    "tag_count_format": tag_count_format_reward,
    "format_steps": format_steps_reward,
    "cosine_length": cosine_length_reward,
    "soft_overlong": soft_overlong_reward,
    "repetition_penalty": repetition_penalty_reward,
    "language_consistency": language_consistency_reward,
}
"""Registry name -> factory; the factory's keyword arguments are the reward's ``kwargs``."""


class RewardConfigError(UserError):
    """A reward that cannot be built or called as configured (its name, kwargs, columns or return values)."""


@dataclass
class RewardSpec:
    """One weighted reward of a run."""

    name: str
    """A registry name (``mcq_accuracy``, ``diagnosis_match``, ...) or an import path ``package.module:function``."""
    weight: float = 1.0
    """Multiplies the reward's values in the total."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the reward's factory (see ``REWARDS``)."""


@dataclass(frozen=True)
class RewardOutput:
    """Scores of one batch.

    Attributes:
        total: Per completion, ``sum(weight * value)`` over functions whose value is not ``None``.
        per_function: Function name -> its value per completion (``None`` where not applicable).
        metrics: What the functions logged through ``log_metric`` (the mean where one name was logged twice).
    """

    total: list[float]
    per_function: dict[str, list[float | None]]
    metrics: dict[str, float] = field(default_factory=dict)


class RewardFailedError(RuntimeError):
    """A reward function raised; the message names it (the original exception is the cause)."""


class RewardSet:
    """Weighted reward functions called as one: ``RewardSet(prompts, completions, **columns) -> RewardOutput``.

    ``names``, ``functions`` and ``weights`` are parallel tuples, so the same functions can be handed to TRL as
    ``reward_funcs`` / ``reward_weights``.
    """

    def __init__(self, names: Sequence[str], functions: Sequence[RewardFunction], weights: Sequence[float]) -> None:
        if not (len(names) == len(functions) == len(weights)) or len(set(names)) != len(names):
            raise RewardConfigError("names, functions and weights must be parallel, with unique names")
        self.names, self.functions, self.weights = tuple(names), tuple(functions), tuple(map(float, weights))
        self.logging = tuple(map(_takes_log_metric, self.functions))

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return "RewardSet(" + ", ".join(f"{n}*{w:g}" for n, w in zip(self.names, self.weights, strict=True)) + ")"

    def __call__(self, prompts: Any = None, completions: Sequence[Any] | None = None, **columns: Any) -> RewardOutput:
        if completions is None:
            raise RewardConfigError("RewardSet needs completions")
        n = len(completions)
        per_function = {}
        logged: dict[str, list[float]] = {}

        def log_metric(metric: str, value: float) -> None:
            logged.setdefault(metric, []).append(float(value))

        for name, function, logs in zip(self.names, self.functions, self.logging, strict=True):
            extra = {"log_metric": log_metric} if logs else {}
            try:
                values = function(prompts=prompts, completions=completions, **(columns | extra))
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise RewardFailedError(f"reward '{name}' raised {type(e).__name__}: {first}") from e
            per_function[name] = _check_values(name, values, n)
        total = []
        for i in range(n):
            terms = [w * v[i] for w, v in zip(self.weights, per_function.values(), strict=True) if v[i] is not None]
            total.append(float(sum(terms)) if terms else 0.0)
        return RewardOutput(total, per_function, {k: sum(v) / len(v) for k, v in logged.items()})

    def score(
        self, rows: Mapping[str, Sequence[Any]], completions: Sequence[Any], completion_ids: Sequence[Sequence[int]]
    ) -> RewardOutput:
        """Score completion `i` against row `i` of a batch laid out one row per completion: its `prompts` and gold
        columns (a `prompt_ids` column is not passed on), as a trainer calls TRL-style rewards."""
        columns = {key: values for key, values in rows.items() if key not in ("prompts", "prompt_ids")}
        return self(rows["prompts"], completions, completion_ids=completion_ids, **columns)


PROBE = "<think>probe</think><answer>probe</answer>"
"""The placeholder completion `check_rewards` scores."""


def check_rewards(rewards: RewardSet, items: Sequence[Mapping[str, Any]], per_source: int = 8) -> list[str]:
    """Score a placeholder completion on a few rows of every source before training, so a broken reward, or a reward
    set that applies to none of the data (MCQ rewards on diagnosis cases), fails at start-up.

    Args:
        items: Training rows (`prompts`, `source`, `task` and the gold columns), as the data module renders them.

    Returns:
        The rewards that apply to none of the rows (also logged as a warning); raises if that is all of them.
    """
    sample: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        rows = sample.setdefault(item["source"], [])
        if len(rows) < per_source:
            rows.append(item)
    rows = [row for group in sample.values() for row in group]
    if not rows:
        return []
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    try:
        scored = rewards.score(columns, [PROBE] * len(rows), [[0]] * len(rows))
    except RewardFailedError as err:
        raise RewardConfigError(f"rewards: {err} (start-up check on a placeholder completion)") from None
    unused = [name for name, values in scored.per_function.items() if all(v is None for v in values)]
    tasks = ", ".join(sorted({row["task"] for row in rows}))
    if len(unused) == len(scored.per_function):
        raise RewardConfigError(
            f"rewards: none of {unused} applies to the training data (tasks: {tasks}); every reward "
            "would be 0 and nothing would be learnt. Choose a reward preset that matches the data"
        )
    if unused:
        log.warning("rewards %s apply to none of the training data (tasks: %s)", unused, tasks)
    return unused


def _takes_log_metric(function: RewardFunction) -> bool:
    """Whether the function accepts TRL's ``log_metric`` keyword (by name or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "log_metric" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _check_values(name: str, values: Any, n: int) -> list[float | None]:
    """The function's values as floats / ``None`` (NaN counts as ``None``, as in TRL), or a clear error."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise RewardConfigError(f"reward '{name}' must return a list of {n} values, got {type(values).__name__}")
    if len(values) != n:
        raise RewardConfigError(f"reward '{name}' returned {len(values)} values for {n} completions")
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
        elif isinstance(value, numbers.Real) or hasattr(value, "__float__"):
            value = float(value)
            if math.isinf(value):
                raise RewardConfigError(
                    f"reward '{name}' returned {value} at index {i}: rewards must be finite "
                    "(an infinite reward makes the group's advantages NaN or 0); return None for not applicable"
                )
            out.append(None if math.isnan(value) else value)
        else:
            raise RewardConfigError(f"reward '{name}' returned {value!r} (a {type(value).__name__}) at index {i}")
    return out


def _plain(value: Any) -> Any:
    """Config containers (OmegaConf DictConfig / ListConfig) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def _as_spec(spec: RewardSpec | Mapping[str, Any]) -> RewardSpec:
    if isinstance(spec, RewardSpec):
        return RewardSpec(spec.name, spec.weight, _plain(spec.kwargs or {}))
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"name", "weight", "kwargs"}
        if unknown or "name" not in spec:
            raise RewardConfigError(f"a reward spec has keys name, weight, kwargs; got {sorted(map(str, spec))}")
        return RewardSpec(spec["name"], spec.get("weight", 1.0), _plain(spec.get("kwargs") or {}))
    raise RewardConfigError(f"a reward spec must be a RewardSpec or a mapping, got {type(spec).__name__}")


def _from_registry(name: str, kwargs: dict[str, Any]) -> RewardFunction:
    if name not in REWARDS:
        close = difflib.get_close_matches(name, REWARDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise RewardConfigError(
            f"unknown reward '{name}'{hint} Valid names: {', '.join(sorted(REWARDS))}, "
            "or an import path 'package.module:function'"
        )
    factory = REWARDS[name]
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        accepted = [p for p in inspect.signature(factory).parameters if p != "mode_kwargs"]
        raise RewardConfigError(f"reward '{name}': bad kwargs {sorted(kwargs)} ({e}); it accepts {accepted}") from None
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, OSError, ImportError) as e:
        raise RewardConfigError(f"reward '{name}': {e}") from e


def _from_import(path: str, kwargs: dict[str, Any]) -> RewardFunction:
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise RewardConfigError(f"reward '{path}': cannot import it ({e})") from e
    if kwargs:
        try:
            target = target(**kwargs)
        except Exception as e:
            raise RewardConfigError(f"reward '{path}': calling the factory with {sorted(kwargs)} failed: {e}") from e
    if not callable(target):
        raise RewardConfigError(f"reward '{path}' is not callable")
    return target


def build_rewards(specs: Iterable[RewardSpec | Mapping[str, Any]]) -> RewardSet:
    """Validate and build a weighted reward set; every configuration error is raised here, naming the reward.

    A reward listed twice gets a numbered name (``diagnosis_match``, ``diagnosis_match_2``) so that the
    per-function logs stay apart. An empty list builds an empty set (every total 0.0): whether a run may train
    without rewards is the config validation's call, not this function's.
    """
    names, functions, weights = [], [], []
    for raw in specs:
        spec = _as_spec(raw)
        if not isinstance(spec.name, str) or not spec.name:
            raise RewardConfigError(f"a reward name must be a non-empty string, got {spec.name!r}")
        weight = spec.weight
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise RewardConfigError(f"reward '{spec.name}': weight must be a finite number, got {weight!r}")
        if not isinstance(spec.kwargs, dict):
            raise RewardConfigError(f"reward '{spec.name}': kwargs must be a mapping, got {type(spec.kwargs).__name__}")
        dotted = ":" in spec.name
        function = (_from_import if dotted else _from_registry)(spec.name, spec.kwargs)
        base = spec.name.rpartition(":")[2].rpartition(".")[2] if dotted else spec.name
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
        functions.append(function)
        weights.append(float(weight))
    return RewardSet(names, functions, weights)
