"""What medzero_pl adds to a vLLM server, loaded inside vLLM's own processes: a weight-transfer engine over gloo
(`medzero_gloo`, for machines without NCCL) and a worker extension that reads the served weights back.

The engine runs vLLM's own weight-update protocol (the RL endpoints `/init_weight_transfer_engine`,
`/start_weight_update`, `/update_weights`, `/finish_weight_update`); only the transport differs from vLLM's NCCL
engine: each `/update_weights` carries one bucket's names, dtypes and shapes, and the bucket's bytes arrive as one
broadcast over a private gloo group (`transfer.py`). Loading follows vLLM's NCCL engine (layerwise reload: the layout
is restored, `load_weights` runs, the layer is processed again), plus what vLLM's CPU backend needs and the colocated
engine does too (`vllm.py`): a tied LM head keeps its own repacked copy and is re-processed from the new embedding.

This module is imported by vLLM, never by the trainer, in one of two ways (registering is idempotent):
- vLLM's general-plugin entry point (`vllm.general_plugins` in pyproject.toml), once medzero_pl is pip-installed:
  a plain `vllm serve ... --weight-transfer-config '{"backend": "medzero_gloo"}'` then finds the engine.
- `--worker-extension-cls medzero_pl.rollout.vllm_plugin.WeightReadback`, which `python -m medzero_pl.serve` always
  passes: vLLM imports this module in each worker before it builds the transfer engine, and the import registers it.
  This also covers a checkout that is only on PYTHONPATH.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from vllm.distributed.weight_transfer.base import (
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

from medzero_pl.rollout.transfer import BACKEND, BucketMeta, GlooGroup, GlooInit, digest, unpack
from medzero_pl.rollout.vllm import _ExpectedReloadWarningsFiltered, _read_weights, _reprocess_tied_heads


@dataclass
class GlooInitInfo(WeightTransferInitInfo):
    """`init_info` of `/init_weight_transfer_engine` (the fields of `transfer.GlooInit`)."""

    master_address: str
    master_port: int
    world_size: int
    rank_offset: int = 1
    timeout_s: float = 600.0


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):
    """`update_info` of one `/update_weights`: the bucket that the trainer broadcasts next."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
    """Receives buckets of checkpoint-format weights from trainer rank 0 over gloo and loads them layer by layer."""

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo
    supports_draft_weight_update = False  # not exercised: no speculative decoding in medzero_pl

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.group: GlooGroup | None = None

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        p = self.parallel_config
        rank = init_info.rank_offset + p.data_parallel_index * p.world_size + p.rank
        self.group = GlooGroup.join(GlooInit(**asdict(init_info)), rank)

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError("medzero_gloo: /update_weights before /init_weight_transfer_engine")
        meta = BucketMeta(update_info.names, update_info.dtype_names, update_info.shapes)
        flat = torch.empty(meta.nbytes(), dtype=torch.uint8)
        self.group.broadcast(flat)
        self.model.load_weights([(name, t.to(self.device)) for name, t in unpack(meta, flat)])

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        tied = bool(getattr(self.model_config.hf_config, "tie_word_embeddings", False))
        with _ExpectedReloadWarningsFiltered(tied_head=tied):
            finalize_layerwise_reload(self.model, self.model_config)
        _reprocess_tied_heads(self.model)

    def shutdown(self) -> None:
        self.group = None


class WeightReadback:
    """Worker extension (`--worker-extension-cls`): `/collective_rpc {"method": "medzero_weight_digests"}` returns a
    SHA-256 of every served weight in checkpoint layout, so a trainer or a test can check a sync byte for byte."""

    def medzero_weight_digests(self) -> dict[str, str]:
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        vocab_rows = {
            f"{name}.weight": module.org_vocab_size
            for name, module in model.named_modules()
            if getattr(module, "org_vocab_size", None) is not None
        }
        digests = {}
        for name, tensor in _read_weights(model).items():
            rows = vocab_rows.get(name)
            digests[name] = digest(tensor[:rows] if rows is not None else tensor)
        return digests


def register() -> None:
    """Make `medzero_gloo` known to vLLM's weight-transfer factory (the general-plugin entry point calls this)."""
    if BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(BACKEND, GlooWeightTransferEngine)


register()
