"""A composed run's memory plan: the model's shape from its `config.json` (never its weights), the run's shape from
the config `fit` would train with, and the verdict of `medzero_pl/plan/memory.py`.

Also the start-up check `fit` makes on CUDA (`check_fits`): a run predicted not to fit is refused with the cheapest
change that makes it fit, unless `plan.check=false`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medzero_pl.errors import UserError
from medzero_pl.model.lm_head import SPLIT_MODEL_TYPES
from medzero_pl.model.loading import ALIASES, default_cache_dir, resolve_model
from medzero_pl.plan.memory import GIB, ModelShape, RunShape, Verdict, cheapest_fix, judge, shape_from_config
from medzero_pl.rollout.vllm import CPU_KV_CACHE_GIB
from medzero_pl.strategies import ALIASES as STRATEGY_ALIASES
from medzero_pl.strategies import MIXED_PRECISIONS, STRATEGIES, keeps_master_weights, trained_dtype

if TYPE_CHECKING:
    from medzero_pl.config import Config

_QWEN25_7B = {
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}
KNOWN_CONFIGS: dict[str, dict] = {
    "Qwen/Qwen2.5-1.5B-Instruct": {
        "model_type": "qwen2",
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-3B-Instruct": {
        "model_type": "qwen2",
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-7B-Instruct": _QWEN25_7B,
    "FreedomIntelligence/HuatuoGPT-o1-7B": _QWEN25_7B,  # fine-tuned from Qwen2.5-7B-Instruct, same config
    "smollm2-135m-instruct": {
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },
}
"""The shape fields of the `config.json` of every model `conf/model/` names, so a 7B plan needs no network (typed from
the models' published config files, not downloaded here; Qwen2.5-7B's give its published 7.62B parameters)."""


def read_model_config(name_or_path: str) -> dict:
    """The model's `config.json` as a dict: a local directory's (or an alias's converted one) through transformers'
    `AutoConfig`, else `KNOWN_CONFIGS`, else the hub's (config only)."""
    from transformers import AutoConfig

    local = Path(name_or_path).expanduser()
    if name_or_path in ALIASES and (default_cache_dir() / name_or_path / "config.json").is_file():
        local = default_cache_dir() / name_or_path
    if (local / "config.json").is_file():
        return AutoConfig.from_pretrained(local).to_dict()
    if name_or_path in KNOWN_CONFIGS:
        return KNOWN_CONFIGS[name_or_path]
    return AutoConfig.from_pretrained(resolve_model(name_or_path)).to_dict()


def model_shape(name_or_path: str) -> tuple[ModelShape, str]:
    """`(shape, model_type)` of the model `model.name_or_path` names."""
    config = read_model_config(name_or_path)
    try:
        return shape_from_config(config), config.get("model_type", "")
    except KeyError as err:
        raise UserError(
            f"model.name_or_path={name_or_path}: its config.json has no {err.args[0]}; the planner knows "
            "decoder-only models with Llama's field names"
        ) from None


def world_size(cfg: Config, devices_if_auto: int = 1) -> tuple[int, int]:
    """`(ranks, ranks per node)`; `trainer.devices=auto` counts as `devices_if_auto`."""
    per_node = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else devices_if_auto
    return per_node * cfg.trainer.num_nodes, per_node


def run_shape(cfg: Config, model_type: str, device: str, devices_if_auto: int = 1) -> RunShape:
    """What `cfg` does to one rank's memory on a `device` (gpu or cpu)."""
    t, g, r = cfg.trainer, cfg.grpo, cfg.rollout
    ranks, per_node = world_size(cfg, devices_if_auto)
    strategy = STRATEGY_ALIASES.get(t.strategy, t.strategy)
    trained = trained_dtype(t.strategy, t.precision, cfg.model.dtype)
    half_compute = str(t.precision) in MIXED_PRECISIONS or trained != "float32"
    return RunShape(
        device=device,
        world_size=ranks,
        ranks_per_node=per_node,
        zero3=strategy in STRATEGIES,
        offload=bool(STRATEGIES.get(strategy, {}).get("offload")),
        trained_dtype=trained,
        model_dtype=cfg.model.dtype,
        compute_bytes=2 if half_compute and device == "gpu" else 4,
        master_weights=keeps_master_weights(t.strategy) and trained != "float32",
        reference=g.beta > 0,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        shared_prompt=g.shared_prompt_forward,
        fused_head=g.fused_lm_head and model_type in SPLIT_MODEL_TYPES,
        micro_batch=g.micro_batch_size,
        generations=g.num_generations,
        prompts_per_rank=max(1, cfg.data.prompts_per_step // ranks),
        prompt_tokens=cfg.data.max_prompt_length,
        completion_tokens=g.max_completion_length,
        engine=r.engine,
        vllm_fraction=r.gpu_memory_utilization,
        vllm_kv_cache_gib=r.kv_cache_gib if r.kv_cache_gib is not None else CPU_KV_CACHE_GIB,
        sleep_mode=r.enable_sleep_mode,
        lora_rank=cfg.model.lora.r,
    )


@dataclass(frozen=True)
class Plan:
    """A run's verdict and, when it does not fit, the cheapest change that makes it fit."""

    model: ModelShape
    run: RunShape
    verdict: Verdict
    fix: tuple[str, ...] | None


def plan(cfg: Config, device: str, capacity: int, devices_if_auto: int = 1) -> Plan:
    """The memory plan of `cfg` on a device of `capacity` bytes."""
    shape, model_type = model_shape(cfg.model.name_or_path)
    run = run_shape(cfg, model_type, device, devices_if_auto)
    verdict = judge(shape, run, capacity)
    return Plan(shape, run, verdict, None if verdict.fits else cheapest_fix(shape, run, capacity))


def suggestion(p: Plan) -> str:
    """The cheapest change as overrides, or what is left when no change this project offers is enough."""
    if p.fix:
        server = (
            " (start it on other GPUs: python -m medzero_pl.serve)" if "rollout.engine=vllm_server" in p.fix else ""
        )
        return "add " + " ".join(p.fix) + server
    return (
        "no combination of a smaller micro-batch, gradient checkpointing, vLLM sleep mode, another "
        "gpu_memory_utilization, a vLLM server on other GPUs and ZeRO-3 (offload) fits: use more or larger GPUs, "
        "shorter completions or fewer prompts per step (tensor-parallel vLLM and LoRA are not available here)"
    )


def refusal(p: Plan) -> str | None:
    """The one-line refusal `fit` raises for a plan that does not fit, else None."""
    if p.verdict.fits:
        return None
    return (
        f"the planner predicts this run does not fit: {'; '.join(p.verdict.problems)} "
        f"({p.verdict.capacity / GIB:.0f} GiB device); {suggestion(p)}; "
        "details: python -m medzero_pl.plan <the same overrides>; plan.check=false runs it anyway"
    )


def check_fits(cfg: Config, capacity: int, devices_if_auto: int = 1) -> None:
    """Refuse (UserError) a GPU run predicted not to fit a device of `capacity` bytes, unless `plan.check=false`."""
    if not cfg.plan.check:
        return
    message = refusal(plan(cfg, "gpu", capacity, devices_if_auto))
    if message:
        raise UserError(message)
