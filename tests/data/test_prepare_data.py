"""scripts/prepare_data.py: recipes become seeded train/val files that the `example` reader reads back."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from medzero_pl.data.readers import READERS, read_examples, resolve_path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "conf" / "data").glob("*.yaml"))


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_data = _load_script()


def write_recipe(path: Path, shared: Path, **overrides) -> Path:
    recipe = {
        "sources": [
            {
                "path": str(shared / "medqa" / "phrases_no_exclude_test.jsonl"),
                "format": "medqa",
                "name": "medqa",
                "sample_size": 30,
            },
            {
                "path": str(shared / "medxpertqa" / "MedXpertQA_test.jsonl"),
                "format": "medxpertqa",
                "name": "medxpertqa",
                "sample_size": 20,
            },
        ],
        "val_sources": [{"path": str(shared / "rarearena" / "RDC_synthetic.jsonl"), "format": "rarearena"}],
        "val_fraction": 0.2,
        "seed": 7,
        **overrides,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_recipe_becomes_train_val_and_eval_files_with_a_manifest(shared_data, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "mine.yaml", shared_data)
    manifest = prepare_data.main(["--recipe", str(recipe), "--output-dir", str(tmp_path / "out")])
    train = read_examples(tmp_path / "out" / "train.jsonl", "example")
    val = read_examples(tmp_path / "out" / "val.jsonl", "example")
    assert (len(train), len(val)) == (40, 10)
    assert len({e.id for e in train + val}) == 50
    assert manifest["counts"]["medqa"]["available"] == 1273 and manifest["counts"]["medqa"]["selected"] == 30
    assert manifest["counts"]["medxpertqa"]["train"] + manifest["counts"]["medxpertqa"]["val"] == 20
    assert len(read_examples(tmp_path / "out" / "eval_RDC_synthetic.jsonl", "example")) == 16
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    printed = capsys.readouterr().out
    assert "medqa" in printed and "1273" in printed and "eval_RDC_synthetic.jsonl" in printed


def test_the_same_seed_gives_the_same_files_and_another_seed_does_not(shared_data, tmp_path):
    recipe = write_recipe(tmp_path / "mine.yaml", shared_data)
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        prepare_data.main(["--recipe", str(recipe), "--output-dir", str(tmp_path / name), "--seed", seed])
    text = {name: (tmp_path / name / "train.jsonl").read_text() for name in "abc"}
    assert text["a"] == text["b"] != text["c"]


def test_a_shipped_recipe_runs_with_its_input_path_given_on_the_command_line(shared_data, tmp_path):
    medqa = shared_data / "medqa" / "phrases_no_exclude_test.jsonl"
    manifest = prepare_data.main(["--recipe", "dataset1", "--medqa", str(medqa), "--output-dir", str(tmp_path)])
    assert manifest["totals"] == {"train": 1090, "val": 0}
    assert manifest["sources"][0]["path"] == str(medqa)


def test_a_missing_input_file_says_which_flag_provides_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"medqa_usmle: data file data/medqa/train.jsonl not found; .* --medqa PATH"):
        prepare_data.main(["--recipe", "dataset1", "--output-dir", str(tmp_path / "out")])


def test_bad_recipes_are_refused_with_the_reason(shared_data, tmp_path):
    with pytest.raises(SystemExit, match=r"recipe 'dataset9' not found .* known recipes: \["):
        prepare_data.main(["--recipe", "dataset9", "--output-dir", str(tmp_path)])
    recipe = write_recipe(tmp_path / "typo.yaml", shared_data, val_fracton=0.1)
    with pytest.raises(SystemExit, match=r"unknown key\(s\) \['val_fracton'\]"):
        prepare_data.main(["--recipe", str(recipe), "--output-dir", str(tmp_path)])
    recipe = write_recipe(tmp_path / "big.yaml", shared_data, train_size=10)
    with pytest.raises(SystemExit, match=r"error: train_size=10 cannot be met"):
        prepare_data.main(["--recipe", str(recipe), "--output-dir", str(tmp_path)])


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_names_registered_formats_and_valid_sources(recipe):
    values = prepare_data.load_recipe(str(recipe))
    assert values["sources"]
    assert all(s.format in READERS for s in [*values["sources"], *values["val_sources"]])
    assert 0.0 <= values["val_fraction"] < 1.0


@pytest.mark.parametrize(("recipe", "file"), [("demo", "medqa_demo.jsonl"), ("demo_diagnosis", "rdc_demo.jsonl")])
def test_demo_recipes_prepare_from_the_data_shipped_in_the_package(tmp_path, recipe, file):
    if not resolve_path(f"medzero_pl:data/demo/{file}").is_file():
        pytest.skip(f"demo file {file} is not in the package yet")
    manifest = prepare_data.main(["--recipe", recipe, "--output-dir", str(tmp_path)])
    assert manifest["totals"]["train"] > manifest["totals"]["val"] > 0
