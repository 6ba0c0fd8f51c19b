"""The weight-transfer wire format (torch only): bounded buckets, lossless single-copy packing, a gloo group that is
bounded in time. The server side of the same format runs inside vLLM (tests/rollout/test_vllm_server.py)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from medzero_pl.rollout.transfer import BucketMeta, GlooGroup, GlooInit, buckets, digest, packed, unpack


def named(sizes: list[int], dtype: torch.dtype = torch.float32) -> list[tuple[str, torch.Tensor]]:
    return [(f"w{i}", torch.randn(n).to(dtype)) for i, n in enumerate(sizes)]


def test_buckets_hold_at_most_max_bytes_except_a_tensor_larger_than_that():
    pairs = named([10, 10, 10, 40, 5, 5])  # float32: 40, 40, 40, 160, 20, 20 bytes
    got = list(buckets(pairs, max_bytes=100))
    assert [[name for name, _ in b] for b in got] == [["w0", "w1"], ["w2"], ["w3"], ["w4", "w5"]]
    for bucket in got:
        assert len(bucket) == 1 or sum(t.numel() * t.element_size() for _, t in bucket) <= 100


def test_buckets_copy_each_tensor_so_the_source_may_reuse_its_buffer():
    buffer = torch.zeros(4)

    def gathered():  # a ZeRO-3 gather: the same memory holds each parameter in turn
        for i in range(3):
            buffer.fill_(i)
            yield f"w{i}", buffer

    (bucket,) = list(buckets(gathered(), max_bytes=1 << 20))
    assert [t.tolist() for _, t in bucket] == [[0.0] * 4, [1.0] * 4, [2.0] * 4]


def test_buckets_convert_to_the_receivers_dtype():
    (bucket,) = list(buckets(named([3, 2]), max_bytes=1 << 20, dtype=torch.bfloat16))
    assert all(t.dtype == torch.bfloat16 for _, t in bucket)


def received(meta: BucketMeta, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """What a receiver gets: the metadata as JSON gives it, a buffer of its own."""
    wire = BucketMeta(**{k: [list(v) if isinstance(v, list) else v for v in vs] for k, vs in vars(meta).items()})
    return [(name, t.clone()) for name, t in unpack(wire, flat.clone())]


def test_packed_buffers_unpack_to_every_tensor_bit_for_bit_whatever_the_dtypes():
    sent = [
        ("a", torch.randn(3, 4)),
        ("b", torch.randn(5).to(torch.bfloat16)),  # 10 bytes: the next tensor starts at an aligned offset anyway
        ("c", torch.tensor(7.5, dtype=torch.float16)),  # 0-d
        ("d", torch.arange(6, dtype=torch.int64).view(2, 3)),
    ]
    got = [pair for meta, flat in packed(iter(sent), max_bytes=1 << 20) for pair in received(meta, flat)]
    for (name, tensor), (got_name, got_tensor) in zip(sent, got, strict=True):
        assert got_name == name and got_tensor.dtype == tensor.dtype and got_tensor.shape == tensor.shape
        assert torch.equal(got_tensor, tensor)


def test_packed_buffers_hold_at_most_max_bytes_except_a_tensor_larger_than_that():
    pairs = named([10, 10, 10, 40, 5, 5])  # float32: 40, 40, 40, 160, 20, 20 bytes (starts aligned to 16)
    parts = [(meta.names, flat.numel(), received(meta, flat)) for meta, flat in packed(iter(pairs), max_bytes=100)]
    assert [names for names, _, _ in parts] == [["w0", "w1"], ["w2"], ["w3"], ["w4", "w5"]]
    assert [size for _, size, _ in parts] == [88, 40, 160, 52]
    got = dict(pair for _, _, bucket in parts for pair in bucket)
    assert all(torch.equal(got[name], t) for name, t in pairs)


def test_packed_copies_each_tensor_once_so_the_source_may_reuse_its_buffer():
    buffer = torch.zeros(4)

    def gathered():  # a ZeRO-3 gather: the same memory holds each parameter in turn
        for i in range(3):
            buffer.fill_(i)
            yield f"w{i}", buffer

    ((meta, flat),) = list(packed(gathered(), max_bytes=1 << 20))
    assert [t.tolist() for _, t in received(meta, flat)] == [[0.0] * 4, [1.0] * 4, [2.0] * 4]


def test_packed_converts_to_the_receivers_dtype():
    pairs = named([3, 2])
    ((meta, flat),) = list(packed(iter(pairs), max_bytes=1 << 20, dtype=torch.bfloat16))
    assert meta.dtype_names == ["bfloat16", "bfloat16"]
    for (_, sent), (_, got) in zip(pairs, received(meta, flat), strict=True):
        assert torch.equal(got, sent.to(torch.bfloat16))


def test_digest_tells_dtype_shape_and_values_apart():
    x = torch.arange(6, dtype=torch.float32)
    assert digest(x) == digest(x.clone())
    assert len({digest(x), digest(x.view(2, 3)), digest(x.to(torch.float64)), digest(x + 1)}) == 4


def test_rank0_broadcasts_a_buffer_to_a_joined_rank():
    host = GlooGroup.host("127.0.0.1", world_size=2, timeout_s=20)
    received = torch.zeros(16, dtype=torch.uint8)

    def worker() -> None:
        GlooGroup.join(GlooInit(**vars(host.init)), rank=1).broadcast(received)

    thread = threading.Thread(target=worker)
    thread.start()
    host.connect()
    host.broadcast(torch.arange(16, dtype=torch.uint8))
    thread.join(timeout=20)
    assert received.tolist() == list(range(16))


def test_a_peer_that_never_joins_fails_the_group_within_its_timeout():
    host = GlooGroup.host("127.0.0.1", world_size=2, timeout_s=2)
    start = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - torch raises DistStoreError or RuntimeError by version
        host.connect()
    assert time.monotonic() - start < 10
