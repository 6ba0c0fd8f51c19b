"""`python -m medzero_pl.difficulty [--samples K] key=value ...`: measure each training question's pass rate.

The run's overrides (as `python -m medzero_pl.fit` takes them) say which data, prompt, model and sampling: every
question of `data.sources` (mixed and sampled as the run does, before any validation split) gets K completions at
the run's temperature through the evaluation runner, graded by the `strict` scorer (the training reward's grader).
The pass rates go to a sidecar file beside the run, `<run_dir>/pass_rates.jsonl` unless `--out` says otherwise,
keyed by (source, id); the data files are never touched. A run reads the file with `data.pass_rates=<file>`,
keeps a band with `data.pass_rate_range=[low,high]` and orders by it with `data.curriculum=easy_to_hard` or
`easy_hard_ratio` (see medzero_pl/data/difficulty.py). The distribution is printed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from medzero_pl.config import Config, compose
from medzero_pl.data.difficulty import pass_rate_histogram, write_pass_rates
from medzero_pl.data.mixing import load_sources, mix
from medzero_pl.data.records import Example
from medzero_pl.errors import ConfigError, report_user_errors
from medzero_pl.eval.benchmarks import Benchmark, Task
from medzero_pl.eval.config import EvalConfig
from medzero_pl.eval.runner import evaluate_benchmark
from medzero_pl.model.loading import load_causal_lm, load_tokenizer, resolve_model
from medzero_pl.rollout import ENGINES, build_engine

log = logging.getLogger("medzero_pl.difficulty")
PASS_RATES_FILE = "pass_rates.jsonl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m medzero_pl.difficulty", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="the run's key=value overrides (experiment=..., data=..., model...)")
    p.add_argument("--samples", type=int, default=8, help="completions per question (k)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the run's grpo.temperature)")
    p.add_argument("--engine", choices=list(ENGINES), help="what generates (default: the run's rollout.engine)")
    p.add_argument("--limit", type=int, help="only the first N questions (a quick look)")
    p.add_argument("--batch-size", type=int, default=8, help="questions per generate call")
    p.add_argument("--out", help=f"the pass-rate file (default: <run_dir>/{PASS_RATES_FILE})")
    args = p.parse_args(argv)
    if args.samples < 1 or (args.limit is not None and args.limit < 1) or args.batch_size < 1:
        p.error("--samples, --limit and --batch-size: expected at least 1")
    return args


def training_questions(cfg: Config, limit: int | None) -> list[Example]:
    """The run's training pool, mixed and sampled with its seed (the validation part is measured too)."""
    pool = mix(load_sources(cfg.data.sources), cfg.data.sources, seed=cfg.data.seed, train_size=cfg.data.train_size)
    return pool[:limit] if limit is not None else pool


def measure(cfg: Config, questions: list[Example], settings: EvalConfig, engine_name: str) -> list[dict[str, Any]]:
    """One row per question: source, id, pass_rate (mean strict score of its samples), correct, samples."""
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    policy = load_causal_lm(cfg.model.name_or_path, cfg.model.dtype).eval()
    rollout = dataclasses.replace(cfg.rollout, engine=engine_name)
    engine = build_engine(rollout, policy, tokenizer, resolve_model(cfg.model.name_or_path), seed=cfg.seed)
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in questions:
        by_task[example.task].append(example)
    rows = []
    for kind, items in by_task.items():
        bench = Benchmark("training", "medqa", "train", kind, settings.max_new_tokens or 1, "run")
        result = evaluate_benchmark(engine, tokenizer, Task(bench, items, cfg.prompt, "run"), settings)
        for example, record in zip(items, result["records"], strict=True):
            grades = [g["correct"] for g in record["scores"]["strict"]]
            rate = sum(grades) / len(grades)
            rows.append(
                {
                    "source": example.source,
                    "id": example.id,
                    "pass_rate": rate,
                    "correct": sum(g >= 1.0 for g in grades),
                    "samples": len(grades),
                }
            )
    return rows


def summary(rows: list[dict[str, Any]], samples: int) -> str:
    """The distribution: questions per number of correct samples, the mean and the never / always solved shares."""
    rates = [row["pass_rate"] for row in rows]
    lines = [f"pass rates of {len(rates)} questions ({samples} samples each):"]
    width = max(n for _, n in pass_rate_histogram(rates, samples)) or 1
    for label, n in pass_rate_histogram(rates, samples):
        lines.append(f"  {label:>7} {n:6d} {'#' * round(40 * n / width)}")
    never, always = sum(r == 0 for r in rates), sum(r == 1 for r in rates)
    lines.append(
        f"mean {sum(rates) / max(len(rates), 1):.3f}; never solved {never}, always solved {always}, "
        f"in between {len(rates) - never - always} (what dynamic sampling and data.pass_rate_range keep)"
    )
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    cfg = compose(args.overrides)
    temperature = cfg.grpo.temperature if args.temperature is None else args.temperature
    if temperature <= 0 and args.samples > 1:
        raise ConfigError(f"--temperature={temperature}: expected > 0 with --samples={args.samples}")
    settings = EvalConfig(
        samples=args.samples,
        temperature=temperature,
        top_p=cfg.grpo.top_p,
        max_new_tokens=cfg.grpo.max_completion_length,
        scorers=["strict"],
        batch_size=args.batch_size,
        max_prompt_length=cfg.data.max_prompt_length,
        seed=cfg.seed,
    )
    settings.check()
    questions = training_questions(cfg, args.limit)
    torch.manual_seed(cfg.seed)
    rows = measure(cfg, questions, settings, args.engine or cfg.rollout.engine)
    out = write_pass_rates(args.out or Path(cfg.run_dir) / PASS_RATES_FILE, rows)
    print(summary(rows, args.samples))
    print(f"wrote {out}: train on a band with data.pass_rates={out} data.pass_rate_range=[low,high]")
    return 0


def main(argv: list[str] | None = None) -> int:
    return report_user_errors(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
