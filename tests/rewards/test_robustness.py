"""No reward raises on any completion or gold value, and none backtracks catastrophically.

A reward that crashes on one odd sample (binary junk, unbalanced tags, ``None`` content, a megabyte of repeated
tags) stops a training run, so every registered reward is exercised on arbitrary inputs.
"""

import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medzero_pl.rewards import REWARDS, build_rewards

HYPERNYMS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rarearena" / "orphanet_hypernym.json"
REQUIRED = {
    "cosine_length": {"max_length": 500},
    "soft_overlong": {"max_length": 500},
    # nobody listens on port 9 here: every row falls back, at once
    "diagnosis_judge": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "retries": 0, "deadline": 2.0},
}
SPECS = [{"name": name, "kwargs": REQUIRED.get(name, {})} for name in REWARDS]
SPECS += [
    {
        "name": "mcq_accuracy",
        "kwargs": {"policy": "reject", "fallbacks": ["answer_is", "boxed", "letter", "option_text"]},
    },
    {"name": "diagnosis_match", "kwargs": {"mode": "diagnosis_zero", "top_k": 3, "fallbacks": ["answer_is"]}},
    {"name": "diagnosis_match", "kwargs": {"top_k": 5, "partial_credit": 0.3, "policy": "last"}},
    {"name": "tag_count_format", "kwargs": {"think_opened_in_prompt": True}},
    {"name": "language_consistency", "kwargs": {"region": "after_answer", "expected": ["ja", "en"]}},
]
if HYPERNYMS.exists():
    SPECS.append({"name": "diagnosis_match", "kwargs": {"hypernym_path": str(HYPERNYMS)}})
    SPECS.append({"name": "diagnosis_match", "kwargs": {"hypernym_path": str(HYPERNYMS), "narrower_credit": 1.0}})
REWARD_SET = build_rewards(SPECS)

PIECES = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "\\boxed{",
    "}",
    "(",
    ")",
    "A",
    "B",
    "J",
    "1.",
    "\n",
    ";",
    ",",
    " or ",
    "The answer is ",
    "Fabry disease",
    "type 1",
    "not ",
    "这是",
    "です",
    "α",
    "\x00",
    "\ud800",
    " ",
]
texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
    st.binary(max_size=100).map(lambda b: b.decode("utf-8", errors="surrogateescape")),
)
completions = st.one_of(
    texts,
    st.none(),
    st.binary(max_size=50),
    st.integers(),
    st.lists(st.fixed_dictionaries({"role": st.just("assistant"), "content": st.one_of(st.none(), texts)}), max_size=2),
    st.lists(
        st.dictionaries(
            st.sampled_from(["role", "content", "text", "type"]),
            st.one_of(texts, st.none(), st.lists(st.dictionaries(st.just("text"), texts), max_size=2)),
        ),
        max_size=2,
    ),
)
anything = st.one_of(
    st.none(),
    texts,
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.one_of(st.none(), texts, st.integers()), max_size=3),
    st.dictionaries(st.one_of(texts, st.integers()), st.one_of(st.none(), texts, st.integers()), max_size=4),
)
tasks = st.one_of(st.sampled_from(["mcq", "diagnosis"]), anything)
letters = st.one_of(st.sampled_from(list("ABCDJ")), anything)
options = st.one_of(st.dictionaries(st.sampled_from(list("ABCDEJ")), st.one_of(st.none(), texts), max_size=6), anything)
diagnoses = st.one_of(
    st.lists(st.one_of(texts, st.sampled_from(["Fabry disease", "GPA", "Pompe disease"])), max_size=3), anything
)
rows = st.tuples(
    completions, tasks, letters, options, diagnoses, st.one_of(st.none(), st.lists(st.integers(), max_size=5))
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows, min_size=1, max_size=4))
def test_every_reward_returns_one_number_or_none_per_completion_on_arbitrary_input(batch):
    comps, task, answer, opts, golds, ids = map(list, zip(*batch, strict=True))
    out = REWARD_SET(
        prompts=[None] * len(batch),
        completions=comps,
        task=task,
        answer=answer,
        options=opts,
        diagnoses=golds,
        completion_ids=ids,
        unrelated_column=[object()] * len(batch),
    )
    assert len(out.total) == len(batch) and all(math.isfinite(t) for t in out.total)
    for name, values in out.per_function.items():
        assert len(values) == len(batch), name
        assert all(v is None or math.isfinite(v) for v in values), name


ADVERSARIAL = {
    "unclosed answer tags": "<answer>" * 100_000,
    "stray closing tags": "</answer>" * 100_000,
    "think tags": "<think>" * 100_000,
    "one unclosed answer": "<answer>" + "A" * 1_000_000,
    "a megabyte answer": "<answer>" + "fabry disease or " * 60_000 + "</answer>",
    "whitespace answer": "<answer>diagnosis" + " " * 1_000_000 + "or</answer>",
    "numbered list": "<answer>" + "1. " * 300_000 + "</answer>",
    "open parentheses": "<answer>" + "(" * 1_000_000 + "</answer>",
    "commas": "<answer>" + "a b," * 250_000 + "</answer>",
    "boxed": "\\boxed{" * 100_000,
    "answer is": "The answer is " * 70_000,
    "the": "the " * 250_000,
    "han": "<answer>" + "法" * 1_000_000 + "</answer>",
    "mixed answers": "<answer>Fabry disease</answer>这是" * 40_000,
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_megabyte_adversarial_completions_are_scored_in_linear_time(text):
    cols = {
        "task": ["mcq", "diagnosis"],
        "answer": ["A", None],
        "options": [{"A": "Fabry disease", "B": "x"}, {}],
        "diagnoses": [[], ["Fabry disease", "Anderson-Fabry disease"]],
        "completion_ids": [[1], [1]],
    }
    start = time.perf_counter()
    out = REWARD_SET(None, [text, text], **cols)
    elapsed = time.perf_counter() - start
    assert len(out.total) == 2
    assert elapsed < 5.0, f"{elapsed:.1f}s: something is super-linear"  # linear code takes ~0.1 s
