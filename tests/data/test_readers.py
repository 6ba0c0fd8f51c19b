"""Readers: every published layout in shared/data reads completely, layouts agree, bad input fails clearly."""

from __future__ import annotations

import csv
import json
import logging
from functools import cache
from pathlib import Path

import pytest

from medzero_pl.data.readers import (
    READERS,
    read_examples,
    reader_options,
    resolve_path,
    split_inline_choices,
    write_examples,
)
from medzero_pl.data.records import DataFormatError, Example

# --------------------------------------------------------------------------- helpers


@cache
def _read_cached(path: str, format: str, options: tuple[tuple[str, object], ...] = ()) -> tuple[Example, ...]:
    return tuple(read_examples(path, format, **dict(options)))


def read(shared: Path, relative: str, format: str, **options: object) -> tuple[Example, ...]:
    """Read a shared file once per test session (the big files take ~0.1 s each)."""
    return _read_cached(str(shared / relative), format, tuple(sorted(options.items())))


def raw_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def medqa_row(question: str = "Which drug?", answer: str = "B", **extra: object) -> dict:
    return {
        "question": question,
        "options": {"A": "aspirin", "B": "heparin", "C": "warfarin", "D": "insulin"},
        "answer_idx": answer,
        "answer": "heparin",
        **extra,
    }


# --------------------------------------------------------------------------- the real files

REAL_FILES = [
    # (file, format, options, records, option counts)
    ("medqa/phrases_no_exclude_test.jsonl", "medqa", {}, 1273, {4}),
    ("medqa/medqa_test.jsonl", "medqa", {}, 1273, {5}),
    ("medqa/MedQA_USLME_test.json", "huatuo", {}, 1273, {4}),
    ("medqa/medqa_input.jsonl", "eval_input", {}, 1273, {4}),
    ("medmcqa/MedMCQA_validation.json", "huatuo", {}, 4183, {4}),
    ("medmcqa/medmcqa_input.jsonl", "eval_input", {}, 4183, {4}),
    ("pubmedqa/ori_pqal.json", "pubmedqa", {"ground_truth": "GT"}, 500, {3}),
    ("pubmedqa/ori_pqal.json", "pubmedqa", {}, 1000, {3}),
    ("pubmedqa/PubMedQA_test.json", "huatuo", {}, 1000, {3}),
    ("mmlu_pro/MMLU-Pro_Medical_test.json", "mmlu_pro", {}, 1535, set(range(3, 11))),
    ("medxpertqa/MedXpertQA_test.jsonl", "medxpertqa", {}, 1449, {10}),
    ("medxpertqa/medxpertqa_sampled_text_input.jsonl", "medxpertqa", {}, 244, {10}),
    ("medxpertqa/medxpertqa_mm_input.jsonl", "medxpertqa", {}, 2000, {5}),
    ("medxpertqa/medxpertqa_sampled_mm_input.jsonl", "medxpertqa", {}, 199, {5}),
    ("mmlu_medical/mmlu_medical_input.jsonl", "eval_input", {}, 1089, {4}),
]


@pytest.mark.parametrize(("relative", "format", "options", "count", "sizes"), REAL_FILES, ids=lambda v: str(v))
def test_every_real_benchmark_file_reads_completely_with_its_gold_among_the_options(
    shared_data, relative, format, options, count, sizes
):
    if options.get("ground_truth") == "GT":
        options = {"ground_truth": str(shared_data / "pubmedqa" / "test_ground_truth.json")}
    examples = read(shared_data, relative, format, **options)
    assert len(examples) == count
    assert all(e.task == "mcq" and e.answer in e.options for e in examples)
    assert {len(e.options) for e in examples} <= sizes
    assert all(list(e.options) == list("ABCDEFGHIJ"[: len(e.options)]) for e in examples)
    assert all("\nAnswer Choices:" not in e.question for e in examples)
    assert len({e.id for e in examples}) == count
    assert {e.source for e in examples} == {Path(relative).stem}


def test_synthetic_rarearena_cases_read_as_diagnosis_examples_with_unique_gold_names(shared_data):
    examples = read(shared_data, "rarearena/RDC_synthetic.jsonl", "rarearena")
    assert len(examples) == 16
    assert all(e.task == "diagnosis" and not e.options and e.answer is None for e in examples)
    by_id = {e.id: e for e in examples}
    assert by_id["SYN-0001"].diagnoses == ("Fabry disease",)  # diagnosis == Orpha_name: listed once
    assert by_id["SYN-0002"].diagnoses == ("Wilson's disease", "Wilson disease")
    assert by_id["SYN-0002"].metadata["Orpha_id"] == "905"


def test_rarearena_question_is_case_report_then_test_results_unless_they_are_excluded(shared_data):
    row = raw_rows(shared_data / "rarearena" / "RDC_synthetic.jsonl")[0]
    rdc = read(shared_data, "rarearena/RDC_synthetic.jsonl", "rarearena")[0]
    rds = read(shared_data, "rarearena/RDC_synthetic.jsonl", "rarearena", include_test_results=False)[0]
    assert rdc.question == row["case_report"] + " " + row["test_results"]
    assert rds.question == row["case_report"]
    assert rds.metadata["test_results"] == row["test_results"]


def test_rarearena_json_lines_under_a_json_name_and_rds_rows_without_results_are_read(shared_data, tmp_path):
    rows = raw_rows(shared_data / "rarearena" / "RDC_synthetic.jsonl")
    rdc = write_jsonl(tmp_path / "RDC.json", rows)  # RareArena ships JSON lines named .json
    rds = write_jsonl(tmp_path / "RDS.json", [{k: v for k, v in r.items() if k != "test_results"} for r in rows])
    assert [e.question for e in read_examples(rdc, "rarearena")] == [
        e.question for e in read(shared_data, "rarearena/RDC_synthetic.jsonl", "rarearena")
    ]
    assert [e.question for e in read_examples(rds, "rarearena")] == [r["case_report"] for r in rows]


# --------------------------------------------------------------------------- one item, several layouts


def _qoa(example: Example) -> tuple[str, dict[str, str], str | None]:
    return example.question, example.options, example.answer


def test_medqa_original_huatuo_bundle_and_medxpertqa_inline_layouts_give_the_same_examples(shared_data):
    original = read(shared_data, "medqa/phrases_no_exclude_test.jsonl", "medqa")
    bundle = read(shared_data, "medqa/MedQA_USLME_test.json", "huatuo")
    inline = read(shared_data, "medqa/medqa_input.jsonl", "eval_input")
    assert [_qoa(e) for e in original] == [_qoa(e) for e in bundle] == [_qoa(e) for e in inline]
    assert original[0].metadata["meta_info"] == "step1"


def test_medxpertqa_hf_layout_and_eval_input_layout_agree_on_every_shared_id(shared_data):
    hf = {e.id: e for e in read(shared_data, "medxpertqa/MedXpertQA_test.jsonl", "medxpertqa")}
    sampled = read(shared_data, "medxpertqa/medxpertqa_sampled_text_input.jsonl", "medxpertqa")
    shared_ids = [e.id for e in sampled if e.id in hf]
    assert len(shared_ids) == 133
    assert all(_qoa(e) == _qoa(hf[e.id]) for e in sampled if e.id in hf)
    assert all(hf[i].metadata.keys() >= {"medical_task", "body_system", "question_type"} for i in shared_ids)


def test_inline_answer_choices_parse_exactly_like_the_explicit_option_lists(shared_data):
    for name in ("medxpertqa_mm_input.jsonl", "medxpertqa_sampled_text_input.jsonl"):
        for row in raw_rows(shared_data / "medxpertqa" / name):
            stem, options = split_inline_choices(row["question"])
            assert options == {o["letter"]: o["content"] for o in row["options"]}
            assert not stem.endswith("Answer Choices:")


def test_medmcqa_huatuo_and_eval_input_copies_agree_except_one_published_gold_letter(shared_data):
    bundle = read(shared_data, "medmcqa/MedMCQA_validation.json", "huatuo")
    inline = read(shared_data, "medmcqa/medmcqa_input.jsonl", "eval_input")
    assert [(e.question, e.options) for e in bundle] == [(e.question, e.options) for e in inline]
    disagreements = [i for i, (a, b) in enumerate(zip(bundle, inline, strict=True)) if a.answer != b.answer]
    assert disagreements == [1]  # HuatuoGPT-o1 says D; the HF-derived copy says A (its explanation: "Ans-a")
    assert inline[1].metadata["subject_name"] == "Physiology"


def test_pubmedqa_official_labels_match_the_huatuo_1000_item_variant(shared_data):
    official = read(shared_data, "pubmedqa/ori_pqal.json", "pubmedqa")
    huatuo = read(shared_data, "pubmedqa/PubMedQA_test.json", "huatuo")
    by_text = {e.question: e for e in official}
    instruction = "\n\nUsing the above document as a reference"
    matched = 0
    for item in huatuo:
        contexts = item.question[: item.question.index(instruction)]
        question = item.question.rsplit("\n", 1)[1]
        twin = by_text[f"{contexts}\n\n{question}"]
        assert (twin.options, twin.answer) == (item.options, item.answer)
        matched += 1
    assert matched == 1000


def test_pubmedqa_ground_truth_keeps_the_500_official_test_pmids_with_their_labels(shared_data):
    truth = json.loads((shared_data / "pubmedqa" / "test_ground_truth.json").read_text())
    path = shared_data / "pubmedqa" / "test_ground_truth.json"
    examples = read(shared_data, "pubmedqa/ori_pqal.json", "pubmedqa", ground_truth=str(path))
    assert {e.id: e.answer_text for e in examples} == truth
    assert examples[0].options == {"A": "yes", "B": "no", "C": "maybe"}


def test_medxpertqa_multimodal_rows_read_without_their_images_which_stay_named_in_metadata(shared_data):
    examples = read(shared_data, "medxpertqa/medxpertqa_mm_input.jsonl", "medxpertqa")
    assert examples[0].metadata["images"] == [{"image_path": "MM-0-a.jpeg"}, {"image_path": "MM-0-b.jpeg"}]
    assert examples[0].metadata["question_type"] == "Reasoning"


def test_skip_images_drops_rows_with_images_and_reports_how_many(shared_data, tmp_path, caplog):
    text_rows = raw_rows(shared_data / "medxpertqa" / "medxpertqa_sampled_text_input.jsonl")[:3]
    mm_rows = raw_rows(shared_data / "medxpertqa" / "medxpertqa_sampled_mm_input.jsonl")[:2]
    path = write_jsonl(tmp_path / "mixed.jsonl", text_rows + mm_rows)
    with caplog.at_level(logging.WARNING):
        kept = read_examples(path, "medxpertqa", skip_images=True)
    assert [e.id for e in kept] == [r["id"] for r in text_rows]
    assert "skipped 2 of 5 rows that need images" in caplog.text
    only_images = write_jsonl(tmp_path / "mm.jsonl", mm_rows)
    with pytest.raises(DataFormatError, match=r"mm\.jsonl: field 'images': at least one example after filtering"):
        read_examples(only_images, "medxpertqa", skip_images=True)


# --------------------------------------------------------------------------- readers on rows written here


def test_raw_medmcqa_cop_counts_from_one_unless_cop_base_zero_is_given(tmp_path):
    row = {
        "id": "q1",
        "question": "Vitamin?",
        "opa": "A1",
        "opb": "B1",
        "opc": "C1",
        "opd": "D1",
        "cop": 1,
        "exp": "because",
        "subject_name": "Biochemistry",
        "topic_name": "Vitamins",
        "choice_type": "single",
    }
    path = write_jsonl(tmp_path / "dev.json", [row, {**row, "id": "q2", "cop": 4}])
    first, last = read_examples(path, "medmcqa")
    assert (first.answer, first.answer_text, last.answer) == ("A", "A1", "D")
    assert first.metadata == {
        "exp": "because",
        "subject_name": "Biochemistry",
        "topic_name": "Vitamins",
        "choice_type": "single",
    }
    zero_based = write_jsonl(tmp_path / "hf.jsonl", [{**row, "cop": 0}, {**row, "id": "q2", "cop": 3}])
    assert [e.answer for e in read_examples(zero_based, "medmcqa", cop_base=0)] == ["A", "D"]


@pytest.mark.parametrize(
    ("cop", "cop_base", "message"),
    [
        (0, 1, r"line 1: field 'cop': an integer 1-4 \(1 = opa\); a 0-3 export needs cop_base=0, got 0"),
        (5, 1, r"line 1: field 'cop': an integer 1-4"),
        (4, 0, r"line 1: field 'cop': an integer 0-3 \(0 = opa\), got 4"),
        ("x", 1, r"field 'cop': an integer 1-4 .* got 'x'"),
    ],
)
def test_medmcqa_cop_outside_its_range_is_a_data_format_error(tmp_path, cop, cop_base, message):
    row = {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop}
    path = write_jsonl(tmp_path / "dev.jsonl", [row])
    with pytest.raises(DataFormatError, match=message):
        read_examples(path, "medmcqa", cop_base=cop_base)


def mmlu_pro_rows() -> list[dict]:
    padded = ["1", "2", "3", "4", "N/A", "N/A"]
    return [
        {
            "question_id": 70,
            "question": "How many?",
            "options": padded,
            "answer": "C",
            "answer_index": 2,
            "cot_content": "",
            "category": "health",
            "src": "made-up",
        },
        {
            "question_id": 71,
            "question": "Which cell?",
            "options": ["x", "y", "z"],
            "answer": "A",
            "answer_index": 0,
            "cot_content": "",
            "category": "biology",
            "src": "made-up",
        },
        {
            "question_id": 72,
            "question": "Which law?",
            "options": ["p", "q", "r", "s"],
            "answer": "B",
            "answer_index": 1,
            "cot_content": "",
            "category": "law",
            "src": "made-up",
        },
    ]


def test_mmlu_pro_raw_rows_drop_na_padding_and_filter_categories(tmp_path):
    path = write_jsonl(tmp_path / "mmlu_pro.jsonl", mmlu_pro_rows())
    everything = read_examples(path, "mmlu_pro")
    assert everything[0].options == {"A": "1", "B": "2", "C": "3", "D": "4"}
    assert (everything[0].id, everything[0].answer, everything[0].metadata["category"]) == ("70", "C", "health")
    medical = read_examples(path, "mmlu_pro", categories=["Biology", "health"])
    assert [e.id for e in medical] == ["70", "71"]


def test_mmlu_pro_reads_parquet_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "test-00000-of-00001.parquet"
    datasets.Dataset.from_list(mmlu_pro_rows()).to_parquet(str(path))
    examples = read_examples(path, "mmlu_pro", categories=["health"])
    assert [(e.id, e.answer, len(e.options)) for e in examples] == [("70", "C", 4)]


def test_mmlu_pro_category_filter_needs_categories_and_must_leave_something(shared_data, tmp_path):
    huatuo_layout = shared_data / "mmlu_pro" / "MMLU-Pro_Medical_test.json"
    with pytest.raises(DataFormatError, match=r"record 0: field 'category': a category to filter on"):
        read_examples(huatuo_layout, "mmlu_pro", categories=["health"])
    path = write_jsonl(tmp_path / "mmlu_pro.jsonl", mmlu_pro_rows())
    with pytest.raises(DataFormatError, match=r"field 'category': at least one example after filtering"):
        read_examples(path, "mmlu_pro", categories=["chemistry"])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**mmlu_pro_rows()[1], "answer_index": 2}])
    with pytest.raises(DataFormatError, match=r"line 1: field 'answer_index': 0 to agree with 'answer' A"):
        read_examples(bad, "mmlu_pro")


GPQA_COLUMNS = [
    "Record ID",
    "Question",
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
    "Subdomain",
    "High-level domain",
    "Explanation",
]


def write_fake_gpqa(path: Path, rows: list[list[str]]) -> Path:
    """Invented rows in GPQA's CSV layout (GPQA's own questions must never be written anywhere)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GPQA_COLUMNS)
        writer.writerows(rows)
    return path


FAKE_GPQA = [
    ["recA", " Fake question one?\n", "right1", "wrong1a", "wrong1b", "wrong1c", "Molecular Biology", "Biology", "e"],
    ["recB", "Fake question two?", "right2", "wrong2a", "wrong2b", "wrong2c", "Genetics", "Biology", "e"],
    ["recC", "Fake question three?", "right3", "wrong3a", "wrong3b", "wrong3c", "Quantum Mechanics", "Physics", "e"],
    ["recD", "Fake question four?", "right4", "wrong4a", "wrong4b", "wrong4c", "Organic Chemistry", "Chemistry", "e"],
]


def test_gpqa_shuffles_each_row_by_seed_and_record_id_whatever_the_row_order(tmp_path):
    examples = read_examples(write_fake_gpqa(tmp_path / "gpqa_main.csv", FAKE_GPQA), "gpqa")
    reversed_file = read_examples(write_fake_gpqa(tmp_path / "reversed.csv", FAKE_GPQA[::-1]), "gpqa")
    assert {e.id: e.options for e in examples} == {e.id: e.options for e in reversed_file}
    assert all(e.answer_text == f"right{i}" for i, e in enumerate(examples, start=1))
    assert sorted(examples[0].options.values()) == ["right1", "wrong1a", "wrong1b", "wrong1c"]
    assert examples[0].question == "Fake question one?"  # surrounding whitespace stripped
    assert examples[0].metadata == {
        "record_id": "recA",
        "subdomain": "Molecular Biology",
        "high_level_domain": "Biology",
        "shuffle_seed": 0,
    }
    other_seeds = [read_examples(tmp_path / "gpqa_main.csv", "gpqa", seed=s) for s in range(1, 6)]
    assert any([e.options for e in other] != [e.options for e in examples] for other in other_seeds)


def test_gpqa_filters_by_high_level_domain_and_subdomain(tmp_path):
    path = write_fake_gpqa(tmp_path / "gpqa_main.csv", FAKE_GPQA)
    assert [e.id for e in read_examples(path, "gpqa", domains=["biology"])] == ["recA", "recB"]
    assert [e.id for e in read_examples(path, "gpqa", subdomains=["Genetics"])] == ["recB"]
    with pytest.raises(DataFormatError, match=r"field 'High-level domain/Subdomain': at least one example"):
        read_examples(path, "gpqa", domains=["Medicine"])


def test_gpqa_row_missing_an_incorrect_answer_names_the_row_and_column(tmp_path):
    path = write_fake_gpqa(tmp_path / "gpqa.csv", [FAKE_GPQA[0], [*FAKE_GPQA[1][:5], "", *FAKE_GPQA[1][6:]]])
    # the first row's question spans two lines (" Fake question one?\n"), so the second row starts on line 4
    with pytest.raises(DataFormatError, match=r"gpqa\.csv, line 4: field 'Incorrect Answer 3': a required value"):
        read_examples(path, "gpqa")


def test_huatuo_bundle_reads_every_subset_or_the_one_asked_for(tmp_path):
    path = tmp_path / "eval_data.json"
    path.write_text(json.dumps({"MedQA_USLME_test": [medqa_row()], "Other": [medqa_row("Q2?"), medqa_row("Q3?")]}))
    every = read_examples(path, "huatuo")
    assert [(e.question, e.metadata["subset"]) for e in every] == [
        ("Which drug?", "MedQA_USLME_test"),
        ("Q2?", "Other"),
        ("Q3?", "Other"),
    ]
    assert len({e.id for e in every}) == 3
    assert [e.question for e in read_examples(path, "huatuo", subset="Other")] == ["Q2?", "Q3?"]
    with pytest.raises(
        DataFormatError, match=r"field 'subset': one of the bundle's keys \['MedQA_USLME_test', 'Other'\]"
    ):
        read_examples(path, "huatuo", subset="PubMedQA_test")


def test_medqa_keeps_every_extra_field_in_metadata_and_reads_the_shipped_demo(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [medqa_row(meta_info="step2&3", id="x-1", difficulty=2)])
    (example,) = read_examples(path, "medqa")
    assert (example.id, example.source, example.answer) == ("x-1", "train", "B")
    assert example.metadata == {"meta_info": "step2&3", "difficulty": 2}
    demo = resolve_path("medzero_pl:data/demo/medqa_demo.jsonl")
    if demo.is_file():
        assert all(e.answer in e.options for e in read_examples("medzero_pl:data/demo/medqa_demo.jsonl", "medqa"))


def test_package_prefix_resolves_inside_the_installed_package():
    import medzero_pl

    resolved = resolve_path("medzero_pl:data/records.py")
    assert resolved == Path(medzero_pl.__file__).parent / "data" / "records.py"
    assert resolved.is_file()
    assert resolve_path("~/x.jsonl") == Path.home() / "x.jsonl"


def test_example_format_round_trips_every_field(shared_data, tmp_path):
    originals = [
        *read(shared_data, "medqa/phrases_no_exclude_test.jsonl", "medqa")[:5],
        *read(shared_data, "medxpertqa/medxpertqa_mm_input.jsonl", "medxpertqa")[:5],
        *read(shared_data, "pubmedqa/ori_pqal.json", "pubmedqa")[:5],
        *read(shared_data, "rarearena/RDC_synthetic.jsonl", "rarearena"),
    ]
    path = tmp_path / "prepared.jsonl"
    assert write_examples(path, originals) == len(originals)
    assert read_examples(path, "example") == originals
    assert {e.source for e in read_examples(path, "example", source="relabelled")} == {"relabelled"}


# --------------------------------------------------------------------------- bad input: one clear error each


def test_a_missing_file_is_named():
    with pytest.raises(DataFormatError, match=r"nowhere/medqa\.jsonl: file not found"):
        read_examples("nowhere/medqa.jsonl", "medqa")


def test_a_malformed_json_line_names_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(medqa_row()) + "\n\n" + '{"question": "broken",\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl, line 3: malformed JSON"):
        read_examples(path, "medqa")


def test_a_malformed_json_document_names_its_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"question": "x"},\n  oops\n]')
    with pytest.raises(DataFormatError, match=r"bad\.json, line 3: malformed JSON"):
        read_examples(path, "huatuo")


def test_a_row_without_a_required_field_names_line_and_field(tmp_path):
    row = medqa_row()
    del row["question"]
    path = write_jsonl(tmp_path / "rows.jsonl", [medqa_row(), row])
    with pytest.raises(DataFormatError, match=r"rows\.jsonl, line 2: field 'question': a required value"):
        read_examples(path, "medqa")


def test_an_answer_letter_not_among_the_options_names_the_options(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [medqa_row(answer="E")])
    expected = r"line 1: field 'answer_idx': a letter among the options \['A', 'B', 'C', 'D'\], got 'E'"
    with pytest.raises(DataFormatError, match=expected):
        read_examples(path, "medqa")


def test_a_record_in_a_json_list_is_named_by_its_index(tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps([medqa_row(), medqa_row(answer="Z")]))
    with pytest.raises(DataFormatError, match=r"bundle\.json, record 1: field 'answer_idx'"):
        read_examples(path, "medqa")


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DataFormatError, match=r"empty\.jsonl: at least one medqa record, got an empty file"):
        read_examples(path, "medqa")


def test_eval_input_rows_need_options_or_inline_choices_and_exactly_one_label(tmp_path):
    no_choices = write_jsonl(tmp_path / "a.jsonl", [{"question": "Plain?", "label": ["A"]}])
    with pytest.raises(DataFormatError, match=r"line 1: field 'options': an 'options' field, or choices inlined"):
        read_examples(no_choices, "eval_input")
    two_labels = write_jsonl(
        tmp_path / "b.jsonl", [{"question": "Q?\nAnswer Choices: (A) x (B) y", "label": ["A", "B"]}]
    )
    with pytest.raises(DataFormatError, match=r"line 1: field 'label': exactly one gold letter, got \['A', 'B'\]"):
        read_examples(two_labels, "eval_input")


def test_pubmedqa_ground_truth_pmids_must_exist_in_the_labelled_file(shared_data, tmp_path):
    truth = tmp_path / "test_ground_truth.json"
    truth.write_text(json.dumps({"99999999": "yes"}))
    with pytest.raises(DataFormatError, match=r"test_ground_truth\.json, PMID 99999999: a PMID present in ori_pqal"):
        read_examples(shared_data / "pubmedqa" / "ori_pqal.json", "pubmedqa", ground_truth=truth)


def test_unknown_formats_and_options_are_refused_before_reading():
    with pytest.raises(ValueError, match=r"unknown data format 'medqa2'; known formats: \["):
        read_examples("x.jsonl", "medqa2")
    with pytest.raises(
        ValueError, match=r"format 'medmcqa' has no option\(s\) \['cop_bas'\]; it accepts \['cop_base'\]"
    ):
        read_examples("x.jsonl", "medmcqa", cop_bas=0)


def test_the_registry_names_every_format_and_its_options():
    assert set(READERS) == {
        "medqa",
        "huatuo",
        "medxpertqa",
        "eval_input",
        "medmcqa",
        "pubmedqa",
        "mmlu_pro",
        "gpqa",
        "rarearena",
        "example",
    }
    assert reader_options("gpqa") == ["seed", "domains", "subdomains"]
    assert reader_options("rarearena") == ["include_test_results"]
