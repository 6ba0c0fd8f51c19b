"""`python -m medzero_pl.serve`: the vLLM server line a `vllm_server` run needs (a real server starts from it in
tests/rollout/test_vllm_server.py)."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

from medzero_pl.serve import PLUGIN_EXTENSION, main, parse_args, vllm_serve_argv


def argv_for(line: str, cuda: bool) -> list[str]:
    args, extra = parse_args(line.split())
    return vllm_serve_argv(args, extra, cuda=cuda)


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_run_gets_the_rl_endpoints_token_ids_and_processed_logprobs(toy):
    for cuda in (False, True):
        argv = argv_for(f"{toy['model']} --port 8123", cuda)
        assert flag(argv, "--model") == str(toy["model"]) and flag(argv, "--port") == "8123"
        assert flag(argv, "--host") == "127.0.0.1"  # the RL endpoints replace weights: not on every interface
        assert "--enable-scale-out" in argv and flag(argv, "--logprobs-mode") == "processed_logprobs"
        assert flag(argv, "--worker-extension-cls") == "medzero_pl.rollout.vllm_plugin.WeightReadback"


def backend(argv: list[str]) -> str:
    return json.loads(flag(argv, "--weight-transfer-config"))["backend"]


def test_weights_travel_through_nccl_with_a_gpu_and_through_gloo_without_one(toy):
    assert backend(argv_for(str(toy["model"]), cuda=True)) == "nccl"
    assert backend(argv_for(str(toy["model"]), cuda=False)) == "medzero_gloo"
    assert backend(argv_for(f"{toy['model']} --transfer gloo", cuda=True)) == "medzero_gloo"


def test_on_cpu_the_colocated_engines_settings_apply(toy):
    cpu = argv_for(f"{toy['model']} --max-model-len 9216", cuda=False)
    assert flag(cpu, "--block-size") == "32" and flag(cpu, "--kv-cache-memory-bytes") == str(2**30)
    assert "--no-enable-chunked-prefill" in cpu and flag(cpu, "--max-num-batched-tokens") == "9216"
    gpu = argv_for(f"{toy['model']} --max-model-len 9216", cuda=True)
    assert not {"--block-size", "--kv-cache-memory-bytes", "--no-enable-chunked-prefill"} & set(gpu)


def test_other_options_reach_vllm_unchanged(toy):
    argv = argv_for(f"{toy['model']} --gpu-memory-utilization 0.9 --enforce-eager", cuda=True)
    assert argv[-3:] == ["--gpu-memory-utilization", "0.9", "--enforce-eager"]


def test_print_command_shows_the_server_line_with_dev_mode(toy, capsys):
    assert main([str(toy["model"]), "--print-command"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("VLLM_SERVER_DEV_MODE=1 python -m vllm.entrypoints.launchers.api_server.entry --model ")


def test_a_pip_installed_checkout_registers_the_transfer_engine_with_vllm_and_serve_does_not_need_it():
    """The entry point makes a plain `vllm serve` find `medzero_gloo`; `serve` names a class of the same module as
    the worker extension, whose import registers it where only PYTHONPATH points at the checkout."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    plugin = pyproject["project"]["entry-points"]["vllm.general_plugins"]["medzero_gloo"]
    module, _, function = plugin.partition(":")
    assert PLUGIN_EXTENSION.rpartition(".")[0] == module
    source = Path(importlib.util.find_spec(module).origin).read_text()  # importing it would import vLLM
    assert f"def {function}() -> None:" in source and f"\n{function}()\n" in source
