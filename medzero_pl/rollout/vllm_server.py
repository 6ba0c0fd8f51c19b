"""Rollouts from a vLLM server (`rollout.engine=vllm_server`): the Medical R1-Zero layout, where one GPU serves and
the others train, and the layout that decouples generation from training.

The server is vLLM's own, started by `python -m medzero_pl.serve` (which composes its flags); nothing here is an
HTTP server. This engine is its client and talks only to vLLM's endpoints, with the standard library's HTTP client.

Choices worth knowing:

- Generation. Each rank sends its own prompts, one request per prompt with n = G, to vLLM's token-in/token-out
  endpoint `/inference/v1/generate` (prompt token ids in; completion token ids, the sampled tokens' log-probs and the
  weight version out), all at once; the server batches every rank's concurrent requests together. TRL instead
  gathers all prompts on rank 0 and scatters the results back; without that collective, a rank whose share of an
  evaluation is smaller cannot deadlock the others, and every rank meets a dead server within its own timeout.
  Texts are decoded here with the policy's tokenizer (`skip_special_tokens`), as in the HF engine.
- Seeds and determinism. Prompt `i` is sent with seed `sampling.seed + i * n`, and vLLM seeds its `n` samples
  `+0 ... +n-1`, so completion `i * n + j` is sampled with seed `sampling.seed + i * n + j`, as in the colocated
  engine. On CPU a completion is then a function of (seed, prompt, weights) only. On a GPU the numerics of a request
  depend on the batch it shares with other requests (other ranks' too), so a replay can differ unless the server
  runs vLLM's batch-invariant kernels (`VLLM_BATCH_INVARIANT=1`). Greedy decoding sends n = 1 (vLLM refuses greedy
  n > 1) and repeats the completion n times.
- Log-probs. The server must run with `--logprobs-mode processed_logprobs` (checked at start-up): the log-prob of
  each sampled token under the distribution really sampled from, what the trainer's off-policy correction needs.
- Weights. `update_weights` is a collective: every rank iterates the named tensors (under ZeRO-3 each pair is a
  gather). Rank 0 copies each tensor once, in the server's dtype, into buckets of at most `bucket_bytes` (for gloo
  one reused flat buffer) and drives vLLM's RL protocol: `/pause`, `/start_weight_update`, per bucket
  `/update_weights` (the bucket's names, dtypes, shapes) while the bucket's bytes go through the weight-transfer
  engine, `/finish_weight_update` with a new weight version, `/reset_prefix_cache`, `/resume`. Transfer engines:
  `gloo` (`transfer.py` and the server-side `vllm_plugin.py`; TCP, works on CPU and GPU) and `nccl` (vLLM's NCCL
  engine, GPU only). Rank 0 then broadcasts the outcome, the new version or an error, so every rank returns or raises
  the same one-line error together.
- Weight versions. A version is `<run id>:<number of syncs>`. Every completion carries the version of the weights
  that sampled it, and it must be the one this run pushed last: a server that restarted (back to `default`) or that
  another run pushed to is refused with one line instead of being sampled from silently. At start-up a server that
  still holds another run's weights is reported; the run's first sync replaces them (`WeightSync` syncs before the
  first rollout of every process, so after a resume the resumed weights are pushed before anything is sampled).
- Bounded. Every HTTP call has a timeout (`timeout_s`; a generate call as a whole too), the transfer group has the
  same timeout, and start-up waits at most `startup_timeout_s` for `/health`. A dead, hung or restarted server ends
  the run with an `error:` line that names the server's address, on every rank; never a hang. (NCCL transfers are
  bounded by polling the stream with the same deadline; a stuck NCCL kernel itself cannot be cancelled.)
- `WeightSync` (`callbacks/weight_sync.py`) is the one caller of `update_weights`, as for the colocated engine: once
  per optimizer step, before the next rollout, and before the first rollout of every process. `has_weights` stays
  True (the server never drops its weights) and `sleep` does nothing: the server's memory is its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.errors import UserError
from medzero_pl.rollout.base import Placement, Rollouts, SamplingParams
from medzero_pl.rollout.config import RolloutConfig
from medzero_pl.rollout.hf import _eos_ids
from medzero_pl.rollout.transfer import SERVER_TRANSFERS, GlooGroup, buckets, packed, route_address
from medzero_pl.rollout.vllm import _engine_names

log = logging.getLogger(__name__)

SERVE_HINT = "python -m medzero_pl.serve MODEL --port PORT"
HEALTH_POLL_S = 2.0
MAX_CONCURRENT_REQUESTS = 64
BUCKET_BYTES = 256 * 2**20  # the most weight bytes one `/update_weights` carries (one reused buffer for gloo)


class ServerError(UserError):
    """The vLLM server is unreachable, too slow, misconfigured or serving other weights; the message names it.

    `reason` is the short cause (for messages that wrap it), `status` the HTTP status when the server answered.
    """

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.status = status


class VLLMServerEngine:
    """Generate completions with a running vLLM server and keep its weights equal to the policy's.

    Args:
        tokenizer: Decodes the completions' texts.
        eos_ids: Token ids that end a completion (sent as stop tokens; kept in the ids, finish reason "stop").
        settings: The `rollout.*` settings (its `server_*` fields: address, timeouts, transfer engine).
        bucket_bytes: The most weight bytes sent with one `/update_weights`.
    """

    owns_weights = True
    has_weights = True  # the server never drops its weights

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        eos_ids: Iterable[int],
        settings: RolloutConfig | None = None,
        *,
        bucket_bytes: int = BUCKET_BYTES,
    ) -> None:
        self.settings = s = settings or RolloutConfig(engine="vllm_server")
        self.url = s.server_url
        self.transfer = resolve_transfer(s.server_transfer, cuda=torch.cuda.is_available())
        self.bucket_bytes = bucket_bytes
        self.tokenizer = tokenizer
        self.eos_ids = sorted(set(eos_ids))
        self.http = Http(s.server_url, s.server_timeout_s)
        self.version: str | None = None  # the weight version this run pushed last (None: nothing pushed yet)
        self.syncs = 0
        self._run_id = uuid.uuid4().hex[:12]
        self._transport: Transport | None = None
        self._wait_until_healthy()
        self.server = self._check_server()

    @classmethod
    def from_config(
        cls,
        rollout: RolloutConfig,
        policy: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        model_path: str,
        *,
        seed: int = 0,
        placement: Placement | None = None,
        dtype: str | None = None,
    ) -> VLLMServerEngine:
        """The client `ENGINES["vllm_server"]` builds. The server holds its own model (its path, dtype and seed are
        the server's flags), so `model_path`, `seed`, `placement` and `dtype` are not used; every rank is a client."""
        return cls(tokenizer, _eos_ids(policy, tokenizer), rollout)

    # ---------------------------------------------------------------------------------------- start-up
    def _wait_until_healthy(self) -> None:
        s = self.settings
        deadline = time.monotonic() + s.server_startup_timeout_s
        waited = False
        while True:
            try:
                self.http.call("GET", "/health", timeout=max(0.1, min(10.0, deadline - time.monotonic())))
                return
            except ServerError as err:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerError(
                        f"no healthy vLLM server at {self.url} after {s.server_startup_timeout_s:g} s "
                        f"(rollout.server_startup_timeout_s); last answer: {err.reason}. Start it first ({SERVE_HINT}) "
                        "and check rollout.server_url"
                    ) from None
                if not waited:
                    log.info("waiting up to %g s for the vLLM server at %s", s.server_startup_timeout_s, self.url)
                    waited = True
                time.sleep(min(HEALTH_POLL_S, left))

    def _check_server(self) -> dict[str, Any]:
        """Read the server's configuration and refuse one that cannot serve this run (the same answer on every rank)."""
        try:
            info = self.http.call("GET", "/server_info?config_format=json")["vllm_config"]
        except ServerError as err:
            if err.status == 404:
                raise ServerError(
                    f"the vLLM server at {self.url} has no RL endpoints (VLLM_SERVER_DEV_MODE=1 was not set): start it "
                    f"with {SERVE_HINT}"
                ) from None
            raise
        model = info.get("model_config") or {}
        backend = (info.get("weight_transfer_config") or {}).get("backend")
        if backend != SERVER_TRANSFERS[self.transfer]:
            raise ServerError(
                f"the vLLM server at {self.url} receives weights through {backend or 'no transfer engine'!r} but "
                f"rollout.server_transfer={self.transfer} needs {SERVER_TRANSFERS[self.transfer]!r}: start the server "
                f"with `{SERVE_HINT} --transfer {self.transfer}` or set rollout.server_transfer to match it"
            )
        if model.get("logprobs_mode") != "processed_logprobs":
            raise ServerError(
                f"the vLLM server at {self.url} returns {model.get('logprobs_mode')!r} log-probs; the trainer's "
                f"off-policy correction needs 'processed_logprobs' ({SERVE_HINT} sets --logprobs-mode)"
            )
        if self.http.call("GET", "/is_paused").get("is_paused"):
            self._recover_from_a_stopped_update()
        probe = {"token_ids": [self.eos_ids[0]], "sampling_params": {"max_tokens": 1, "detokenize": False}}
        try:
            self.http.call("POST", "/inference/v1/generate", probe)
        except ServerError as err:
            if err.status in (403, 404):
                raise ServerError(
                    f"the vLLM server at {self.url} does not serve /inference/v1/generate (token ids in and out): "
                    f"start it with --enable-scale-out ({SERVE_HINT} does)"
                ) from None
            raise
        workers = int(self.http.call("GET", "/get_world_size")["world_size"])
        held = self.http.call("GET", "/weight_info")["weight_version"]
        if held != "default":
            log.warning(
                "the vLLM server at %s holds weights %r pushed by an earlier run; this run replaces them with its own "
                "before its first rollout",
                self.url,
                held,
            )
        log.info(
            "vLLM server %s: %s (%s, max_model_len %s, %d worker(s)), weights through %s",
            self.url,
            model.get("model"),
            model.get("dtype"),
            model.get("max_model_len"),
            workers,
            backend,
        )
        dtype = getattr(torch, str(model.get("dtype")).removeprefix("torch."), None)
        return {
            "model": model.get("model"),
            "max_model_len": model.get("max_model_len"),
            "workers": workers,
            "dtype": dtype if isinstance(dtype, torch.dtype) else None,  # weights are sent in the served dtype
        }

    def _recover_from_a_stopped_update(self) -> None:
        """A paused server: a trainer stopped during a weight update, maybe with the update still open (its model is
        then half reloaded, and sampling from it kills vLLM's engine). Rank 0 closes the update (layers that got no
        weights keep their old ones) and resumes the server; the other ranks wait for that. This run pushes its own
        weights before its first rollout either way."""
        if _rank() != 0:
            deadline = time.monotonic() + self.settings.server_startup_timeout_s
            while self.http.call("GET", "/is_paused").get("is_paused"):
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"the vLLM server at {self.url} stayed paused for {self.settings.server_startup_timeout_s:g} "
                        "s (rollout.server_startup_timeout_s): rank 0 did not resume it"
                    )
                time.sleep(HEALTH_POLL_S)
            return
        log.warning(
            "the vLLM server at %s was paused by a trainer that stopped during a weight update: closing that update "
            "and resuming it; this run pushes its own weights before its first rollout",
            self.url,
        )
        self._close_open_update()
        self.http.call("POST", "/resume")

    def _close_open_update(self) -> None:
        """Finish a weight update another trainer left open (nothing to do when none is open)."""
        try:
            self.http.call("POST", "/finish_weight_update")
        except ServerError as err:
            if "without a matching start_weight_update" not in str(err):
                raise

    # ---------------------------------------------------------------------------------------- rollouts
    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingParams) -> Rollouts:
        """Return `len(prompt_ids) * n` completions, prompt-major, with the sampler's per-token log-probs."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        greedy = sampling.temperature == 0
        per_request = 1 if greedy else n
        bodies = [
            {
                "token_ids": list(prompt),
                "sampling_params": {
                    "n": per_request,
                    "max_tokens": sampling.max_new_tokens,
                    "temperature": sampling.temperature,
                    "top_p": 1.0 if greedy else sampling.top_p,
                    "top_k": 0 if greedy else sampling.top_k,
                    "seed": None if sampling.seed is None else sampling.seed + i * n,
                    "stop_token_ids": self.eos_ids,
                    "logprobs": 0,  # the sampled token's log-prob only
                    "detokenize": False,
                },
            }
            for i, prompt in enumerate(prompt_ids)
        ]
        ids: list[list[int]] = []
        reasons: list[str] = []
        logprobs: list[list[float]] = []
        for response in self._post_all("/inference/v1/generate", bodies):
            choices = sorted(response["choices"], key=lambda c: c["index"])
            if len(choices) != per_request:
                raise ServerError(f"the vLLM server at {self.url} returned {len(choices)} of {per_request}")
            for choice in choices * (n // per_request):
                self._check_version(choice.get("weight_versions") or [])
                if choice["finish_reason"] not in ("stop", "length"):
                    raise ServerError(
                        f"the vLLM server at {self.url} ended a completion with {choice['finish_reason']!r} "
                        "(aborted: was it paused or restarted by someone else?)"
                    )
                ids.append(list(choice["token_ids"]))
                reasons.append(choice["finish_reason"])
                logprobs.append([step["logprob"] for step in (choice.get("logprobs") or {}).get("content") or []])
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Rollouts(completion_ids=ids, texts=texts, finish_reasons=reasons, logprobs=logprobs)

    def _post_all(self, path: str, bodies: list[dict[str, Any]]) -> list[Any]:
        """POST every body at once; the whole call is bounded by the timeout, the first failure is raised."""
        timeout = self.settings.server_timeout_s
        pool = ThreadPoolExecutor(max_workers=max(1, min(MAX_CONCURRENT_REQUESTS, len(bodies))))
        try:
            futures = [pool.submit(self.http.call, "POST", path, body) for body in bodies]
            done, pending = wait_futures(futures, timeout=timeout)
            for future in futures:  # in order, so the first error is the first prompt's
                if future in done and future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            if pending:
                raise ServerError(
                    f"the vLLM server at {self.url} did not finish {len(pending)} of {len(bodies)} "
                    f"requests to {path} within {timeout:g} s (rollout.server_timeout_s): check that it is alive "
                    "and not overloaded, or raise the timeout"
                )
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a stuck request ends at its own socket timeout

    def _check_version(self, spans: list[dict[str, Any]]) -> None:
        expected = self.version or "default"
        for span in spans:
            if span["version"] != expected:
                pushed = f"this run pushed {self.version!r} last" if self.version else "this run has pushed nothing yet"
                raise ServerError(
                    f"the vLLM server at {self.url} sampled with weights {span['version']!r} but {pushed}: it "
                    "restarted or another run pushed its weights. Give every run its own server and resume "
                    "(resume=auto pushes the resumed weights first)"
                )

    # ------------------------------------------------------------------------------------------ weights
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Push `(name, tensor)` pairs (Hugging Face names) to the server; every rank calls this (a collective).

        The iterable is consumed lazily, once, on every rank; only rank 0 sends. Every rank returns with the new
        weight version, or raises the same error.
        """
        rank = _rank()
        named = _engine_names(named_tensors)
        outcome: dict[str, Any] = {}
        failure: BaseException | None = None
        if rank == 0:
            try:
                outcome["version"] = self._push(named)
            except Exception as err:  # every rank must hear of it, and the gather must still complete
                failure = err
                outcome["error"] = str(err) if isinstance(err, ServerError) else f"{type(err).__name__}: {err}"
                with contextlib.suppress(Exception):
                    _drain(named)
        else:
            _drain(named)
        outcome = _from_rank0(outcome)
        if failure is not None:
            raise failure
        if "error" in outcome:
            raise ServerError(outcome["error"])
        self.version = outcome["version"]
        self.syncs += 1

    def _push(self, named: Iterator[tuple[str, torch.Tensor]]) -> str:
        held = self.http.call("GET", "/weight_info")["weight_version"]
        if self._transport is not None and held != self.version:
            # Restarted, or another run pushed (and so replaced our transfer group): push ours over a new group.
            log.warning(
                "the vLLM server at %s holds weights %r, not this run's %r: reconnecting and pushing this run's "
                "weights",
                self.url,
                held,
                self.version,
            )
            self._transport = None
        if self._transport is None:
            transport = GlooTransport if self.transfer == "gloo" else NCCLTransport
            self._transport = transport(self.http, self.server["workers"], self.settings.server_timeout_s)
            self._transport.connect()
        version = f"{self._run_id}:{self.syncs + 1}"
        self.http.call("POST", "/pause?mode=abort&clear_cache=false")
        try:
            self.http.call("POST", "/start_weight_update")
        except ServerError as err:
            if "already active" not in str(err):
                raise
            # A trainer stopped between two buckets of an update: close it (all weights follow) and start ours.
            log.warning("closing a weight update that a stopped trainer left open on %s", self.url)
            self._close_open_update()
            self.http.call("POST", "/start_weight_update")
        self._transport.send(named, self.bucket_bytes, self.server["dtype"])
        self.http.call("POST", "/finish_weight_update", {"weight_version": version})
        if not self.http.call("POST", "/reset_prefix_cache").get("success", False):
            raise ServerError(f"the vLLM server at {self.url} could not reset its prefix cache after an update")
        self.http.call("POST", "/resume")
        return version

    def weight_digests(self) -> dict[str, str]:
        """SHA-256 of every weight the server holds, in vLLM's names and checkpoint layout (`transfer.digest`)."""
        results = self.http.call("POST", "/collective_rpc", {"method": "medzero_weight_digests"})["results"]
        return {name: value for worker in results for name, value in worker.items()}

    def sleep(self) -> None:
        """Nothing to free: the server's memory is its own."""


def resolve_transfer(transfer: str, cuda: bool) -> str:
    """`rollout.server_transfer` with `auto` decided: nccl when this process has CUDA, else gloo."""
    if transfer == "auto":
        return "nccl" if cuda else "gloo"
    if transfer not in SERVER_TRANSFERS:
        raise UserError(f"rollout.server_transfer={transfer!r}: expected auto | {' | '.join(SERVER_TRANSFERS)}")
    return transfer


# ------------------------------------------------------------------------------------------- transports
class Transport(Protocol):
    """Moves the weights to the server's workers, bucket by bucket, each while its `/update_weights` is in flight."""

    def connect(self) -> None: ...

    def send(self, named: Iterator[tuple[str, torch.Tensor]], bucket_bytes: int, dtype: torch.dtype | None) -> None: ...


class GlooTransport:
    """`medzero_gloo`: a private gloo group over TCP (CPU or GPU machines); the server side is `vllm_plugin.py`."""

    def __init__(self, http: Http, workers: int, timeout_s: float) -> None:
        self.http, self.workers, self.timeout_s = http, workers, timeout_s
        self.group: GlooGroup | None = None

    def connect(self) -> None:
        address = route_address(self.http.host, self.http.port)
        self.group = GlooGroup.host(address, 1 + self.workers, self.timeout_s)
        init = {"init_info": asdict(self.group.init)}
        _alongside(self.http, "/init_weight_transfer_engine", init, self.group.connect)

    def send(self, named: Iterator[tuple[str, torch.Tensor]], bucket_bytes: int, dtype: torch.dtype | None) -> None:
        for meta, flat in packed(named, bucket_bytes, dtype):
            update = {"update_info": asdict(meta)}
            _alongside(self.http, "/update_weights", update, lambda flat=flat: self.group.broadcast(flat))


class NCCLTransport:
    """vLLM's NCCL engine (GPU only; not run on this project's CPU machines): tensors broadcast one by one."""

    def __init__(self, http: Http, workers: int, timeout_s: float) -> None:
        self.http, self.workers, self.timeout_s = http, workers, timeout_s
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.comm: Any = None

    def connect(self) -> None:
        from vllm.distributed.weight_transfer.nccl_common import (
            NCCLWeightTransferInitInfo,
            trainer_init,
            worker_init_payload,
        )

        address = route_address(self.http.host, self.http.port)
        info = NCCLWeightTransferInitInfo(
            master_address=address,
            master_port=_free_port(address),
            rank_offset=1,
            world_size=1 + self.workers,
            packed=False,
        )

        def open_endpoint() -> None:
            self.comm = trainer_init(info)

        _alongside(self.http, "/init_weight_transfer_engine", {"init_info": worker_init_payload(info)}, open_endpoint)

    def send(self, named: Iterator[tuple[str, torch.Tensor]], bucket_bytes: int, dtype: torch.dtype | None) -> None:
        for bucket in buckets(named, bucket_bytes, self.device, dtype):
            self._send(bucket)

    def _send(self, bucket: list[tuple[str, torch.Tensor]]) -> None:
        update = {
            "names": [name for name, _ in bucket],
            "dtype_names": [str(t.dtype).removeprefix("torch.") for _, t in bucket],
            "shapes": [list(t.shape) for _, t in bucket],
        }

        def broadcast() -> None:
            stream = torch.cuda.current_stream()
            for _, tensor in bucket:
                self.comm.broadcast(tensor, src=0, stream=stream)
            done = torch.cuda.Event()
            done.record(stream)
            deadline = time.monotonic() + self.timeout_s
            while not done.query():  # bounded, unlike stream.synchronize()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"NCCL broadcast not finished after {self.timeout_s:g} s")
                time.sleep(0.005)

        _alongside(self.http, "/update_weights", {"update_info": update}, broadcast)


def _alongside(http: Http, path: str, body: dict[str, Any], transfer: Any) -> None:
    """POST `path` in a thread while `transfer()` runs here: both sides of a collective must be in it at once.

    A transfer that fails while the request already failed reports the request's error (it names the server and what
    it said). The request is bounded by the HTTP timeout, the transfer by its own; after a failed transfer the
    request is not waited for (it ends at its own timeout).
    """
    pool = ThreadPoolExecutor(max_workers=1)
    request: Future = pool.submit(http.call, "POST", path, body)
    try:
        transfer()
    except Exception as err:
        if request.done() and request.exception() is not None:
            raise request.exception() from None  # type: ignore[misc]
        raise ServerError(
            f"the weight transfer to the vLLM server at {http.url} failed during {path}: {err}".replace("\n", " ")
        ) from None
    finally:
        pool.shutdown(wait=False)
    request.result()


# ------------------------------------------------------------------------------------------------- HTTP
class Http:
    """JSON calls to one server, each bounded by a timeout; every failure is a one-line `ServerError`."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UserError(f"rollout.server_url={url!r}: expected http://HOST:PORT")
        self.url = url.rstrip("/")
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # cluster-internal: no proxy

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """The decoded JSON answer (None for an empty one) of `method path`."""
        timeout = self.timeout_s if timeout is None else timeout
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        endpoint = path.split("?")[0]
        try:
            with self._opener.open(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = _detail(err.read())
            raise ServerError(
                f"the vLLM server at {self.url} answered {endpoint} with HTTP {err.code}: {detail}",
                reason=f"HTTP {err.code}",
                status=err.code,
            ) from None
        except TimeoutError:
            raise self._timeout(endpoint, timeout) from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise self._timeout(endpoint, timeout) from None
            raise self._unreachable(endpoint, err.reason) from None
        except OSError as err:  # connection reset or closed mid-answer: the server died
            raise self._unreachable(endpoint, err) from None
        return json.loads(raw) if raw else None

    def _timeout(self, endpoint: str, timeout: float) -> ServerError:
        return ServerError(
            f"the vLLM server at {self.url} did not answer {endpoint} within {timeout:g} s "
            "(rollout.server_timeout_s): check that it is alive and not overloaded, or raise the timeout",
            reason=f"no answer within {timeout:g} s",
        )

    def _unreachable(self, endpoint: str, reason: object) -> ServerError:
        what = "refused the connection" if isinstance(reason, ConnectionRefusedError) else f"is unreachable ({reason})"
        return ServerError(
            f"the vLLM server at {self.url} {what} at {endpoint}: is it running? Start it with {SERVE_HINT} and "
            "check rollout.server_url",
            reason=what,
        )


def _detail(raw: bytes) -> str:
    """The server's error message, on one line."""
    try:
        body = json.loads(raw)
        message = body.get("detail") or body.get("error") or body.get("message") or body
        if isinstance(message, dict):
            message = message.get("message", message)
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")
    return " ".join(str(message).split())[:500]


# ----------------------------------------------------------------------------------------------- ranks
def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _from_rank0(outcome: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's `outcome` on every rank (the default process group); itself when there is one process."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return outcome
    box = [outcome if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _drain(named: Iterator[tuple[str, torch.Tensor]]) -> None:
    """Take part in the rest of a (possibly collective) iteration without sending anything."""
    for _ in named:
        pass


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]
