"""Evaluate a policy on benchmarks through a ``RolloutEngine``: generate, score with every scorer, aggregate.

The runner knows no model object: it renders prompts with the tokenizer, hands token ids to the engine (the
in-process Hugging Face engine, vLLM, ...) and scores texts. With several ranks each evaluates every
``world_size``-th item and the aggregates are ``torchmetrics`` metrics, which sum over ranks when
``torch.distributed`` is initialised, so every rank reports the same, global numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.aggregation import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassF1Score

from medzero_pl.data.prompts import render_prompt
from medzero_pl.eval.benchmarks import Task
from medzero_pl.eval.config import EvalConfig
from medzero_pl.eval.metrics import majority, pass_at_k
from medzero_pl.eval.scorers import gold_key, score
from medzero_pl.rewards.extract import THINK_OPEN, copied_from_prompt, think_block
from medzero_pl.rewards.format import strict_format
from medzero_pl.rollout.base import RolloutEngine, SamplingParams

log = logging.getLogger(__name__)


def _mean(device: torch.device) -> MeanMetric:
    return MeanMetric().to(device)


def evaluate_benchmark(
    engine: RolloutEngine,
    tokenizer: Any,
    task: Task,
    settings: EvalConfig,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Scores of one benchmark: a dict with the sampling settings, sample counts and per-scorer metrics, plus
    ``records`` (this rank's per-item completions and grades, for a predictions file)."""
    bench, k = task.benchmark, settings.samples
    max_new = bench.max_new_tokens if settings.max_new_tokens is None else settings.max_new_tokens
    sampling = SamplingParams(max_new, settings.temperature, settings.top_p, 0, seed=settings.seed)
    items = task.items[rank::world_size]
    device = torch.device(device)
    length, truncated, count = _mean(device), _mean(device), SumMetric().to(device)
    prompts_cut = SumMetric().to(device)
    well_formed, copied, reasoning_length = _mean(device), _mean(device), _mean(device)
    letters = {s: LetterCounts().to(device) for s in settings.scorers}
    gold_letters = LetterCounts().to(device)
    think_opened = task.template.completion_prefix.rstrip().endswith(THINK_OPEN)
    per_scorer = {s: {"accuracy": _mean(device), "format_rate": _mean(device)} for s in settings.scorers}
    if k > 1:
        for metrics in per_scorer.values():
            metrics[f"pass@{k}"], metrics[f"maj@{k}"] = _mean(device), _mean(device)
    if bench.task == "diagnosis":
        for metrics in per_scorer.values():
            metrics["top5"] = _mean(device)
    f1 = {
        s: MulticlassF1Score(len(bench.labels) + 1, average=None).to(device) for s in settings.scorers if bench.labels
    }
    records = []
    start = time.perf_counter()
    for first in range(0, len(items), settings.batch_size):
        batch = items[first : first + settings.batch_size]
        prompts = [render_prompt(ex, task.template, tokenizer) for ex in batch]
        full = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        prompts_cut.update(torch.tensor(float(sum(len(ids) > settings.max_prompt_length for ids in full))))
        ids = [ids[-settings.max_prompt_length :] for ids in full]
        rollouts = engine.generate(ids, k, sampling)
        for i, example in enumerate(batch):
            rows = range(i * k, (i + 1) * k)
            texts = [rollouts.texts[r] for r in rows]
            length.update(torch.tensor([float(len(rollouts.completion_ids[r])) for r in rows]))
            truncated.update(torch.tensor([float(rollouts.finish_reasons[r] == "length") for r in rows]))
            well_formed.update(torch.tensor([strict_format(text, think_opened) for text in texts]))
            thoughts = [think_block(text, think_opened) for text in texts]
            copied.update(torch.tensor([float(t is not None and copied_from_prompt(t, prompts[i])) for t in thoughts]))
            reasoning_length.update(
                torch.tensor(
                    [float(len(tokenizer(t, add_special_tokens=False)["input_ids"])) if t else 0.0 for t in thoughts]
                )
            )
            if example.options:
                gold_letters.update([gold_key(example)] * k)
            count.update(torch.tensor(1.0))
            record = {"id": example.id, "gold": gold_key(example), "completions": texts, "scores": {}}
            for name, metrics in per_scorer.items():
                grades = [score(name, text, example) for text in texts]
                correct = [g.correct for g in grades]
                metrics["accuracy"].update(torch.tensor(sum(correct) / k))
                metrics["format_rate"].update(torch.tensor(sum(g.answered for g in grades) / k))
                if k > 1:
                    metrics[f"pass@{k}"].update(torch.tensor(pass_at_k(k, sum(c >= 1.0 for c in correct), k)))
                    vote = majority([g.prediction for g in grades])
                    metrics[f"maj@{k}"].update(torch.tensor(float(vote is not None and vote == gold_key(example))))
                if "top5" in metrics:
                    metrics["top5"].update(torch.tensor(sum(g.extra["top5"] for g in grades) / k))
                if bench.labels:
                    vote = majority([g.prediction for g in grades])
                    predicted = bench.labels.index(vote) if vote in bench.labels else len(bench.labels)
                    f1[name].update(torch.tensor([predicted]), torch.tensor([bench.labels.index(example.answer)]))
                if example.options:
                    letters[name].update([g.prediction for g in grades])
                record["scores"][name] = [asdict(g) for g in grades]
            records.append(record)
    if cut := int(prompts_cut.compute().item()):
        log.warning(
            "%s: %d of %d prompts are longer than max_prompt_length=%d and keep only their last tokens",
            bench.name,
            cut,
            int(count.compute().item()),
            settings.max_prompt_length,
        )
    result: dict[str, Any] = {
        "benchmark": bench.name,
        "split": bench.split,
        "task": bench.task,
        "items": int(count.compute().item()),
        "samples_per_item": k,
        "sampling": {"temperature": settings.temperature, "top_p": settings.top_p, "max_new_tokens": max_new},
        "prompt": task.prompt_name,
        "mean_length": float(length.compute().item()),
        "truncated_rate": float(truncated.compute().item()),
        "prompts_cut": cut,
        "well_formed_rate": float(well_formed.compute().item()),
        "copied_reasoning_rate": float(copied.compute().item()),
        "mean_reasoning_length": float(reasoning_length.compute().item()),
        "seconds": round(time.perf_counter() - start, 2),
        "scorers": {},
        "records": records,
    }
    has_letters = bench.task != "diagnosis" and any(ex.options for ex in task.items)  # every rank decides alike
    if has_letters:
        result["gold_top_letter_share"] = gold_letters.compute()
    for name, metrics in per_scorer.items():
        values = {metric: float(m.compute().item()) for metric, m in metrics.items()}
        if has_letters:
            values["top_letter_share"] = letters[name].compute()
        if bench.labels:
            values["macro_f1"] = float(f1[name].compute()[: len(bench.labels)].mean().item())
        result["scorers"][name] = values
    return result


class LetterCounts(Metric):
    """The share of answers given the most frequent option letter (`eval.metrics.top_share`; no answer counts in the
    denominator), from counts summed over ranks: a policy collapsed onto one letter shows here."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("counts", torch.zeros(27, dtype=torch.float64), dist_reduce_fx="sum")  # A-Z, then "none"

    def update(self, predictions: Sequence[Any]) -> None:
        for p in predictions:
            letter = isinstance(p, str) and len(p) == 1 and "A" <= p <= "Z"
            self.counts[ord(p) - ord("A") if letter else 26] += 1

    def compute(self) -> float:
        total = float(self.counts.sum())
        return float(self.counts[:26].max()) / total if total else 0.0


def evaluate(
    engine: RolloutEngine,
    tokenizer: Any,
    tasks: Sequence[Task],
    settings: EvalConfig,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_benchmark` for each task, keyed by benchmark name (settings that cannot work are refused
    before anything is generated)."""
    settings.check()
    results = {}
    for task in tasks:
        results[task.benchmark.name] = evaluate_benchmark(engine, tokenizer, task, settings, rank, world_size, device)
        log.info("eval %s: %s", task.benchmark.name, flat_metrics({task.benchmark.name: results[task.benchmark.name]}))
    return results


def flat_metrics(results: dict[str, dict[str, Any]], prefix: str = "eval") -> dict[str, float]:
    """``eval/<benchmark>/<scorer>/<metric>`` plus ``eval/<benchmark>/{mean_length,truncated_rate,...}`` (the
    benchmark-level numbers: well-formed and copied-reasoning rates, mean reasoning length, gold letters' top
    share)."""
    flat = {}
    for name, result in results.items():
        flat[f"{prefix}/{name}/mean_length"] = result["mean_length"]
        flat[f"{prefix}/{name}/truncated_rate"] = result["truncated_rate"]
        for key in ("well_formed_rate", "copied_reasoning_rate", "mean_reasoning_length", "gold_top_letter_share"):
            if key in result:
                flat[f"{prefix}/{name}/{key}"] = result[key]
        for scorer, values in result["scorers"].items():
            for metric, value in values.items():
                flat[f"{prefix}/{name}/{scorer}/{metric}"] = value
    return flat
