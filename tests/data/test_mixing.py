"""Mixing: seeded draws without replacement, weighted shares, seeded splits and curriculum orders."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from medzero_pl.data.mixing import (
    CURRICULA,
    DataSource,
    apply_curriculum,
    easy_hard_ratio,
    easy_to_hard,
    interleave,
    load_sources,
    mix,
    sample_sizes,
    train_val_split,
)
from medzero_pl.data.records import Example


def examples(n: int, source: str = "s", difficulty=None) -> list[Example]:
    """n tiny MCQs; ``difficulty`` is a constant or a function of the index (None: no difficulty)."""
    made = []
    for i in range(n):
        metadata = {} if difficulty is None else {"difficulty": difficulty(i) if callable(difficulty) else difficulty}
        made.append(
            Example(
                id=f"{source}-{i}",
                source=source,
                question=f"q{i}",
                options={"A": "x", "B": "y"},
                answer="A",
                metadata=metadata,
            )
        )
    return made


def ids(items: list[Example]) -> list[str]:
    return [e.id for e in items]


def test_a_source_is_labelled_by_its_name_or_its_file_stem():
    assert DataSource("data/medqa/train.jsonl", "medqa").label == "train"
    assert DataSource("medzero_pl:data/demo/medqa_demo.jsonl", "medqa").label == "medqa_demo"
    assert DataSource("data/medqa/train.jsonl", "medqa", name="medqa_usmle").label == "medqa_usmle"


def test_invalid_source_settings_are_refused():
    with pytest.raises(ValueError, match=r"sample_size=0: expected >= 1, or null; weight=0: expected a finite number"):
        DataSource("x.jsonl", "medqa", sample_size=0, weight=0)


@pytest.mark.parametrize("weight", ["0", "-1", "nan", "inf"])
def test_a_weight_that_cannot_share_the_data_is_one_error_line(weight, capsys):
    from medzero_pl.fit import main

    source = f"data.sources=[{{path: medzero_pl:data/demo/medqa_demo.jsonl, format: medqa, weight: {weight}}}]"
    assert main([source]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: data source 'medzero_pl:data/demo/medqa_demo.jsonl': weight={float(weight)}: expected a finite number > 0"
    ]


def test_sample_size_draws_seeded_without_replacement():
    pool = examples(50)
    source = DataSource("s.jsonl", "medqa", name="s", sample_size=20)
    drawn = mix([pool], [source], seed=1)
    assert len(drawn) == 20 and len(set(ids(drawn))) == 20
    assert drawn == mix([pool], [source], seed=1)
    assert drawn != mix([pool], [source], seed=2)


def test_asking_a_source_for_more_than_it_has_is_an_error_not_a_resample():
    with pytest.raises(ValueError, match=r"without replacement.*s: wants 11 but has 10"):
        mix([examples(10)], [DataSource("s.jsonl", "medqa", name="s", sample_size=11)], seed=0)


def test_a_source_without_sample_size_or_total_is_taken_whole_in_file_order():
    pool = examples(7)
    assert mix([pool], [DataSource("s.jsonl", "medqa", name="s")], seed=3) == pool


def test_train_size_is_shared_by_weight_among_sources_without_a_sample_size():
    sources = [
        DataSource("a.jsonl", "medqa", name="a", sample_size=10),
        DataSource("b.jsonl", "medqa", name="b", weight=2.0),
        DataSource("c.jsonl", "medqa", name="c", weight=1.0),
    ]
    assert sample_sizes([100, 100, 100], sources, train_size=110) == [10, 67, 33]
    mixed = mix([examples(100, "a"), examples(100, "b"), examples(100, "c")], sources, seed=0, train_size=110)
    assert Counter(e.source for e in mixed) == {"a": 10, "b": 67, "c": 33}


def test_train_size_that_cannot_be_met_is_refused():
    fixed = [DataSource("a.jsonl", "medqa", name="a", sample_size=10)]
    with pytest.raises(ValueError, match=r"train_size=5 cannot be met: sources with sample_size take 10"):
        sample_sizes([100], fixed, train_size=5)
    with pytest.raises(ValueError, match=r"none is left to fill the rest"):
        sample_sizes([100], fixed, train_size=20)


def test_adding_a_source_does_not_change_what_another_source_contributes():
    a = DataSource("a.jsonl", "medqa", name="a", sample_size=5)
    b = DataSource("b.jsonl", "medqa", name="b", sample_size=5)
    alone = mix([examples(30, "a")], [a], seed=4)
    together = mix([examples(30, "b"), examples(30, "a")], [b, a], seed=4)
    assert together[5:] == alone


def test_source_labels_must_be_unique():
    twice = [DataSource("x/train.jsonl", "medqa"), DataSource("y/train.jsonl", "medqa")]
    with pytest.raises(ValueError, match=r"source labels must be unique .* repeated: \['train'\]; set 'name'"):
        mix([examples(3), examples(3)], twice, seed=0)


def test_train_val_split_is_seeded_disjoint_and_complete():
    pool = examples(16)
    train, val = train_val_split(pool, 0.3, seed=0)
    assert (len(train), len(val)) == (11, 5)  # round(16 * 0.3) = 5, as in a 70/30 RareArena split
    assert sorted(ids(train + val)) == sorted(ids(pool))
    assert (train, val) == train_val_split(pool, 0.3, seed=0)
    assert (train, val) != train_val_split(pool, 0.3, seed=1)


def test_train_val_split_edges():
    assert train_val_split(examples(4), 0.0, seed=0)[1] == []
    assert [len(part) for part in train_val_split(examples(3), 0.01, seed=0)] == [2, 1]  # at least one held out
    assert [len(part) for part in train_val_split(examples(3), 0.99, seed=0)] == [1, 2]  # at least one to train
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        train_val_split(examples(4), 1.0, seed=0)


def test_no_curriculum_is_a_seeded_shuffle():
    pool = examples(20)
    order = CURRICULA["none"](pool, seed=5)
    assert sorted(ids(order)) == sorted(ids(pool)) and order != pool
    assert order == CURRICULA["none"](pool, seed=5)


def test_easy_to_hard_sorts_by_difficulty_and_keeps_ties_in_input_order():
    pool = examples(6, difficulty=lambda i: [3, 1, 2, 1, 3, 2][i])
    assert ids(easy_to_hard(pool, seed=0)) == ["s-1", "s-3", "s-2", "s-5", "s-0", "s-4"]


def test_easy_to_hard_reads_the_configured_metadata_key():
    pool = [
        Example(id=str(i), source="s", question="q", options={"A": "a", "B": "b"}, answer="A", metadata={"level": -i})
        for i in range(3)
    ]
    assert ids(apply_curriculum(pool, "easy_to_hard", seed=0, key="level")) == ["2", "1", "0"]


def test_interleave_alternates_easy_and_hard_within_every_batch():
    pool = examples(16, difficulty=lambda i: i)  # 0-7 easy, 8-15 hard
    order = interleave(pool, seed=0, batch_size=4)
    assert sorted(ids(order)) == sorted(ids(pool))
    hard = [e.metadata["difficulty"] >= 8 for e in order]
    assert hard == [False, True] * 8
    batches = [order[i : i + 4] for i in range(0, 16, 4)]
    assert all(sum(e.metadata["difficulty"] >= 8 for e in batch) == 2 for batch in batches)
    assert order == interleave(pool, seed=0, batch_size=4) != interleave(pool, seed=1, batch_size=4)


def test_interleave_with_an_odd_batch_gives_the_extra_slot_to_an_easy_example():
    order = interleave(examples(9, difficulty=lambda i: i), seed=0, batch_size=3)
    assert [e.metadata["difficulty"] >= 5 for e in order] == [False, True, False] * 2 + [False, True, True]
    assert len(order) == 9


def test_curricula_need_a_numeric_difficulty_and_a_known_name():
    with pytest.raises(ValueError, match=r"s-0 \(s\): curriculum needs a numeric metadata\['difficulty'\], got None"):
        apply_curriculum(examples(2), "interleave", seed=0)
    with pytest.raises(
        ValueError,
        match=r"unknown curriculum 'hard_first'; known: \['easy_hard_ratio', 'easy_to_hard', 'interleave', 'none'\]",
    ):
        apply_curriculum(examples(2), "hard_first", seed=0)


def test_load_sources_reads_each_file_and_stamps_source_difficulty_where_the_data_has_none(tmp_path):
    rows = [
        {"question": "q1", "options": {"A": "a", "B": "b"}, "answer_idx": "A"},
        {"question": "q2", "options": {"A": "a", "B": "b"}, "answer_idx": "B", "difficulty": 5},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (loaded,) = load_sources([DataSource(str(path), "medqa", name="medqa_usmle", difficulty=1)])
    assert [(e.id, e.source, e.metadata["difficulty"]) for e in loaded] == [
        ("medqa_usmle-0", "medqa_usmle", 1),
        ("medqa_usmle-1", "medqa_usmle", 5),
    ]


def test_load_sources_passes_reader_options(shared_data):
    source = DataSource(
        str(shared_data / "rarearena" / "RDC_synthetic.jsonl"), "rarearena", options={"include_test_results": False}
    )
    (cases,) = load_sources([source])
    assert len(cases) == 16 and "test_results" in cases[0].metadata


def test_easy_hard_ratio_puts_a_fixed_number_of_easy_questions_in_every_batch():
    pool = examples(6, "medqa", difficulty=0) + examples(14, "xpert", difficulty=1)
    order = apply_curriculum(pool, "easy_hard_ratio", seed=0, batch_size=4, easy_share=0.25, hard_above=0.5)
    assert sorted(ids(order)) == sorted(ids(pool))
    batches = [order[i : i + 4] for i in range(0, 20, 4)]
    assert [sum(e.source == "medqa" for e in batch) for batch in batches] == [1, 1, 1, 1, 2]  # then the rest
    assert (
        order
        == easy_hard_ratio(pool, seed=0, batch_size=4, easy_share=0.25)
        != easy_hard_ratio(pool, seed=1, batch_size=4, easy_share=0.25)
    )
    measured = examples(8, difficulty=lambda i: i / 8)  # 1 - pass rate: 0, 0.125, ..., 0.875
    order = easy_hard_ratio(measured, seed=0, batch_size=4, easy_share=0.75, hard_above=0.7)
    assert [sum(e.metadata["difficulty"] >= 0.7 for e in order[i : i + 4]) for i in (0, 4)] == [1, 1]
