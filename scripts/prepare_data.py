"""Build the train/validation files of a data recipe, like the seed's ``scripts/data_prepare.py``.

    python scripts/prepare_data.py --recipe dataset2 --medqa ~/MedQA/US/train.jsonl \\
        --medxpertqa ~/MedXpertQA/Text/test.jsonl --output-dir data/prepared/dataset2

reads ``conf/data/<recipe>.yaml`` (or a YAML path), draws and splits with the recipe's seed (or ``--seed``),
and writes ``train.jsonl`` and ``val.jsonl`` in the lossless ``example`` format (read them back with
``format: example``), one ``eval_<name>.jsonl`` per ``val_sources`` entry, and ``manifest.json`` with the
recipe, the seed and the counts. Unlike the seed script it samples without replacement and with a seed.
The curriculum order is not applied here: the datamodule orders the training set when it loads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package (as litgpt's scripts do)

from medzero_pl.data.mixing import DataSource, load_sources, mix, train_val_split  # noqa: E402
from medzero_pl.data.readers import resolve_path, write_examples  # noqa: E402
from medzero_pl.data.records import DataFormatError  # noqa: E402

RECIPE_KEYS = {"sources", "val_sources", "val_fraction", "train_size", "seed"}
TRAINING_KEYS = {
    "curriculum",
    "difficulty_key",
    "prompts_per_step",
    "val_batch_size",
    "max_prompt_length",
}  # unused here
PATH_OVERRIDES = {"medqa": "medqa", "medxpertqa": "medxpertqa", "rarearena": "rarearena"}  # --flag -> format


def load_recipe(recipe: str) -> dict[str, Any]:
    """A recipe by name (``conf/data/<name>.yaml``) or by path, with its sources as :class:`DataSource`."""
    path = Path(recipe) if recipe.endswith((".yaml", ".yml")) else ROOT / "conf" / "data" / f"{recipe}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (ROOT / "conf" / "data").glob("*.yaml"))
        raise SystemExit(f"recipe {recipe!r} not found at {path}; known recipes: {known}")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(values) - RECIPE_KEYS - TRAINING_KEYS)
    if unknown:
        raise SystemExit(f"{path}: unknown key(s) {unknown}; a data recipe has {sorted(RECIPE_KEYS | TRAINING_KEYS)}")
    allowed = {f.name for f in fields(DataSource)}
    for group in ("sources", "val_sources"):
        parsed = []
        for i, entry in enumerate(values.get(group) or []):
            bad = sorted(set(entry) - allowed)
            if bad:
                raise SystemExit(f"{path}: {group}[{i}] has unknown key(s) {bad}; a source has {sorted(allowed)}")
            parsed.append(DataSource(**entry))
        values[group] = parsed
    if not values["sources"]:
        raise SystemExit(f"{path}: a recipe needs at least one entry under 'sources'")
    return values


def override_paths(sources: list[DataSource], overrides: dict[str, str | None]) -> list[DataSource]:
    """Point every source of a format at the file given on the command line for that format."""
    return [DataSource(**{**asdict(s), "path": overrides.get(s.format) or s.path}) for s in sources]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True, help="dataset1 | dataset2 | dataset3 | diagnosis | demo | a path")
    parser.add_argument("--output-dir", required=True, type=Path, help="where train.jsonl and val.jsonl go")
    parser.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    parser.add_argument("--val-fraction", type=float, default=None, help="override the recipe's val_fraction")
    parser.add_argument("--train-size", type=int, default=None, help="override the recipe's train_size")
    for flag, format_name in PATH_OVERRIDES.items():
        parser.add_argument(f"--{flag}", default=None, metavar="PATH", help=f"file for every '{format_name}' source")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the CLI; returns the manifest it wrote (handy for tests)."""
    args = parse_args(argv)
    recipe = load_recipe(args.recipe)
    overrides = {fmt: getattr(args, flag) for flag, fmt in PATH_OVERRIDES.items()}
    sources = override_paths(recipe["sources"], overrides)
    val_sources = override_paths(recipe["val_sources"], overrides)
    seed = args.seed if args.seed is not None else recipe.get("seed", 0)
    val_fraction = args.val_fraction if args.val_fraction is not None else recipe.get("val_fraction", 0.0)
    train_size = args.train_size if args.train_size is not None else recipe.get("train_size")

    flags = {fmt: flag for flag, fmt in PATH_OVERRIDES.items()}
    for source in [*sources, *val_sources]:
        if not resolve_path(source.path).is_file():
            hint = f" or pass --{flags[source.format]} PATH" if source.format in flags else ""
            raise SystemExit(f"error: {source.label}: data file {source.path} not found; put it there{hint}")
    try:
        loaded = load_sources(sources)
        mixed = mix(loaded, sources, seed=seed, train_size=train_size)
        train, val = train_val_split(mixed, val_fraction, seed=seed)
        val_loaded = load_sources(val_sources)
    except (DataFormatError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None

    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_examples(args.output_dir / "train.jsonl", train)
    write_examples(args.output_dir / "val.jsonl", val)
    evals = {}
    for source, examples in zip(val_sources, val_loaded, strict=True):
        evals[source.label] = write_examples(args.output_dir / f"eval_{source.label}.jsonl", examples)

    train_counts, val_counts = Counter(e.source for e in train), Counter(e.source for e in val)
    counts = {}
    for source, examples in zip(sources, loaded, strict=True):
        n_train, n_val = train_counts[source.label], val_counts[source.label]
        counts[source.label] = {"available": len(examples), "selected": n_train + n_val, "train": n_train, "val": n_val}
    manifest = {
        "recipe": args.recipe,
        "seed": seed,
        "val_fraction": val_fraction,
        "train_size": train_size,
        "sources": [asdict(s) for s in sources],
        "val_sources": [asdict(s) for s in val_sources],
        "counts": counts,
        "eval_counts": evals,
        "totals": {"train": len(train), "val": len(val)},
    }
    (args.output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    width = max(len(label) for label in [*counts, *evals, "source"])
    print(f"{'source':<{width}}  available  selected  train    val")
    for label, c in counts.items():
        print(f"{label:<{width}}  {c['available']:>9}  {c['selected']:>8}  {c['train']:>5}  {c['val']:>5}")
    for label, n in evals.items():
        print(f"{label:<{width}}  {n:>9}  (eval_{label}.jsonl)")
    print(f"{'total':<{width}}  {'':>9}  {len(mixed):>8}  {len(train):>5}  {len(val):>5}  -> {args.output_dir}")
    return manifest


if __name__ == "__main__":
    main()
