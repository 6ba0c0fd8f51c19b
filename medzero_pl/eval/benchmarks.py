"""The evaluation benchmarks by name: reader, split, scorer task, default generation length, prompt, sources.

The six benchmarks of Medical R1-Zero (MedQA, MedMCQA, PubMedQA, MMLU-Pro medical, GPQA medical, MedXpertQA) and
RareArena. Items are read, in this order, from

1. a path given for the benchmark (``eval.paths.<name>=...``, ``--path name=file``);
2. ``<data_root>/<file>`` when that file exists (``data_root`` is laid out as ``../shared/data``, see its README);
3. the published Hugging Face dataset through ``datasets`` when the machine is online; offline (``HF_HUB_OFFLINE``
   or ``HF_DATASETS_OFFLINE`` set, or the hub unreachable) this fails with a message saying which file to supply.

GPQA's authors ask that it not be redistributed in plain text, so it is read only from a file the user supplies.

Example (``medqa``, ``medqa/phrases_no_exclude_test.jsonl``)::

    {"question": "A 23-year-old pregnant woman at 22 weeks gestation presents with burning upon urination ...",
     "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
     "answer_idx": "D", ...}
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medzero_pl.data.prompts import PromptTemplate, template_from_dict
from medzero_pl.data.readers import read_examples
from medzero_pl.data.records import Example
from medzero_pl.paths import CONF_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubSource:
    """A published Hugging Face dataset whose rows one of our readers accepts."""

    id: str
    split: str
    format: str
    config: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    """One named benchmark: where its items come from and how they are asked and scored."""

    name: str
    format: str
    """Reader name (``medzero_pl.data.readers.READERS``) for local files."""
    split: str
    """Which split is evaluated (documentation; the file or hub split below is that split)."""
    task: str
    """``mcq`` or ``diagnosis``: picks the scorer functions."""
    max_new_tokens: int
    """Default generation budget."""
    prompt: str
    """Default prompt template (``conf/prompt/<name>.yaml``)."""
    file: str | None = None
    """Path under ``data_root``."""
    options: dict[str, Any] = field(default_factory=dict)
    """Reader options; the value of ``ground_truth`` is a file beside the benchmark file."""
    hub: HubSource | None = None
    user_file_only: bool = False
    labels: tuple[str, ...] = ()
    """Classes for macro-F1 (PubMedQA: A/B/C = yes/no/maybe); empty: no F1."""


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "medqa",
            "medqa",
            "test (1273, 4 options)",
            "mcq",
            1024,
            "open_medical_r1",
            file="medqa/phrases_no_exclude_test.jsonl",
            hub=HubSource("GBaker/MedQA-USMLE-4-options", "test", "medqa"),
        ),
        Benchmark(
            "medmcqa",
            "huatuo",
            "validation (4183)",
            "mcq",
            1024,
            "open_medical_r1",
            file="medmcqa/MedMCQA_validation.json",
            hub=HubSource("openlifescienceai/medmcqa", "validation", "medmcqa", options={"cop_base": 0}),
        ),
        Benchmark(
            "pubmedqa",
            "pubmedqa",
            "PQA-L official test (500 labelled PMIDs)",
            "mcq",
            1024,
            "open_medical_r1",
            file="pubmedqa/ori_pqal.json",
            options={"ground_truth": "test_ground_truth.json"},
            labels=("A", "B", "C"),
        ),
        Benchmark(
            "mmlu_pro_medical",
            "mmlu_pro",
            "test, biology + health (1535)",
            "mcq",
            1024,
            "open_medical_r1",
            file="mmlu_pro/MMLU-Pro_Medical_test.json",
            hub=HubSource("TIGER-Lab/MMLU-Pro", "test", "mmlu_pro", options={"categories": ["biology", "health"]}),
        ),
        Benchmark(
            "gpqa_medical",
            "gpqa",
            "gpqa_main, Biology domain (78)",
            "mcq",
            2048,
            "open_medical_r1",
            options={"domains": ["Biology"]},
            user_file_only=True,
        ),
        Benchmark(
            "medxpertqa",
            "medxpertqa",
            "Text test",
            "mcq",
            2048,
            "open_medical_r1",
            file="medxpertqa/MedXpertQA_test.jsonl",
            hub=HubSource("TsinghuaC3I/MedXpertQA", "test", "medxpertqa", config="Text"),
        ),
        Benchmark(
            "rarearena",
            "rarearena",
            "RDC (rare disease diagnosis with test results)",
            "diagnosis",
            1024,
            "diagnosis_zero",
            file="rarearena/RDC.json",
        ),
    )
}
"""Benchmark name -> definition."""


class BenchmarkUnavailable(RuntimeError):
    """A benchmark's items cannot be found; the message says what to supply."""


@dataclass
class Task:
    """One benchmark ready to run: its definition, items and prompt template."""

    benchmark: Benchmark
    items: list[Example]
    template: PromptTemplate
    prompt_name: str = ""


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _read_local(bench: Benchmark, path: Path) -> list[Example]:
    options = dict(bench.options)
    if "ground_truth" in options and not Path(options["ground_truth"]).is_absolute():
        options["ground_truth"] = str(path.parent / options["ground_truth"])
    return read_examples(path, bench.format, source=bench.name, **options)


def _read_hub(bench: Benchmark, cache_dir: Path | None) -> list[Example]:
    hub = bench.hub
    where = f"eval.paths.{bench.name}=<file> (or --path {bench.name}=<file>)"
    if hub is None:
        raise BenchmarkUnavailable(
            f"{bench.name}: no local file found and no published hub copy we can read; set {where}"
        )
    if _offline():
        raise BenchmarkUnavailable(
            f"{bench.name}: no local file found, and the machine is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) so "
            f"the hub dataset {hub.id} cannot be fetched; set {where} or eval.data_root"
        )
    import datasets

    try:
        rows = datasets.load_dataset(hub.id, hub.config, split=hub.split)
    except Exception as err:  # network errors come in many types
        raise BenchmarkUnavailable(
            f"{bench.name}: could not load {hub.id} ({hub.config or 'default'}, {hub.split}) from the hub: "
            f"{type(err).__name__}: {err}. Set {where} to read a local copy."
        ) from err
    cache = (cache_dir or Path.home() / ".cache" / "medzero_pl" / "benchmarks") / f"{bench.name}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    rows.to_json(str(cache), lines=True, force_ascii=False)
    return read_examples(cache, hub.format, source=bench.name, **hub.options)


def load_benchmark(
    name: str,
    path: str | Path | None = None,
    data_root: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> list[Example]:
    """The items of one benchmark (see the module docstring for where they come from).

    Args:
        limit: Keep a seeded random subset of this many items (in file order), for quick checks.
    """
    bench = get_benchmark(name)
    if path is not None:
        examples = _read_local(bench, Path(path))
    elif bench.user_file_only:
        raise BenchmarkUnavailable(
            f"{name}: GPQA's authors ask that it not be redistributed in plain text, so it is read only from a file "
            f"you supply: eval.paths.{name}=/path/to/gpqa_main.csv (or --path {name}=...)"
        )
    elif data_root is not None and bench.file and (Path(data_root) / bench.file).is_file():
        examples = _read_local(bench, Path(data_root) / bench.file)
    else:
        examples = _read_hub(bench, cache_dir)
    if limit is not None and limit < len(examples):
        keep = sorted(random.Random(f"{seed}/{name}").sample(range(len(examples)), limit))
        examples = [examples[i] for i in keep]
    return examples


def prompt_template(name_or_path: str) -> PromptTemplate:
    """A prompt template by name (``conf/prompt/<name>.yaml``) or YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONF_DIR / "prompt" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / "prompt").glob("*.yaml"))
        raise ValueError(f"prompt {name_or_path!r}: no file {path}; known templates: {', '.join(known)}")
    return template_from_dict(yaml.safe_load(path.read_text()) or {})


def build_tasks(
    names: list[str],
    paths: dict[str, str] | None = None,
    data_root: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    prompt: str | None = None,
) -> list[Task]:
    """Load every named benchmark and its template (``prompt`` overrides each benchmark's default) as runner Tasks.

    Every benchmark is tried before raising, so one error lists every missing file."""
    paths = dict(paths or {})
    unknown = sorted(set(paths) - set(names))
    if unknown:
        raise ValueError(f"paths given for benchmarks not evaluated: {unknown} (benchmarks: {names})")
    tasks, problems = [], []
    for name in names:
        try:
            bench = get_benchmark(name)
            items = load_benchmark(name, paths.get(name), data_root, limit, seed)
            tasks.append(Task(bench, items, prompt_template(prompt or bench.prompt), prompt or bench.prompt))
        except (BenchmarkUnavailable, ValueError) as err:
            problems.append(str(err))
    if problems:
        raise BenchmarkUnavailable("cannot evaluate:\n  - " + "\n  - ".join(problems))
    return tasks
