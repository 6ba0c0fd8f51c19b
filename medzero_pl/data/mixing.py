"""Which examples a run trains on, and in what order: seeded sampling, mixing, splitting and curricula.

Pure functions over lists of :class:`Example`; the only I/O is :func:`load_sources`, which calls the readers.
The pipeline is ``load_sources -> mix -> train_val_split -> CURRICULA[name]`` on the training part.

Departure from the seed project: open-medical-r1's ``scripts/data_prepare.py`` drew its 1090 / 600 MedQA
questions with ``np.random.choice(lines, n)`` (with replacement, so duplicates, and unseeded) and split
MedXpertQA with an unseeded ``train_test_split``. Here every draw is seeded and without replacement, so a
recipe and a seed give the same examples on every machine, and asking for more than a source has is an error.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medzero_pl.data.readers import PACKAGE_PREFIX, read_examples
from medzero_pl.data.records import Example
from medzero_pl.errors import ConfigError, expect

DIFFICULTY_KEY = "difficulty"


@dataclass
class DataSource:
    """One benchmark file and how many of its examples a run takes."""

    path: str
    """The file, or ``medzero_pl:<path>`` for data shipped in the package."""
    format: str
    """A reader name from ``medzero_pl.data.readers.READERS`` (e.g. ``medqa``, ``medxpertqa``, ``rarearena``)."""
    name: str | None = None
    """The source label stored on each example and used in ids and logs. Default: the file's stem."""
    sample_size: int | None = None
    """Draw this many examples, seeded and without replacement (more than the file has is an error).
    None: all of them, or this source's ``weight`` share of ``train_size`` when a total is given."""
    weight: float = 1.0
    """This source's share of ``train_size`` among the sources without a ``sample_size``."""
    difficulty: float | None = None
    """Stamped into ``metadata["difficulty"]`` of examples that have none, so curricula can order whole
    sources (e.g. MedQA 0, MedXpertQA 1 for the seed's "easy and hard samples" advice)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options for the reader, e.g. ``{cop_base: 0}`` or ``{categories: [biology, health]}``."""

    def __post_init__(self) -> None:
        # Raised here rather than in `DataConfig.problems`: `mix` divides by the weights of any source built in Python.
        problems = [
            *expect(
                self.sample_size is None or self.sample_size >= 1, "sample_size", self.sample_size, ">= 1, or null"
            ),
            *expect(math.isfinite(self.weight) and self.weight > 0, "weight", self.weight, "a finite number > 0"),
        ]
        if problems:
            raise ConfigError(f"data source {self.path!r}: " + "; ".join(problems))

    @property
    def label(self) -> str:
        """The source label: ``name`` or the file's stem."""
        return self.name or Path(self.path.removeprefix(PACKAGE_PREFIX)).stem


def _with_difficulty(example: Example, difficulty: float) -> Example:
    if DIFFICULTY_KEY in example.metadata:
        return example
    return dataclasses.replace(example, metadata={**example.metadata, DIFFICULTY_KEY: difficulty})


def load_sources(sources: Sequence[DataSource]) -> list[list[Example]]:
    """Read every source with its reader (all examples; sampling happens in :func:`mix`)."""
    loaded = []
    for source in sources:
        examples = read_examples(source.path, source.format, source=source.label, **source.options)
        if source.difficulty is not None:
            examples = [_with_difficulty(e, source.difficulty) for e in examples]
        loaded.append(examples)
    return loaded


def _shares(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights``, rounding by largest remainder so the parts add up to it."""
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def sample_sizes(available: Sequence[int], sources: Sequence[DataSource], train_size: int | None = None) -> list[int]:
    """How many examples to take from each source.

    A source's ``sample_size`` is taken as is. The others take everything when ``train_size`` is None, and
    otherwise split what ``train_size`` leaves over in proportion to their ``weight``.
    """
    if len(available) != len(sources):
        raise ValueError(f"{len(available)} example lists for {len(sources)} sources")
    sizes: list[int | None] = [s.sample_size for s in sources]
    open_slots = [i for i, size in enumerate(sizes) if size is None]
    if train_size is not None:
        fixed = sum(size for size in sizes if size is not None)
        if train_size < fixed or (train_size > fixed and not open_slots) or train_size < 1:
            raise ValueError(
                f"train_size={train_size} cannot be met: sources with sample_size take {fixed}"
                + ("" if open_slots else " and none is left to fill the rest")
            )
        for i, share in zip(
            open_slots, _shares(train_size - fixed, [sources[i].weight for i in open_slots]), strict=True
        ):
            sizes[i] = share
    final = [available[i] if size is None else size for i, size in enumerate(sizes)]
    too_many = [
        f"{s.label}: wants {n} but has {have}" for s, n, have in zip(sources, final, available, strict=True) if n > have
    ]
    if too_many:
        raise ValueError(
            "sampling is without replacement, so a source cannot give more than it has: " + "; ".join(too_many)
        )
    return final


def mix(
    examples_per_source: Sequence[Sequence[Example]],
    sources: Sequence[DataSource],
    seed: int,
    train_size: int | None = None,
) -> list[Example]:
    """Draw each source's share (see :func:`sample_sizes`) and concatenate them in source order.

    Each source is drawn with its own generator seeded by ``(seed, label)``, so adding or reordering sources
    does not change what the others contribute. A source taken whole keeps its file order.
    """
    labels = [s.label for s in sources]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"source labels must be unique (they prefix example ids), repeated: {duplicates}; set 'name'")
    sizes = sample_sizes([len(e) for e in examples_per_source], sources, train_size)
    mixed: list[Example] = []
    for examples, source, size in zip(examples_per_source, sources, sizes, strict=True):
        if size == len(examples) and source.sample_size is None:
            mixed.extend(examples)
        else:
            mixed.extend(random.Random(f"{seed}/{source.label}").sample(list(examples), size))
    return mixed


def train_val_split(examples: Sequence[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Shuffle with ``seed`` and hold out ``round(len * val_fraction)`` examples (at least 1 and at most len-1
    when ``0 < val_fraction < 1``). Returns ``(train, val)``, both in shuffled order.

    DiagnosisZero's ``make_dataset.py`` took the first 70% of RareArena's file order as its training set;
    we shuffle first, so the split does not follow the file's publication-date order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_val = round(len(shuffled) * val_fraction)
    if val_fraction > 0:
        if len(shuffled) < 2:
            raise ValueError(f"cannot hold out a validation part from {len(shuffled)} example(s)")
        n_val = min(max(n_val, 1), len(shuffled) - 1)
    return shuffled[n_val:], shuffled[:n_val]


# --------------------------------------------------------------------------- curricula


def _difficulty(example: Example, key: str) -> float:
    value = example.metadata.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"{example.id} ({example.source}): curriculum needs a numeric metadata[{key!r}], got {value!r}; "
            "set it in the data or give the source a 'difficulty'"
        )
    return float(value)


def no_curriculum(
    examples: Sequence[Example], *, seed: int, key: str = DIFFICULTY_KEY, batch_size: int = 8
) -> list[Example]:
    """A seeded shuffle (``key`` and ``batch_size`` are unused)."""
    del key, batch_size
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def easy_to_hard(
    examples: Sequence[Example], *, seed: int, key: str = DIFFICULTY_KEY, batch_size: int = 8
) -> list[Example]:
    """Ascending ``metadata[key]``; a stable sort, so equally hard examples keep their input order.

    ``seed`` and ``batch_size`` are unused: the input already comes shuffled from :func:`train_val_split`.
    """
    del seed, batch_size
    return sorted(examples, key=lambda e: _difficulty(e, key))


def interleave(
    examples: Sequence[Example], *, seed: int, key: str = DIFFICULTY_KEY, batch_size: int = 8
) -> list[Example]:
    """Every batch of ``batch_size`` alternates easy and hard examples: easy, hard, easy, hard, ...

    The easier half (by a stable sort on ``metadata[key]``; the extra one of an odd count goes to it) and the
    harder half are each shuffled with ``seed``; each batch then takes ``ceil(B/2)`` easy and ``floor(B/2)``
    hard examples in alternation until one half runs out, after which the rest of the other half follows.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ranked = easy_to_hard(examples, seed=seed, key=key)
    middle = (len(ranked) + 1) // 2
    easy, hard = ranked[:middle], ranked[middle:]
    rng = random.Random(seed)
    rng.shuffle(easy)
    rng.shuffle(hard)
    ordered: list[Example] = []
    while easy and hard:
        batch_easy, batch_hard = easy[: (batch_size + 1) // 2], hard[: batch_size // 2]
        easy, hard = easy[len(batch_easy) :], hard[len(batch_hard) :]
        for i, example in enumerate(batch_easy):
            ordered.append(example)
            if i < len(batch_hard):
                ordered.append(batch_hard[i])
        ordered.extend(batch_hard[len(batch_easy) :])  # only when the easy half ran short in this batch
    return ordered + easy + hard


def easy_hard_ratio(
    examples: Sequence[Example],
    *,
    seed: int,
    key: str = DIFFICULTY_KEY,
    batch_size: int = 8,
    easy_share: float = 0.5,
    hard_above: float = 0.5,
) -> list[Example]:
    """Every batch of ``batch_size`` holds ``round(batch_size * easy_share)`` easy examples and the rest hard ones,
    shuffled within the batch (the seed's "mixing the complex and easy samples in one batch").

    Hard means ``metadata[key] >= hard_above`` (a source's ``difficulty`` 0 / 1, or 1 - the measured pass rate).
    Both pools are shuffled with ``seed``; batches are built until one pool cannot fill its share, after which the
    rest of both follows, shuffled.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = random.Random(seed)
    easy = [e for e in examples if _difficulty(e, key) < hard_above]
    hard = [e for e in examples if _difficulty(e, key) >= hard_above]
    rng.shuffle(easy)
    rng.shuffle(hard)
    n_easy = round(batch_size * easy_share)
    n_hard = batch_size - n_easy
    ordered: list[Example] = []
    while len(easy) >= n_easy and len(hard) >= n_hard and (easy or hard):
        batch = easy[:n_easy] + hard[:n_hard]
        easy, hard = easy[n_easy:], hard[n_hard:]
        rng.shuffle(batch)
        ordered.extend(batch)
    rest = easy + hard
    rng.shuffle(rest)
    return ordered + rest


Curriculum = Callable[..., list[Example]]

CURRICULA: dict[str, Curriculum] = {
    "none": no_curriculum,
    "easy_to_hard": easy_to_hard,
    "interleave": interleave,
    "easy_hard_ratio": easy_hard_ratio,
}
"""Curriculum name -> order function; all take ``(examples, *, seed, key="difficulty", batch_size=8)``, and
``easy_hard_ratio`` also ``easy_share`` and ``hard_above``."""


def apply_curriculum(
    examples: Sequence[Example],
    name: str,
    *,
    seed: int,
    key: str = DIFFICULTY_KEY,
    batch_size: int = 8,
    **settings: float,
) -> list[Example]:
    """Order training examples with the curriculum registered as ``name`` (unknown names are refused); `settings`
    (``easy_share``, ``hard_above``) reach the curricula that take them."""
    if name not in CURRICULA:
        raise ValueError(f"unknown curriculum {name!r}; known: {sorted(CURRICULA)}")
    order = CURRICULA[name]
    accepted = inspect.signature(order).parameters
    return order(
        examples, seed=seed, key=key, batch_size=batch_size, **{k: v for k, v in settings.items() if k in accepted}
    )
