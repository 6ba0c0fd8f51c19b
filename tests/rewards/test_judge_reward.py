"""The diagnosis_judge reward against a fake OpenAI-compatible server on 127.0.0.1: the judge's credit, fallback to
diagnosis_match on garbage, 500s, a server that never answers or is down (no exception, bounded time, counted), the
cache, the metric through the reward set, and the key kept out of everything written."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from medzero_pl.rewards import build_rewards
from medzero_pl.rewards.judge.reward import FALLBACK_RATE, diagnosis_judge_reward, judge_credit
from medzero_pl.rewards.registry import RewardConfigError
from tests.fake_judge import FakeServer

GOLD = [["Fabry disease"], ["Fabry disease"], ["Pompe disease"], ["Fabry disease"]]
ANSWERS = [
    "<think>x</think><answer>Fabry disease</answer>",
    "<think>x</think><answer>Gaucher disease</answer>",
    "<think>x</think><answer>Pompe disease</answer>",
    "no answer at all",
]


def judge(url, tmp_path, **kwargs):
    settings = {"cache_dir": str(tmp_path / "cache"), "timeout": 2.0, "retries": 1, "backoff": 0.01} | kwargs
    return diagnosis_judge_reward(url, "judge-model", **settings)


def score(reward, completions=ANSWERS, diagnoses=GOLD, **columns):
    logged = {}
    values = reward(None, completions, diagnoses=diagnoses, log_metric=logged.__setitem__, **columns)
    return values, logged


def test_the_judges_scores_are_the_reward(tmp_path):
    with FakeServer(default="[1]") as server:
        values, logged = score(judge(server.url, tmp_path, broader_credit=0.25))
    assert values == [0.25, 0.25, 0.25, 0.0]  # no answer: 0.0, no request
    assert len(server.requests) == 3 and logged == {FALLBACK_RATE: 0.0}
    assert judge_credit((0, 2, 1), 0.5) == 1.0 and judge_credit((0, 1), 0.5) == 0.5 and judge_credit((), 0.5) == 0.0


def test_rows_of_another_task_or_without_gold_are_not_judged(tmp_path):
    with FakeServer(default="[2]") as server:
        values, _ = score(
            judge(server.url, tmp_path),
            ANSWERS[:3],
            [["Fabry disease"], [], ["x"]],
            task=["diagnosis", "diagnosis", "mcq"],
        )
    assert values == [1.0, None, None] and len(server.requests) == 1


def test_top_k_sends_the_first_k_diagnoses(tmp_path):
    with FakeServer(default="[0, 2]") as server:
        values, _ = score(
            judge(server.url, tmp_path, top_k=2),
            ["<answer>1. Gaucher disease\n2. Fabry disease</answer>"],
            [["Fabry disease"]],
        )
    assert values == [1.0]
    assert server.requests[0]["body"]["messages"][1]["content"].endswith("1. Gaucher disease\n2. Fabry disease")


@pytest.mark.parametrize(
    "reply",
    ["I cannot grade this", "[7]", ("status", 500), ("status", 400), ("body", b"<html>"), ("raw", b"garbage\r\n\r\n")],
    ids=["prose", "out-of-range", "500", "400", "not-json", "not-http"],
)
def test_a_judge_that_answers_garbage_or_fails_falls_back_to_diagnosis_match(tmp_path, reply):
    with FakeServer(default=reply) as server:
        start = time.monotonic()
        values, logged = score(judge(server.url, tmp_path))
        elapsed = time.monotonic() - start
    assert values == [1.0, 0.0, 1.0, 0.0]  # diagnosis_match's fuzzy scores
    assert logged == {FALLBACK_RATE: 1.0} and len(server.requests) <= 3 * 2 and elapsed < 10


def test_a_judge_that_never_answers_falls_back_by_the_deadline(tmp_path):
    with FakeServer(default=("sleep", 30.0, "[2]")) as server:
        reward = judge(server.url, tmp_path, timeout=5.0, deadline=0.5, max_workers=2)
        start = time.monotonic()
        values, logged = score(reward)
        elapsed = time.monotonic() - start
        assert values == [1.0, 0.0, 1.0, 0.0] and logged == {FALLBACK_RATE: 1.0}
        assert elapsed < 2.0  # the deadline, not the 5 s timeout: the step does not wait for the judge
        assert len(server.requests) <= 2  # the third row was queued behind the two in flight and cancelled


def test_a_server_that_is_down_falls_back_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens there
    start = time.monotonic()
    values, logged = score(judge(f"http://127.0.0.1:{port}/v1", tmp_path))
    assert values == [1.0, 0.0, 1.0, 0.0] and logged == {FALLBACK_RATE: 1.0} and time.monotonic() - start < 10


def test_a_verdict_is_cached_so_the_second_call_sends_nothing(tmp_path):
    with FakeServer(default="[2]") as server:
        first, _ = score(judge(server.url, tmp_path))
        second, logged = score(judge(server.url, tmp_path))  # a new reward, the same cache directory
    assert first == second == [1.0, 1.0, 1.0, 0.0] and logged == {FALLBACK_RATE: 0.0}
    assert len(server.requests) == 3


def test_the_reward_set_reports_the_fallback_rate(tmp_path):
    with FakeServer(["[2]"], default="nonsense") as server:
        spec = {"name": "diagnosis_judge", "kwargs": {"base_url": server.url, "model": "m", "max_workers": 1}}
        rewards = build_rewards([spec, {"name": "strict_format", "weight": 0.2}])
        out = rewards(None, ANSWERS[:2], diagnoses=GOLD[:2])
    assert out.per_function["diagnosis_judge"] == [1.0, 0.0] and out.metrics == {FALLBACK_RATE: 0.5}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base_url": "127.0.0.1:8001"}, "base_url must be an http(s) URL"),
        ({"deadline": 0}, "deadline must be a positive number"),
        ({"top_k": 6}, "top_k must be an integer in [1, 5]"),
        ({"api_key_env": "MEDZERO_TEST_UNSET_KEY"}, "'MEDZERO_TEST_UNSET_KEY' is not set"),
        ({"fallback": {"mode": "exact"}}, "mode must be one of"),
    ],
)
def test_bad_settings_fail_when_the_rewards_are_built(kwargs, message):
    spec = {"name": "diagnosis_judge", "kwargs": {"base_url": "http://127.0.0.1:1/v1", "model": "m"} | kwargs}
    with pytest.raises(RewardConfigError, match="diagnosis_judge.*" + re.escape(message)):
        build_rewards([spec])


def test_the_api_key_is_sent_but_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-judge")
    with FakeServer(default="[2]") as server:
        reward = judge(server.url, tmp_path, api_key_env="JUDGE_KEY")
        score(reward)
    assert {r["auth"] for r in server.requests} == {"Bearer sk-secret-judge"}
    written = "".join(p.read_text() for p in (tmp_path / "cache").iterdir())
    assert written and "sk-secret" not in written and "sk-secret" not in repr(reward)


def test_structured_replies_are_exactly_what_the_parser_accepts(tmp_path):
    from medzero_pl.rewards.judge.rubric import parse_scores, score_list_regex

    for n, good, bad in [(1, "[2]", "[2, 0]"), (3, "[0, 1, 2]", "[0,1,2]")]:
        assert re.fullmatch(score_list_regex(n), good) and parse_scores(good, n) is not None
        assert not re.fullmatch(score_list_regex(n), bad)
    with FakeServer(default="[0, 2]") as server:
        score(judge(server.url, tmp_path, top_k=2, structured=True), ["<answer>a; b</answer>"], [["b"]])
    assert server.requests[0]["body"]["structured_outputs"] == {"regex": score_list_regex(2)}


def test_an_answer_too_long_to_be_a_name_is_matched_not_sent(tmp_path):
    with FakeServer(default="[2]") as server:
        values, logged = score(
            judge(server.url, tmp_path), [f"<answer>{'Fabry disease ' * 30}</answer>"], [["Fabry disease"]]
        )
    assert values == [0.0] and server.requests == [] and logged == {FALLBACK_RATE: 0.0}


def test_the_preset_builds_and_scores_subtypes_by_its_fallback_when_no_judge_listens(tmp_path, hypernym_path):
    import yaml

    specs = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "conf" / "rewards" / "diagnosis_judge.yaml").read_text()
    )
    kwargs = specs[0]["kwargs"]
    kwargs |= {"base_url": "http://127.0.0.1:9/v1", "cache_dir": str(tmp_path), "retries": 0}  # nobody on port 9
    kwargs["fallback"]["hypernym_path"] = str(hypernym_path)  # the preset names data/rarearena/
    out = build_rewards(specs)(None, ["<answer>Classic galactosemia</answer>"], diagnoses=[["Galactosemia"]])
    assert out.per_function["diagnosis_judge"] == [1.0] and out.metrics == {FALLBACK_RATE: 1.0}
