"""`python -m medzero_pl.difficulty`: k samples per training question through the evaluation runner, a sidecar file
beside the run, the data untouched, and the file a run can filter by."""

from __future__ import annotations

import json

import pytest

from medzero_pl.config import compose
from medzero_pl.data.datamodule import MedZeroDataModule
from medzero_pl.difficulty import main, summary
from tests.toy_task import toy_overrides


def test_the_summary_shows_the_distribution():
    rows = [{"pass_rate": r} for r in (0.0, 0.5, 0.5, 1.0)]
    text = summary(rows, samples=2)
    assert "pass rates of 4 questions (2 samples each)" in text
    assert "    1/2      2 ####" in text and "never solved 1, always solved 1, in between 2" in text


def test_bad_arguments_are_one_error_line(capsys):
    assert main(["--samples", "4", "--temperature", "0", "data=demo"]) == 2
    assert capsys.readouterr().err.startswith("error: --temperature=0.0: expected > 0 with --samples=4")
    assert main(["grpo.num_generations=many"]) == 2


@pytest.mark.slow
def test_pass_rates_of_the_training_questions_land_beside_the_run(toy, tmp_path, capsys):
    overrides = toy_overrides(toy, tmp_path / "run", **{"data.train_size": 8})
    data_before = toy["data"].read_bytes()
    assert main([*overrides, "--samples", "2", "--batch-size", "4"]) == 0
    out = tmp_path / "run" / "pass_rates.jsonl"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and all(r["samples"] == 2 and r["pass_rate"] in (0.0, 0.5, 1.0) for r in rows)
    assert toy["data"].read_bytes() == data_before
    assert "pass rates of 8 questions (2 samples each)" in capsys.readouterr().out
    # The file keys the same questions a run trains on.
    cfg = compose([*overrides, f"data.pass_rates={out}", "data.pass_rate_range=[0,1]"])
    datamodule = MedZeroDataModule(cfg.data, cfg.prompt, tokenizer=str(toy["model"]))
    datamodule.setup("fit")
    assert len(datamodule.train_items) == 8
    assert {item["id"] for item in datamodule.train_items} == {r["id"] for r in rows}


@pytest.mark.slow
def test_the_vllm_engine_measures_pass_rates_too(toy, tmp_path, capsys):
    pytest.importorskip("vllm")
    from tests.rollout.test_vllm import vllm_model_dir

    model = vllm_model_dir(tmp_path / "model")  # head_dim 32: what vLLM's CPU attention supports
    engine = {"model.name_or_path": model, "rollout.max_model_len": 256, "rollout.kv_cache_gib": 0.05}
    overrides = toy_overrides(toy, tmp_path / "run", **{"data.train_size": 8, **engine})
    assert main([*overrides, "--samples", "2", "--batch-size", "4", "--engine", "vllm"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "pass_rates.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["samples"] == 2 and r["pass_rate"] in (0.0, 0.5, 1.0) for r in rows)
    assert "pass rates of 8 questions (2 samples each)" in capsys.readouterr().out
