"""`eval.*`: which benchmarks are evaluated and how completions are sampled and scored.

The one settings class of evaluation: the training run's `eval` block, the `Evaluation` callback, the runner
(`evaluate`) and the `python -m medzero_pl.eval` flags (one per field, generated from it) all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from medzero_pl.errors import ConfigError, expect
from medzero_pl.eval.benchmarks import BENCHMARKS
from medzero_pl.eval.scorers import SCORERS

BenchmarkName = Literal[tuple(BENCHMARKS)]
ScorerName = Literal[tuple(SCORERS)]


@dataclass
class EvalConfig:
    """Benchmarks, sampling and scoring of an evaluation."""

    benchmarks: list[BenchmarkName] = field(default_factory=list)
    """Benchmarks to evaluate (medzero_pl.eval.benchmarks); in a training run, empty means no evaluation callback."""
    every_n_steps: int = 0
    """Training runs: evaluate after every N-th training step; 0: only on `validate`."""
    data_root: str | None = None
    """A folder laid out as ../shared/data; benchmarks without a file there come from the hub (when online)."""
    paths: dict[str, str] = field(default_factory=dict)
    """Benchmark name -> its file, overriding `data_root` (GPQA is read only from here)."""
    limit: int | None = None
    """At most this many questions per benchmark (a seeded subset), for quick checks."""
    samples: int = 1
    """k completions per question: 1 with temperature 0 is greedy accuracy; k > 1 adds pass@k and maj@k."""
    temperature: float = 0.0
    """0 is greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling when temperature > 0."""
    max_new_tokens: int | None = None
    """Generation budget; None: each benchmark's default."""
    scorers: list[ScorerName] = field(default_factory=lambda: ["strict", "lenient"])
    """strict (the reward's grader) and/or lenient (HuatuoGPT-o1 protocol)."""
    prompt: str | None = None
    """A conf/prompt template forced on every benchmark; None: each benchmark's own."""
    batch_size: int = 8
    """Questions per generate call."""
    max_prompt_length: int = 4096
    """Longer evaluation prompts keep their last tokens (PubMedQA abstracts are long)."""
    seed: int = 0
    """Seed of the `limit` subset and of sampling."""

    def problems(self) -> list[str]:
        """Settings that cannot work together, each as `field=value: expected ...`."""
        return [
            *[f"paths.{name}: not among benchmarks" for name in self.paths if name not in self.benchmarks],
            *expect(self.every_n_steps >= 0, "every_n_steps", self.every_n_steps, ">= 0"),
            *expect(self.limit is None or self.limit >= 1, "limit", self.limit, "at least 1, or null"),
            *expect(self.samples >= 1, "samples", self.samples, "at least 1"),
            *expect(
                self.temperature > 0 or self.samples == 1,
                "samples",
                self.samples,
                "1 with temperature 0 (greedy samples are identical; set temperature)",
            ),
            *expect(self.temperature >= 0, "temperature", self.temperature, ">= 0"),
            *expect(0 < self.top_p <= 1, "top_p", self.top_p, "in (0, 1]"),
            *expect(
                self.max_new_tokens is None or self.max_new_tokens >= 1,
                "max_new_tokens",
                self.max_new_tokens,
                "at least 1, or null for each benchmark's default",
            ),
            *expect(self.max_prompt_length >= 1, "max_prompt_length", self.max_prompt_length, "at least 1"),
            *expect(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1"),
            # The schema refuses unknown scorers in a config file; this covers settings built in Python.
            *[f"scorers: unknown scorer {s!r}; known: {', '.join(SCORERS)}" for s in self.scorers if s not in SCORERS],
        ]

    def check(self) -> None:
        """Raise `ConfigError` listing every problem (the runner, the callback and the eval CLI call this)."""
        if problems := self.problems():
            raise ConfigError("invalid evaluation settings: " + "; ".join(problems))
