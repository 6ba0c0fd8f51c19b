"""`data.*`: which sources a run trains on and how they are mixed, split, ordered and batched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medzero_pl.data.mixing import CURRICULA, DataSource
from medzero_pl.errors import expect

CurriculumName = Literal[tuple(CURRICULA)]


@dataclass
class DataConfig:
    """Training and validation data of a run."""

    sources: list[DataSource] = field(default_factory=list)
    """Training sources: each a path, a reader format, an optional sample size and a weight."""
    val_sources: list[DataSource] = field(default_factory=list)
    """Separate evaluation sets; when empty, `val_fraction` of the mixed training data is held out."""
    val_fraction: float = 0.0
    """Fraction of the mixed training set held out for validation (ignored when `val_sources` is set)."""
    train_size: int | None = None
    """Total training examples, shared among sources without `sample_size` by `weight`."""
    curriculum: CurriculumName = "none"
    """Order of the first epoch: a seeded shuffle (none) or a curriculum."""
    difficulty_key: str = "difficulty"
    """Metadata column used by the curriculum orders."""
    prompts_per_step: int = 4
    """P: prompts per optimisation batch; each gets `grpo.num_generations` completions."""
    val_batch_size: int = 8
    """Prompts per validation batch."""
    max_prompt_length: int = 512
    """Prompts longer than this many tokens are truncated from the left (reported once)."""
    seed: int = 0
    """Seed of sampling, splitting and shuffling."""
    pass_rates: str | None = None
    """A pass-rate file of `python -m medzero_pl.difficulty` (one line per question): each training question gets
    `metadata.pass_rate` and `1 - pass_rate` under `difficulty_key`, so the curricula order by measured difficulty.
    Every training question must be in it."""
    pass_rate_range: list[float] | None = None
    """[low, high]: train only on questions whose measured pass rate lies in this band (needs `pass_rates`); with
    k = 8 samples, [0.1, 0.9] keeps 0 < pass rate < 1 as open-r1's dataset filtering does."""
    easy_share: float = 0.5
    """curriculum=easy_hard_ratio: the share of each batch's prompts taken from the easy questions."""
    hard_above: float = 0.5
    """curriculum=easy_hard_ratio: a question is hard when its difficulty (`difficulty_key`; 1 - pass rate when
    measured) is at least this."""
    exclude_eval_questions: bool = True
    """Drop training questions that are also items of the run's evaluation benchmarks (`eval.*`), so evaluation
    stays held out when both read the same file (text compared case- and whitespace-insensitively)."""

    def problems(self) -> list[str]:
        """Out-of-range values, each as `field=value: expected ...`."""
        return [
            *expect(self.prompts_per_step >= 1, "prompts_per_step", self.prompts_per_step, "at least 1"),
            *expect(self.val_batch_size >= 1, "val_batch_size", self.val_batch_size, "at least 1"),
            *expect(self.max_prompt_length >= 1, "max_prompt_length", self.max_prompt_length, "at least 1"),
            *expect(
                self.train_size is None or self.train_size >= 1, "train_size", self.train_size, "at least 1, or null"
            ),
            *expect(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "0 <= fraction < 1"),
            *expect(
                self.pass_rate_range is None
                or (len(self.pass_rate_range) == 2 and 0 <= self.pass_rate_range[0] <= self.pass_rate_range[1] <= 1),
                "pass_rate_range",
                self.pass_rate_range,
                "[low, high] with 0 <= low <= high <= 1, or null",
            ),
            *expect(
                self.pass_rate_range is None or self.pass_rates is not None,
                "pass_rate_range",
                self.pass_rate_range,
                "null unless data.pass_rates names a measured pass-rate file",
            ),
            *expect(0 <= self.easy_share <= 1, "easy_share", self.easy_share, "0 <= share <= 1"),
        ]
