"""The LLM judge client against a fake OpenAI-compatible server on 127.0.0.1: request shape, caching, timeout and
retry, malformed replies."""

from __future__ import annotations

import pytest

from medzero_pl.data.records import Example
from medzero_pl.eval.judge import JudgeClient, judge_results, parse_scores
from tests.fake_judge import FakeServer


def client(url, tmp_path, **kwargs) -> JudgeClient:
    settings = {"cache_dir": tmp_path / "cache", "timeout": 2.0, "retries": 2, "backoff": 0.01} | kwargs
    return JudgeClient(url, "judge-model", **settings)


def test_request_shape_and_parsed_scores(tmp_path):
    with FakeServer(["Scores: [0, 2]"]) as server:
        verdict = client(server.url, tmp_path).judge(["Fabry disease"], ["Gaucher disease", "Anderson-Fabry disease"])
    assert verdict.scores == (0, 2) and verdict.status == "ok"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["type"] == "application/json"
    body = request["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "2 if it is the same disease or a synonym" in body["messages"][0]["content"]
    assert body["messages"][1]["content"].endswith("1. Gaucher disease\n2. Anderson-Fabry disease")


def test_replies_are_cached_on_disk(tmp_path):
    with FakeServer(["[2]", "[0]"]) as server:
        first = client(server.url, tmp_path).judge(["Fabry disease"], ["Fabry disease"])
        second = client(server.url, tmp_path).judge(["Fabry disease"], ["Fabry disease"])  # a new client, same cache
    assert first.scores == second.scores == (2,) and second.cached and len(server.requests) == 1


def test_timeout_and_server_errors_are_retried(tmp_path):
    with FakeServer([("sleep", 1.0, "[1]"), ("status", 503), "[1]"]) as server:
        judge = client(server.url, tmp_path, timeout=0.3)
        assert judge.judge(["Fabry disease"], ["lysosomal storage disease"]).scores == (1,)
    assert judge.requests_sent == 3


def test_giving_up_leaves_the_case_unscored(tmp_path):
    with FakeServer([("status", 500)] * 3) as server:
        verdict = client(server.url, tmp_path, retries=1).judge(["Fabry disease"], ["x"])
    assert verdict.scores is None and verdict.status == "error" and len(server.requests) == 2


def test_a_client_error_is_not_retried(tmp_path):
    with FakeServer([("status", 400)]) as server:
        assert client(server.url, tmp_path).judge(["Fabry disease"], ["x"]).status == "error"
    assert len(server.requests) == 1


@pytest.mark.parametrize("content", ["two", "[2, 0]", "[3]", "[true]", '["2"]', ""])
def test_malformed_replies_parse_to_none(content):
    assert parse_scores(content, 1) is None


def test_judged_benchmark_counts_malformed_as_unscored_not_wrong(tmp_path):
    items = [Example(id=f"c{i}", source="rarearena", question="case", diagnoses=("Fabry disease",)) for i in range(4)]
    records = [
        {"id": "c0", "completions": ["<answer>Fabry disease</answer>"]},
        {"id": "c1", "completions": ["<answer>1. Gaucher disease\n2. Fabry disease</answer>"]},
        {"id": "c2", "completions": ["<answer>Pompe disease</answer>"]},
        {"id": "c3", "completions": ["no answer at all"]},
    ]
    result = {"records": records, "scorers": {}}
    with FakeServer(["[2]", "[0, 2]", "I cannot grade this"]) as server:
        summary = judge_results(result, items, client(server.url, tmp_path))
    assert len(server.requests) == 3  # no request for a completion without an answer
    # scored: c0 [2], c1 [0, 2], c3 () -> top1 1/3, top5 2/3; c2 malformed
    assert summary["top1"] == pytest.approx(1 / 3) and summary["top5"] == pytest.approx(2 / 3)
    assert summary["malformed"] == 1 and summary["unscored"] == 1 and summary["scored"] == 3
    assert records[2]["judge"] == {"scores": None, "status": "malformed"}


@pytest.mark.parametrize(
    "bad",
    [("body", b"\xff\xfe not utf-8"), ("body", b'{"object": "error", "message": "overloaded"}'), ("body", b"<html>")],
    ids=["not-utf8", "not-a-completion", "not-json"],
)
def test_an_unreadable_reply_is_unscored_and_not_cached_so_a_working_judge_is_asked_next_time(tmp_path, bad):
    with FakeServer([bad]) as server:
        verdict = client(server.url, tmp_path).judge(["Fabry disease"], ["Fabry disease"])
    assert verdict.scores is None and verdict.status == "malformed"
    with FakeServer(["[2]"]) as server:
        verdict = client(server.url, tmp_path).judge(["Fabry disease"], ["Fabry disease"])
    assert verdict.scores == (2,) and not verdict.cached and len(server.requests) == 1
    with FakeServer([]) as server:  # now a parsed verdict: from the cache, no request
        assert client(server.url, tmp_path).judge(["Fabry disease"], ["Fabry disease"]).cached
    assert server.requests == []


def test_a_reply_that_is_not_http_is_an_error_not_a_crash(tmp_path):
    with FakeServer([("raw", b"garbage, not HTTP\r\n\r\n")] * 2) as server:
        verdict = client(server.url, tmp_path, retries=1).judge(["Fabry disease"], ["Fabry disease"])
    assert verdict.scores is None and verdict.status == "error" and len(server.requests) == 2


def test_the_api_key_is_sent_as_a_bearer_header(tmp_path):
    with FakeServer(["[2]"]) as server:
        client(server.url, tmp_path, api_key="sk-judge").judge(["Fabry disease"], ["Fabry disease"])
    assert server.requests[0]["auth"] == "Bearer sk-judge"
    assert "sk-judge" not in "".join(p.read_text() for p in (tmp_path / "cache").iterdir())
