"""The data module serves whole groups' prompts with their gold fields, and resumes at the exact next batch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from medzero_pl.data.config import DataConfig
from medzero_pl.data.datamodule import MedZeroDataModule, ResumableBatchSampler, normalised_questions
from medzero_pl.data.mixing import DataSource
from medzero_pl.data.prompts import PromptTemplate
from medzero_pl.data.readers import read_examples, resolve_path
from medzero_pl.data.records import DataFormatError
from tests.tiny import make_tiny_model_dir


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_sampler_continues_exactly_where_a_previous_one_stopped():
    order = list(range(10))
    straight = take(iter(ResumableBatchSampler(order, 3, seed=1)), 7)
    resumed = take(iter(ResumableBatchSampler(order, 3, seed=1, consumed=4)), 3)
    assert straight[4:] == resumed


def test_sampler_drops_the_tail_and_reshuffles_each_epoch():
    batches = take(iter(ResumableBatchSampler(list(range(10)), 3, seed=0)), 9)
    epoch0, epoch1, epoch2 = batches[:3], batches[3:6], batches[6:]
    assert epoch0 == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # the first epoch keeps the curriculum order
    assert epoch1 != epoch0 and epoch2 != epoch1
    for epoch in (epoch1, epoch2):
        flat = [i for b in epoch for i in b]
        assert len(set(flat)) == 9  # without replacement within an epoch


def test_sampler_gives_each_rank_a_disjoint_share_of_the_global_batch():
    shards = [take(iter(ResumableBatchSampler(list(range(8)), 4, seed=0, rank=r, world_size=2)), 2) for r in (0, 1)]
    assert shards[0] == [[0, 2], [4, 6]] and shards[1] == [[1, 3], [5, 7]]


def test_sampler_rejects_a_batch_larger_than_the_dataset():
    with pytest.raises(ValueError, match="prompts_per_step=8 is larger than the training set"):
        ResumableBatchSampler(list(range(5)), 8, seed=0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"))


NO_EXCLUSION = {"exclude_eval_questions": False}


def demo_module(tiny_dir: Path, **overrides) -> MedZeroDataModule:
    config = DataConfig(
        sources=[DataSource(path="medzero_pl:data/demo/medqa_demo.jsonl", format="medqa")],
        val_fraction=0.25,
        prompts_per_step=4,
        **overrides,
    )
    return MedZeroDataModule(config, PromptTemplate(), tokenizer=str(tiny_dir))


def test_batches_carry_prompt_ids_text_and_every_gold_field(tiny_dir):
    dm = demo_module(tiny_dir)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_items) == 60 and len(dm.val_items) == 20
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) >= {"prompt_ids", "prompts", "answer", "options", "diagnoses", "task", "source", "id"}
    assert len(batch["prompt_ids"]) == 4 and all(isinstance(i, int) for i in batch["prompt_ids"][0])
    assert all(letter in options for letter, options in zip(batch["answer"], batch["options"], strict=True))
    assert "Answer Choices: (A)" in batch["prompts"][0]


def test_the_stream_resumes_at_the_data_position_the_module_restored(tiny_dir):
    dm = demo_module(tiny_dir)
    dm.setup("fit")
    stream = iter(dm.train_dataloader())
    batches = take(stream, 5)
    restored = demo_module(tiny_dir)
    restored.trainer = SimpleNamespace(lightning_module=SimpleNamespace(data_position=3), global_rank=0, world_size=1)
    restored.setup("fit")
    assert next(iter(restored.train_dataloader()))["id"] == batches[3]["id"]


def test_long_prompts_are_cut_from_the_left(tiny_dir):
    dm = demo_module(tiny_dir, max_prompt_length=16)
    dm.setup("fit")
    assert max(len(item["prompt_ids"]) for item in dm.train_items) == 16


def test_missing_source_file_is_reported_before_setup(tiny_dir, tmp_path):
    config = DataConfig(sources=[DataSource(path=str(tmp_path / "nope.jsonl"), format="medqa")])
    dm = MedZeroDataModule(config, PromptTemplate(), tokenizer=str(tiny_dir))
    with pytest.raises(DataFormatError, match="nope.jsonl.*file not found"):
        dm.prepare_data()


def test_held_out_questions_are_left_out_of_training_unless_disabled(tiny_dir):
    examples = read_examples(resolve_path("medzero_pl:data/demo/medqa_demo.jsonl"), "medqa")
    held_out = normalised_questions(examples[:10])
    baseline, dropped, kept = demo_module(tiny_dir), demo_module(tiny_dir), demo_module(tiny_dir, **NO_EXCLUSION)
    dropped.held_out_questions = kept.held_out_questions = held_out
    for dm in (baseline, dropped, kept):
        dm.setup("fit")
    held_out_ids = {ex.id for ex in examples[:10]}
    in_training = held_out_ids & {item["id"] for item in baseline.train_items}
    assert in_training  # the seeded split puts some of them in training
    assert {item["id"] for item in dropped.train_items} == {item["id"] for item in baseline.train_items} - held_out_ids
    assert kept.train_items == baseline.train_items
    assert dropped.val_items == baseline.val_items  # validation is not touched


def test_a_training_set_made_only_of_held_out_questions_is_an_error(tiny_dir):
    dm = demo_module(tiny_dir)
    dm.held_out_questions = normalised_questions(
        read_examples(resolve_path("medzero_pl:data/demo/medqa_demo.jsonl"), "medqa")
    )
    with pytest.raises(DataFormatError, match="every training question is an evaluation item"):
        dm.setup("fit")


def test_measured_pass_rates_filter_the_training_questions_without_touching_the_data(tiny_dir, tmp_path):
    from medzero_pl.data.difficulty import write_pass_rates

    everything = demo_module(tiny_dir)
    everything.setup("fit")
    source = resolve_path("medzero_pl:data/demo/medqa_demo.jsonl")
    before = source.read_bytes()
    rates = [
        {"source": item["source"], "id": item["id"], "pass_rate": (i % 4) / 3}
        for i, item in enumerate(everything.train_items)
    ]
    path = write_pass_rates(tmp_path / "pass_rates.jsonl", rates)
    band = demo_module(tiny_dir, pass_rates=str(path), pass_rate_range=[0.2, 0.8])
    band.setup("fit")
    kept = {r["id"] for r in rates if 0.2 <= r["pass_rate"] <= 0.8}
    assert {item["id"] for item in band.train_items} == kept and 0 < len(kept) < len(rates)
    assert source.read_bytes() == before
    assert DataConfig(pass_rate_range=[0.1, 0.9]).problems() == [
        "pass_rate_range=[0.1, 0.9]: expected null unless data.pass_rates names a measured pass-rate file"
    ]
