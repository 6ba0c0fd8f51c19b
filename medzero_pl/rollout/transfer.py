"""How weights travel from the trainer to a vLLM server's workers without NCCL: buckets over a gloo group.

Both sides import this module (torch only, no vLLM): the trainer (`vllm_server.py`) packs each bucket of
`(name, tensor)` pairs into one flat byte buffer (`packed`) and broadcasts it from rank 0 of a private gloo group; the
server's worker (`vllm_plugin.py`, inside vLLM) receives it and unpacks it (`unpack`) with the bucket's metadata,
which travelled in the same round's `/update_weights` request. The group is private: a `TCPStore` hosted by the
trainer and a `ProcessGroupGloo` built directly on it, so neither side's default process group (Lightning's, vLLM's)
is touched.

Every operation on the group is bounded by its timeout: a peer that dies closes the connection (an error at once),
a peer that stops answering makes the broadcast raise after `timeout_s`.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch.distributed import BroadcastOptions, PrefixStore, ProcessGroupGloo, TCPStore

BACKEND = "medzero_gloo"
"""The name the server's worker engine is registered under (`--weight-transfer-config '{"backend": ...}'`)."""
SERVER_TRANSFERS: dict[str, str] = {"gloo": BACKEND, "nccl": "nccl"}
"""How weights reach a vLLM server (`rollout.server_transfer`, `python -m medzero_pl.serve --transfer`) -> the
server's weight-transfer backend: gloo (this module and `vllm_plugin.py`; TCP, CPU or GPU) or vLLM's NCCL engine
(GPU only)."""

NamedTensors = Iterable[tuple[str, torch.Tensor]]
ALIGN = 16
"""Every tensor starts at a multiple of this many bytes in a packed buffer, so both sides view it without copying."""


@dataclass(frozen=True)
class GlooInit:
    """What the server's worker needs to join the trainer's group (the `init_info` of `/init_weight_transfer_engine`).

    The trainer is rank 0 and hosts the store; the server's workers are ranks `rank_offset + worker rank`.
    """

    master_address: str
    master_port: int
    world_size: int
    rank_offset: int = 1
    timeout_s: float = 600.0


@dataclass(frozen=True)
class BucketMeta:
    """Names, dtypes and shapes of one bucket (the `update_info` of `/update_weights`), in packing order."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]

    def spans(self) -> list[tuple[int, int]]:
        """(start, end) byte offsets of each tensor in the flat buffer; every start is a multiple of `ALIGN`."""
        spans, end = [], 0
        for shape, dtype in zip(self.shapes, self.dtype_names, strict=True):
            start = _aligned(end)
            end = start + _numel(shape) * _itemsize(getattr(torch, dtype))
            spans.append((start, end))
        return spans

    def nbytes(self) -> int:
        return self.spans()[-1][1] if self.names else 0


class GlooGroup:
    """A private gloo group in which rank 0 (the trainer) broadcasts byte buffers to every other rank.

    The trainer calls `GlooGroup.host(...)` (its store binds a free port at once, so no other process can take it),
    sends `group.init` to the server, then `connect()`; each server worker calls `GlooGroup.join(init, rank)`.
    """

    def __init__(self, store: TCPStore, init: GlooInit, rank: int) -> None:
        self.store, self.init, self.rank = store, init, rank
        self.timeout = datetime.timedelta(seconds=init.timeout_s)
        self.group: ProcessGroupGloo | None = None

    @classmethod
    def host(cls, address: str, world_size: int, timeout_s: float) -> GlooGroup:
        """Rank 0's side: a store on `address` and a free port; `connect()` once the peers are told to join."""
        timeout = datetime.timedelta(seconds=timeout_s)
        store = TCPStore(address, 0, world_size, is_master=True, timeout=timeout, wait_for_workers=False)
        return cls(store, GlooInit(address, store.port, world_size, timeout_s=timeout_s), rank=0)

    @classmethod
    def join(cls, init: GlooInit, rank: int) -> GlooGroup:
        """A receiving rank's side: connect to rank 0's store and form the group."""
        timeout = datetime.timedelta(seconds=init.timeout_s)
        store = TCPStore(init.master_address, init.master_port, init.world_size, is_master=False, timeout=timeout)
        group = cls(store, init, rank)
        group.connect()
        return group

    def connect(self) -> None:
        """Form the group; blocks until every rank has joined, at most the timeout."""
        options = ProcessGroupGloo._Options()
        options._timeout = self.timeout
        own = (
            self.init.master_address
            if self.rank == 0
            else route_address(self.init.master_address, self.init.master_port)
        )
        options._devices = [ProcessGroupGloo.create_device(hostname=own)]
        self.group = ProcessGroupGloo(PrefixStore(BACKEND, self.store), self.rank, self.init.world_size, options)

    def broadcast(self, buffer: torch.Tensor) -> None:
        """Send `buffer` (rank 0) or fill it (other ranks); raises after the timeout instead of waiting forever."""
        if self.group is None:
            raise RuntimeError("GlooGroup.broadcast before connect()")
        options = BroadcastOptions()
        options.rootRank = 0
        options.timeout = self.timeout
        self.group.broadcast([buffer], options).wait()


def route_address(host: str, port: int) -> str:
    """This machine's address on the route to `host` (127.0.0.1 for a local server): what the peer can reach."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))  # UDP: nothing is sent, the kernel only picks the outgoing interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def buckets(
    named: NamedTensors, max_bytes: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Group `(name, tensor)` pairs into lists of at most `max_bytes` (a larger tensor is a list of its own).

    Each tensor is copied (to `device` and `dtype`; None keeps its own) as it is taken, so a source whose tensors are
    valid only until the next pair is requested (a ZeRO-3 gather) can be consumed lazily; at most one bucket is held
    at a time. (The NCCL transport sends these tensor by tensor; gloo sends `packed` buffers.)
    """
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in named:
        copy = tensor.detach().to(device=device or tensor.device, dtype=dtype or tensor.dtype, copy=True).contiguous()
        nbytes = copy.numel() * copy.element_size()
        if bucket and size + nbytes > max_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, copy))
        size += nbytes
    if bucket:
        yield bucket


def packed(
    named: NamedTensors, max_bytes: int, dtype: torch.dtype | None = None
) -> Iterator[tuple[BucketMeta, torch.Tensor]]:
    """Pack `(name, tensor)` pairs into flat CPU byte buffers of at most `max_bytes` (a larger tensor gets a buffer of
    its own), each with its metadata; `unpack` restores the tensors.

    Each tensor is copied once, straight into its aligned place (converted to `dtype` on the way; None keeps its own),
    as it is taken, so a source whose tensors are valid only until the next pair is requested (a ZeRO-3 gather) can be
    consumed lazily. The same buffer is reused: a yielded buffer is valid until the next one is requested, so at most
    `max_bytes` are held. Sending in the receiver's dtype halves the bytes of float32 weights served in bfloat16 (the
    receiver would round them the same way).
    """
    buffer = torch.empty(max_bytes, dtype=torch.uint8)
    names: list[str] = []
    dtypes: list[str] = []
    shapes: list[list[int]] = []
    end = 0
    for name, tensor in named:
        out = dtype or tensor.dtype
        nbytes = tensor.numel() * _itemsize(out)
        start = _aligned(end)
        if names and start + nbytes > buffer.numel():
            yield BucketMeta(names, dtypes, shapes), buffer[:end]
            names, dtypes, shapes, start = [], [], [], 0
        if nbytes > buffer.numel():  # a tensor larger than a bucket travels alone
            buffer = torch.empty(nbytes, dtype=torch.uint8)
        buffer[start : start + nbytes].view(out).view(tensor.shape).copy_(tensor.detach())
        names.append(name)
        dtypes.append(str(out).removeprefix("torch."))
        shapes.append(list(tensor.shape))
        end = start + nbytes
        if buffer.numel() > max_bytes:  # back to the bucket size after the oversized tensor is sent
            yield BucketMeta(names, dtypes, shapes), buffer[:end]
            buffer, names, dtypes, shapes, end = torch.empty(max_bytes, dtype=torch.uint8), [], [], [], 0
    if names:
        yield BucketMeta(names, dtypes, shapes), buffer[:end]


def unpack(meta: BucketMeta, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The named tensors of a received buffer, in the metadata's order: views of `flat` (offsets are aligned)."""
    return [
        (name, flat[start:end].view(getattr(torch, dtype)).view(shape))
        for name, dtype, shape, (start, end) in zip(
            meta.names, meta.dtype_names, meta.shapes, meta.spans(), strict=True
        )
    ]


def digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (vLLM pads vocabulary rows: compare unpadded rows)."""
    data = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{data.dtype}{list(data.shape)}".encode())
    h.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
