"""Generation under ZeRO-3: `synced_gpus` (what the trainer does) against gathering the whole model first (TRL's
`ds3_gather_for_generation`). Prints seconds per call and the parameter bytes each rank holds while generating.

DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc-per-node=2 \
    scripts/bench_zero3_generation.py [--hidden 256 --layers 4 --rows 8 --new-tokens 32 --repeats 3]

Rank r generates `rows` sequences with `new_tokens * (r + 1)` new tokens, so the ranks stop at different times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import deepspeed
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from transformers.integrations import HfDeepSpeedConfig

ZERO3 = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}


def parameter_bytes(model: torch.nn.Module, gathered: bool) -> int:
    """Bytes of parameter storage held on this rank (the partitions, or the full tensors while gathered)."""
    total = 0
    for p in model.parameters():
        if gathered or not hasattr(p, "ds_tensor"):
            total += p.numel() * p.element_size()
        else:
            total += p.ds_tensor.numel() * p.ds_tensor.element_size()
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    deepspeed.init_distributed("gloo")
    rank = dist.get_rank()
    with tempfile.TemporaryDirectory() as tmp:
        path = [tmp]
        dist.broadcast_object_list(path)
        if rank == 0:
            torch.manual_seed(0)
            config = LlamaConfig(
                vocab_size=1024,
                hidden_size=args.hidden,
                intermediate_size=4 * args.hidden,
                num_hidden_layers=args.layers,
                num_attention_heads=8,
                num_key_value_heads=8,
                max_position_embeddings=1024,
            )
            LlamaForCausalLM(config).save_pretrained(path[0])
        dist.barrier()
        keep = HfDeepSpeedConfig(ZERO3)  # noqa: F841 - transformers holds a weak reference
        hooked = AutoModelForCausalLM.from_pretrained(path[0])  # partitioned at load
        engine, *_ = deepspeed.initialize(model=hooked, config=ZERO3, model_parameters=[])
        plain = AutoModelForCausalLM.from_pretrained(path[0])  # partitioned, no engine hooks: gathered by hand
        dist.barrier()

    ids = torch.randint(3, 1000, (args.rows, 16), generator=torch.Generator().manual_seed(rank))
    new = args.new_tokens * (rank + 1)
    kwargs = {"max_new_tokens": new, "min_new_tokens": new, "do_sample": False, "pad_token_id": 0}
    engine.module.eval()
    plain.eval()

    def synced() -> int:
        engine.module.generate(ids, synced_gpus=True, **kwargs)
        return parameter_bytes(engine.module, gathered=False)

    def gathered() -> int:
        with deepspeed.zero.GatheredParameters(list(plain.parameters()), modifier_rank=None):
            plain.generate(ids, synced_gpus=False, **kwargs)
            return parameter_bytes(plain, gathered=True)

    for name, fn in (("synced_gpus", synced), ("gather_for_generation", gathered)):
        with torch.no_grad():
            fn()  # warm-up
            dist.barrier()
            start = time.perf_counter()
            for _ in range(args.repeats):
                held = fn()
            dist.barrier()
            seconds = (time.perf_counter() - start) / args.repeats
        full = sum(p.ds_numel * p.element_size() for p in plain.parameters())
        if rank == 0:
            print(
                f"{name:>22}: {seconds:.3f} s per call; rank 0 holds {held / 2**20:.1f} MiB of "
                f"{full / 2**20:.1f} MiB parameters while generating (world size {dist.get_world_size()})"
            )


if __name__ == "__main__":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    main()
