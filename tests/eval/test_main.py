"""`python -m medzero_pl.eval`: a base model and its trained checkpoint side by side in one report."""

from __future__ import annotations

import json

import pytest

from medzero_pl.eval.__main__ import eval_config, parse_args
from medzero_pl.eval.__main__ import main as evaluate_cli
from medzero_pl.eval.config import EvalConfig
from medzero_pl.fit import main as fit
from tests.tiny import make_tiny_model_dir
from tests.toy_task import toy_overrides


def test_base_model_and_checkpoint_in_one_table(toy, tmp_path, shared_data, eval_paths, capsys):
    assert fit(toy_overrides(toy, tmp_path / "run", **{"trainer.max_steps": 1, "optim.lr": 0.5})) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval"
    argv = ["--model", str(toy["model"]), "--ckpt", str(ckpt), "--benchmarks", "medqa,rarearena"]
    argv += ["--data-root", str(shared_data), "--path", f"rarearena={eval_paths['rarearena']}", "--limit", "3"]
    argv += ["--max-new-tokens", "6", "--max-prompt-length", "128", "--out", str(out)]
    assert evaluate_cli(argv) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert report.strip() in printed
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    assert lines[0] == "| model | medqa | rarearena |"
    assert any(line.startswith(f"| {toy['model']} |") for line in lines)
    assert any(line.startswith(f"| {ckpt} ({toy['model']}) |") for line in lines)
    summary = json.loads((out / "report.json").read_text())
    assert len(summary["rows"]) == 2 and summary["settings"]["max_new_tokens"] == 6

    assert (out / "predictions").is_dir() and len(list((out / "predictions").rglob("*.jsonl"))) == 4
    completions = [
        [json.loads(line)["completions"] for line in path.read_text().splitlines()]
        for path in sorted((out / "predictions").glob("*/medqa.jsonl"))
    ]
    assert completions[0] != completions[1]  # the checkpoint's weights were loaded (lr 0.5 changed the policy)


def test_missing_benchmark_files_are_reported_before_any_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["--model", "nonexistent-model", "--benchmarks", "medqa,gpqa_medical", "--data-root", str(tmp_path)]
    assert evaluate_cli(argv) == 2
    err = capsys.readouterr().err
    assert "medqa" in err and "gpqa_medical" in err


def test_the_flags_are_the_fields_of_the_one_eval_settings_class():
    argv = ["--model", "m", "--benchmarks", "medqa,pubmedqa", "--path", "medqa=/x.jsonl", "--top-p", "0.5"]
    argv += ["--scorers", "strict", "--seed", "3", "--max-new-tokens", "9"]
    expected = EvalConfig(["medqa", "pubmedqa"], paths={"medqa": "/x.jsonl"}, top_p=0.5, scorers=["strict"], seed=3)
    expected.max_new_tokens = 9
    assert eval_config(parse_args(argv)) == expected
    assert eval_config(parse_args(["--model", "m", "--benchmarks", "medqa"])) == EvalConfig(["medqa"])  # defaults


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--benchmarks", "medqa,medqb"], "unknown medqb; choose from medqa,"),
        (["--benchmarks", "medqa", "--scorers", "loose"], "unknown loose; choose from strict,lenient"),
        (["--benchmarks", "medqa", "--engine", "sglang"], "invalid choice: 'sglang'"),
    ],
)
def test_unknown_names_are_refused_with_the_choices(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--model", "m", *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_settings_that_cannot_work_together_are_one_error_line(capsys):
    assert evaluate_cli(["--model", "m", "--benchmarks", "medqa", "--samples", "4"]) == 2
    assert "greedy samples are identical" in capsys.readouterr().err


@pytest.mark.slow
def test_the_vllm_engine_scores_a_checkpoint_as_generate_does(toy, tmp_path, shared_data):
    """Greedy evaluation of a trained checkpoint through vLLM (which loads the base directory and then receives the
    checkpoint's weights) writes the same completions as `model.generate`."""
    pytest.importorskip("vllm")
    model = make_tiny_model_dir(tmp_path / "model", hidden=128)  # vLLM's CPU attention needs head_dim >= 32
    run = {"model": model, "data": toy["data"]}
    assert fit(toy_overrides(run, tmp_path / "run", **{"trainer.max_steps": 1, "optim.lr": 0.5})) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    argv = ["--ckpt", str(ckpt), "--benchmarks", "medqa", "--data-root", str(shared_data), "--limit", "4"]
    argv += ["--max-new-tokens", "6", "--max-prompt-length", "128", "--prompt", "r1_zero_base"]
    completions = {}
    for engine in ("hf", "vllm"):
        out = tmp_path / f"eval_{engine}"
        assert evaluate_cli([*argv, "--engine", engine, "--out", str(out)]) == 0
        (predictions,) = (out / "predictions").glob("*/medqa.jsonl")
        completions.setdefault(
            engine, [json.loads(line)["completions"] for line in predictions.read_text().splitlines()]
        )
    assert completions["vllm"] == completions["hf"]


def _never_loads(*args, **kwargs):
    raise AssertionError("a model was loaded before the inputs were checked")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "nonexistent-model"], "Cannot resolve model 'nonexistent-model'"),
        (["--ckpt", "missing/last.ckpt"], "missing/last.ckpt: no such checkpoint"),
    ],
)
def test_a_wrong_second_row_is_refused_before_the_first_row_generates(
    toy, tmp_path, shared_data, monkeypatch, capsys, flags, message
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("medzero_pl.eval.__main__.load_policy", _never_loads)
    argv = ["--model", str(toy["model"]), *flags, "--benchmarks", "medqa", "--data-root", str(shared_data)]
    assert evaluate_cli([*argv, "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:") and "Traceback" not in err


def test_an_unwritable_out_is_refused_before_generating(toy, tmp_path, shared_data, monkeypatch, capsys):
    monkeypatch.setattr("medzero_pl.eval.__main__.load_policy", _never_loads)
    taken = tmp_path / "a_file"
    taken.write_text("not a directory")
    argv = ["--model", str(toy["model"]), "--benchmarks", "medqa", "--data-root", str(shared_data)]
    assert evaluate_cli([*argv, "--out", str(taken / "eval")]) == 2
    assert f"--out {taken / 'eval'}: cannot write there" in capsys.readouterr().err


def test_each_finished_benchmark_is_on_disk_when_a_later_one_crashes(toy, tmp_path, shared_data, monkeypatch):
    from medzero_pl.eval import runner

    real = runner.evaluate_benchmark

    def crash_on_pubmedqa(engine, tokenizer, task, *args, **kwargs):
        if task.benchmark.name == "pubmedqa":
            raise RuntimeError("killed mid-evaluation")
        return real(engine, tokenizer, task, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_benchmark", crash_on_pubmedqa)
    out = tmp_path / "eval"
    argv = ["--model", str(toy["model"]), "--benchmarks", "medqa,pubmedqa", "--data-root", str(shared_data)]
    argv += ["--limit", "2", "--max-new-tokens", "4", "--max-prompt-length", "64", "--out", str(out)]
    with pytest.raises(RuntimeError, match="killed mid-evaluation"):
        evaluate_cli(argv)
    summary = json.loads((out / "report.json").read_text())
    assert summary["complete"] is False and list(summary["rows"][str(toy["model"])]) == ["medqa"]
    (predictions,) = (out / "predictions").glob("*/medqa.jsonl")
    assert len(predictions.read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-new-tokens", "0"], "max_new_tokens=0: expected at least 1"),
        (["--max-prompt-length", "-5"], "max_prompt_length=-5: expected at least 1"),
        (["--limit", "0"], "limit=0: expected at least 1"),
        (["--top-p", "0"], "top_p=0.0: expected in (0, 1]"),
    ],
)
def test_out_of_range_settings_are_one_error_line(flags, message, capsys):
    assert evaluate_cli(["--model", "m", "--benchmarks", "medqa", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
