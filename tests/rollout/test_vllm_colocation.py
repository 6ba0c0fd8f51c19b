"""The colocated vLLM engine on several training processes, without vLLM: where each rank's engine goes, the CPU/GPU
defaults, and the order of sleep-mode calls (a recording fake `vllm`, `tests/rollout/fake_vllm.py`).

What sleep mode frees is measured on a GPU only (see the module docstring of `medzero_pl/rollout/vllm.py`).
"""

from __future__ import annotations

import os

import pytest
import torch

from medzero_pl.errors import UserError
from medzero_pl.rollout.base import SamplingParams
from medzero_pl.rollout.config import RolloutConfig
from medzero_pl.rollout.vllm import Placement, VLLMEngine, engine_kwargs, launcher_env
from tests.rollout import fake_vllm

GPU = {"cuda": True}
CPU = {"cuda": False}
SAMPLING = SamplingParams(max_new_tokens=4, temperature=1.0, seed=3)
SYNC = [
    "empty_cache",  # the trainer's cached blocks go back before the weights are mapped again
    "wake_up(['weights'])",  # the weights alone: the KV cache stays unmapped while they load
    "load_weights",
    "reset_prefix_cache",
]
ROLLOUT = ["wake_up(['kv_cache'])", "generate"]


def kwargs_for(placement: Placement, cuda: bool = True, **settings) -> dict:
    return engine_kwargs("model-dir", RolloutConfig(engine="vllm", **settings), placement, cuda=cuda, seed=7)


# ------------------------------------------------------------------------------------------- placement
@pytest.mark.parametrize(
    ("placement", "tp", "seed", "env"),
    [
        # One process: vLLM's own single-process executor, nothing exported.
        (Placement(), 1, 7, {}),
        # torchrun / Lightning DDP on 4 GPUs: rank 3 builds its engine on GPU 3 through the external launcher.
        (Placement(rank=3, local_rank=3, world_size=4), 1, 10, {"RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "4"}),
        # trainer.devices=[4, 5]: rank 1 trains on GPU 5, so its engine goes there too (LOCAL_RANK is the device).
        (Placement(rank=1, local_rank=5, world_size=2), 1, 8, {"RANK": "1", "LOCAL_RANK": "5", "WORLD_SIZE": "2"}),
        # Two nodes of two GPUs: global rank 2 is the first GPU of the second node.
        (Placement(rank=2, local_rank=0, world_size=4), 1, 9, {"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "4"}),
        # TP groups {0, 1} and {2, 3}: both ranks of a group share a seed, so they would sample alike.
        (Placement(rank=2, local_rank=2, world_size=4), 2, 8, {"RANK": "2", "LOCAL_RANK": "2", "WORLD_SIZE": "4"}),
        (Placement(rank=3, local_rank=3, world_size=4), 2, 8, {"RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "4"}),
    ],
)
def test_each_rank_builds_its_engine_on_its_own_device_with_its_own_seed(placement, tp, seed, env):
    kwargs = kwargs_for(placement, tensor_parallel_size=tp)
    assert kwargs["seed"] == seed
    assert kwargs["tensor_parallel_size"] == tp
    assert kwargs.get("distributed_executor_backend") == ("external_launcher" if env else None)
    assert launcher_env(placement) == env


@pytest.mark.parametrize(
    ("rank", "local_rank", "device", "expected"),
    [
        (1, 1, torch.device("cuda", 1), Placement(rank=1, local_rank=1, world_size=2)),
        (1, 1, torch.device("cuda", 5), Placement(rank=1, local_rank=5, world_size=2)),  # trainer.devices=[4, 5]
        (1, 1, torch.device("cpu"), Placement(rank=1, local_rank=1, world_size=2)),
    ],
)
def test_a_rank_places_its_engine_on_the_device_it_trains_on(rank, local_rank, device, expected):
    assert Placement.of(rank, local_rank, 2, device) == expected


@pytest.mark.parametrize("cuda", [True, False])
def test_several_cpu_or_gpu_processes_use_the_external_launcher(cuda):
    kwargs = kwargs_for(Placement(rank=1, local_rank=1, world_size=2), cuda=cuda)
    assert kwargs["distributed_executor_backend"] == "external_launcher"


@pytest.mark.parametrize(("world_size", "tp"), [(3, 2), (1, 2), (4, 3)])
def test_a_world_size_the_tensor_parallel_size_does_not_divide_is_refused(world_size, tp):
    with pytest.raises(UserError, match=rf"rollout\.tensor_parallel_size={tp}: the {world_size} training processes"):
        kwargs_for(Placement(world_size=world_size), tensor_parallel_size=tp)


# --------------------------------------------------------------------------------------------- defaults
@pytest.mark.parametrize(("enforce_eager", "device", "expected"), [(None, GPU, False), (None, CPU, True)])
def test_cuda_graphs_are_on_by_default_on_a_gpu_and_off_on_cpu(enforce_eager, device, expected):
    assert kwargs_for(Placement(), enforce_eager=enforce_eager, **device)["enforce_eager"] is expected


@pytest.mark.parametrize("device", [GPU, CPU])
@pytest.mark.parametrize("enforce_eager", [True, False])
def test_an_explicit_enforce_eager_is_kept_on_either_device(enforce_eager, device):
    assert kwargs_for(Placement(), enforce_eager=enforce_eager, **device)["enforce_eager"] is enforce_eager


def test_cpu_defaults_apply_on_cpu_only():
    cpu, gpu = kwargs_for(Placement(), cuda=False), kwargs_for(Placement(), cuda=True)
    assert cpu["kv_cache_memory_bytes"] == 2**30 and cpu["block_size"] == 32 and cpu["enable_chunked_prefill"] is False
    assert not {"kv_cache_memory_bytes", "block_size", "enable_chunked_prefill", "max_num_batched_tokens"} & gpu.keys()
    chosen = kwargs_for(Placement(), cuda=True, kv_cache_gib=0.5, block_size=16)
    assert chosen["kv_cache_memory_bytes"] == 2**29 and chosen["block_size"] == 16


def test_a_cpu_block_size_vllm_cannot_run_is_a_user_error_before_the_engine_starts():
    with pytest.raises(UserError, match=r"rollout\.block_size=48: vLLM's CPU attention needs a multiple of 32"):
        kwargs_for(Placement(), cuda=False, block_size=48)


def test_the_engine_is_built_with_the_launcher_variables_which_are_restored_afterwards(monkeypatch):
    vllm = fake_vllm.install(monkeypatch)
    monkeypatch.setenv("LOCAL_RANK", "1")  # as the launcher set it: Lightning reads it as the local rank
    monkeypatch.delenv("RANK", raising=False)
    VLLMEngine("model-dir", [1], RolloutConfig(engine="vllm"), Placement(rank=1, local_rank=5, world_size=2))
    (llm,) = vllm.built
    assert llm.env == {"RANK": "1", "LOCAL_RANK": "5", "WORLD_SIZE": "2"}
    assert llm.kwargs["distributed_executor_backend"] == "external_launcher"
    assert os.environ["LOCAL_RANK"] == "1" and "RANK" not in os.environ


@pytest.mark.parametrize(("user_set", "expected"), [(None, "WARNING"), ("DEBUG", "DEBUG")])
def test_vllms_per_step_info_lines_are_quiet_unless_asked_for(monkeypatch, user_set, expected):
    import logging

    fake_vllm.install(monkeypatch)
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    if user_set:
        monkeypatch.setenv("VLLM_LOGGING_LEVEL", user_set)
    monkeypatch.setattr(logging.getLogger("vllm"), "level", logging.INFO)
    VLLMEngine("model-dir", [1], RolloutConfig(engine="vllm"))
    assert os.environ["VLLM_LOGGING_LEVEL"] == expected  # read by vLLM when it is first imported
    assert logging.getLevelName(logging.getLogger("vllm").level) == expected  # and for an earlier import


# ------------------------------------------------------------------------------------------- sleep mode
def sleeping_engine(monkeypatch) -> tuple[VLLMEngine, list[str]]:
    vllm = fake_vllm.install(monkeypatch)
    return VLLMEngine("model-dir", [1], RolloutConfig(engine="vllm", enable_sleep_mode=True)), vllm.events


def test_the_engine_sleeps_as_soon_as_it_is_built_and_discards_its_weights(monkeypatch):
    engine, events = sleeping_engine(monkeypatch)
    assert events == ["LLM", "sleep(level=2)"]  # before the trainer allocates its optimizer state
    assert not engine.has_weights
    with pytest.raises(RuntimeError, match="weights were discarded"):
        engine.generate([[5, 6]], 2, SAMPLING)
    assert events == ["LLM", "sleep(level=2)"]  # nothing woken, nothing generated


def test_a_training_step_syncs_wakes_the_weights_then_the_kv_cache_generates_and_sleeps(monkeypatch):
    engine, events = sleeping_engine(monkeypatch)
    del events[:]
    for _ in range(2):  # a first step (or the first after a resume) and any later one: the same calls
        engine.update_weights([("model.w", torch.ones(1))])
        engine.generate([[5, 6]], 2, SAMPLING)
        engine.sleep()
    assert events == 2 * [*SYNC, *ROLLOUT, "sleep(level=2)"]
    with pytest.raises(RuntimeError, match="update_weights must load them first"):
        engine.generate([[5, 6]], 2, SAMPLING)


def test_an_evaluation_after_a_sync_wakes_the_kv_cache_once_for_all_its_batches(monkeypatch):
    engine, events = sleeping_engine(monkeypatch)
    del events[:]
    engine.update_weights([("model.w", torch.ones(1))])
    for _ in range(3):
        engine.generate([[5, 6]], 1, SAMPLING)
    assert events == [*SYNC, *ROLLOUT, "generate", "generate"]


def test_without_sleep_mode_the_engine_keeps_its_weights_and_never_sleeps(monkeypatch):
    vllm = fake_vllm.install(monkeypatch)
    engine = VLLMEngine("model-dir", [1], RolloutConfig(engine="vllm"))
    engine.generate([[5, 6]], 2, SAMPLING)  # the weights it was built with, as before any sync
    engine.sleep()
    engine.update_weights([("model.w", torch.ones(1))])
    assert engine.has_weights
    assert vllm.events == ["LLM", "generate", "load_weights", "reset_prefix_cache"]
