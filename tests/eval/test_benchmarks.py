"""The benchmark registry reads every benchmark from ../shared/data, a user file, or explains what is missing."""

from __future__ import annotations

import pytest

from medzero_pl.eval.benchmarks import BENCHMARKS, BenchmarkUnavailable, build_tasks, load_benchmark

SIZES = {"medqa": 1273, "medmcqa": 4183, "pubmedqa": 500, "mmlu_pro_medical": 1535, "medxpertqa": 1449}


def test_the_seven_benchmarks_are_registered():
    assert set(BENCHMARKS) == {*SIZES, "gpqa_medical", "rarearena"}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_each_local_benchmark_reads_its_whole_split(shared_data, name):
    items = load_benchmark(name, data_root=shared_data)
    assert len(items) == SIZES[name]
    assert all(ex.source == name and ex.answer in ex.options for ex in items)


def test_pubmedqa_is_the_official_500_question_test_with_yes_no_maybe(shared_data):
    items = load_benchmark("pubmedqa", data_root=shared_data)
    assert {ex.answer for ex in items} == {"A", "B", "C"} and items[0].options == {"A": "yes", "B": "no", "C": "maybe"}


def test_limit_is_a_seeded_subset_in_file_order(shared_data):
    first = load_benchmark("medqa", data_root=shared_data, limit=20)
    again = load_benchmark("medqa", data_root=shared_data, limit=20)
    other = load_benchmark("medqa", data_root=shared_data, limit=20, seed=1)
    full = [ex.id for ex in load_benchmark("medqa", data_root=shared_data)]
    assert [e.id for e in first] == [e.id for e in again] != [e.id for e in other]
    assert [full.index(e.id) for e in first] == sorted(full.index(e.id) for e in first)


def test_gpqa_only_from_a_user_file(gpqa_file, shared_data):
    with pytest.raises(BenchmarkUnavailable, match="not be redistributed"):
        load_benchmark("gpqa_medical", data_root=shared_data)
    items = load_benchmark("gpqa_medical", path=gpqa_file)
    assert [ex.id for ex in items] == ["r1", "r2"]  # Biology only


def test_offline_without_a_local_file_names_what_to_supply(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchmarkUnavailable, match="offline.*GBaker/MedQA-USMLE-4-options.*eval.paths.medqa"):
        load_benchmark("medqa", data_root=tmp_path)
    with pytest.raises(BenchmarkUnavailable, match="pubmedqa: no local file found and no published hub copy"):
        load_benchmark("pubmedqa", data_root=tmp_path)


def test_build_tasks_reports_every_problem_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchmarkUnavailable) as err:
        build_tasks(["medqa", "gpqa_medical", "nonsense"], data_root=tmp_path)
    message = str(err.value)
    assert "medqa" in message and "gpqa_medical" in message and "unknown benchmark 'nonsense'" in message


def test_tasks_carry_the_benchmark_default_prompt(shared_data, eval_paths):
    tasks = build_tasks(["medqa", "rarearena"], paths={"rarearena": eval_paths["rarearena"]}, data_root=shared_data)
    assert [t.prompt_name for t in tasks] == ["open_medical_r1", "diagnosis_zero"]
    assert "{choices}" not in tasks[1].template.user and tasks[1].items[0].task == "diagnosis"
