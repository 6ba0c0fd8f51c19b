"""LoRA adapters on the policy (the `peft` library): settings, the reference as "adapters off", merged weights for a
rollout engine, and adapter-only checkpoints.

With `model.lora.r > 0` the policy is a `peft.PeftModel`: the base weights are frozen in `model.dtype` and only the
adapters (float32, peft's `autocast_adapter_dtype`) and `modules_to_save` train, so the optimizer holds state for a
few percent of the parameters (3.5% for SmolLM2-135M at r = 16, ~0.5% for a 7B). Three consequences shape the rest
of the run:

- The reference for `beta > 0` is the policy itself with its adapters disabled (`reference_of`): the base weights
  are never changed, so no second copy is loaded.
- A rollout engine with its own weights (vLLM) gets merged weights, `W + scaling * B @ A` under the base model's
  names (`merged_named_parameters`), computed from the stream of (gathered) parameters without touching the
  policy's own: merging in place and unmerging would leave rounding error in the frozen weights.
- Checkpoints keep the trainable parameters only (`trainable_state`); the base comes from `model.name_or_path`
  (`medzero_pl.checkpoints` puts them back on it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from medzero_pl.errors import UserError, expect

PEFT_PREFIX = "base_model.model."
"""What `PeftModel` puts before the wrapped model's parameter names."""
ADAPTER = "default"
"""The one adapter a run trains (peft's default name)."""
DEFAULT_TARGETS: dict[str, list[str]] = {
    model_type: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    for model_type in ("llama", "mistral", "qwen2", "qwen3")
}
"""Every linear layer of attention and MLP, as TRL's and verl's GRPO LoRA recipes use; other `model_type`s take
peft's `all-linear` (every linear layer but the output head)."""


@dataclass
class LoRAConfig:
    """`model.lora.*`: LoRA adapters on the policy (off while `r` is 0)."""

    r: int = 0
    """LoRA rank; 0 trains every weight (no adapters)."""
    alpha: float = 32.0
    """Scaling numerator: adapters add `alpha / r * B @ A`."""
    dropout: float = 0.0
    """Dropout on the adapters' input. Above 0 the policy's log-probs are random in training, so the ratio of
    the first pass is no longer exactly 1."""
    target_modules: list[str] = field(default_factory=list)
    """Module names that get adapters; empty: every attention and MLP projection (see `DEFAULT_TARGETS`)."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained fully beside the adapters (e.g. `lm_head`), saved whole in checkpoints."""

    def problems(self) -> list[str]:
        """Settings that cannot work, each as `field=value: expected ...`."""
        on, off = self.r > 0, "[] while model.lora.r is 0 (adapters off)"
        return [
            *expect(self.r >= 0, "r", self.r, "0 (no adapters) or a positive rank"),
            *expect(not on or self.alpha > 0, "alpha", self.alpha, "a positive scaling numerator"),
            *expect(0 <= self.dropout < 1, "dropout", self.dropout, "a probability in [0, 1)"),
            *expect(on or not self.target_modules, "target_modules", list(self.target_modules), off),
            *expect(on or not self.modules_to_save, "modules_to_save", list(self.modules_to_save), off),
        ]


def apply_lora(model: torch.nn.Module, lora: LoRAConfig, name: str | None = None) -> torch.nn.Module:
    """`model` with LoRA adapters (a `PeftModel`), or `model` itself when `lora.r == 0` (the run's parameter summary,
    `callbacks/summary.py`, then logs trainable / total).

    Args:
        model: A Hugging Face causal LM (its weights are frozen by peft).
        lora: The settings.
        name: The base model's name or path, recorded in an exported adapter's `adapter_config.json`.
    """
    if lora.r == 0:
        return model
    from peft import LoraConfig, get_peft_model

    model_type = getattr(model.config, "model_type", None)
    targets = lora.target_modules or DEFAULT_TARGETS.get(model_type, "all-linear")
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=list(lora.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as err:  # peft: "Target modules {...} not found in the base model"
        raise UserError(f"model.lora.target_modules={targets}: {str(err).splitlines()[0]}") from err
    if name is not None:  # peft records the resolved directory; keep the name the run was given (an alias, a hub id)
        peft_model.peft_config[ADAPTER].base_model_name_or_path = name
    return peft_model


def has_adapters(model: torch.nn.Module | None) -> bool:
    """Whether `model` is a policy with LoRA adapters."""
    return model is not None and hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextmanager
def reference_of(policy: torch.nn.Module, reference: torch.nn.Module | None) -> Iterator[torch.nn.Module]:
    """The model that scores the KL reference: `reference` when one was loaded, else the policy with its adapters
    disabled (the base weights never change under LoRA, so they are the reference)."""
    if reference is not None:
        yield reference
        return
    if not has_adapters(policy):
        raise RuntimeError("beta > 0 needs a reference model or a policy with LoRA adapters")
    with policy.disable_adapter():
        yield policy


def check_mergeable(model: torch.nn.Module) -> None:
    """Refuse a LoRA policy whose merged weights an engine with its own weights (vLLM) cannot hold: adapters on a
    non-linear layer, or a head with its own adapters or trained copy while the model ties it to the input embeddings
    (the engine keeps one matrix for both)."""
    if not has_adapters(model):
        return
    lora_scalings(model)
    if getattr(model.config, "tie_word_embeddings", False):
        head = model.get_base_model().get_output_embeddings()
        if not isinstance(head, torch.nn.Linear) or type(head) is not torch.nn.Linear:
            raise UserError(
                "model.lora: the output head gets adapters or is trained (target_modules or modules_to_save) but this "
                "model ties it to the input embeddings, which vLLM keeps as one matrix; leave lm_head out or use "
                "rollout.engine=hf"
            )


def lora_scalings(model: torch.nn.Module) -> dict[str, float]:
    """`{module name (Hugging Face, no peft prefix): alpha / r}` of every LoRA layer of a `PeftModel`."""
    from peft.tuners.lora import Linear, LoraLayer

    scalings = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.scaling:
            if not isinstance(module, Linear):  # an embedding's adapters are lora_embedding_A/B, not B @ A
                raise UserError(
                    f"model.lora.target_modules: {name.removeprefix(PEFT_PREFIX)} is a {type(module).__name__} "
                    "layer; the merged weights for a vLLM engine cover linear layers only (rollout.engine=hf works)"
                )
            if module.fan_in_fan_out or module.use_dora.get(ADAPTER, False):
                raise NotImplementedError(f"{name}: merged weights of fan_in_fan_out or DoRA layers")
            scalings[name.removeprefix(PEFT_PREFIX)] = module.scaling[ADAPTER]
    return scalings


def merged_named_parameters(
    named: Iterable[tuple[str, torch.Tensor]], scalings: dict[str, float]
) -> Iterator[tuple[str, torch.Tensor]]:
    """Turn a `PeftModel`'s `(name, tensor)` stream into the base model's names and merged weights.

    A LoRA layer's `base_layer.weight` W, `lora_A` and `lora_B` become one `weight` `W + scaling * B @ A` (computed
    in float32, returned in W's dtype); `modules_to_save` copies replace their originals. The stream is read in
    `named_parameters` order, where W precedes its adapters; W and A are copied while held, so the stream may reuse
    its tensors (ZeRO-3's gathered blocks do). Only one layer's weights are held at a time.

    Args:
        named: `(name, tensor)` pairs in `PeftModel.named_parameters()` names and order.
        scalings: `lora_scalings(model)`.
    """
    held: dict[str, torch.Tensor] = {}
    for full, tensor in named:
        name = full.removeprefix(PEFT_PREFIX)
        if ".original_module." in name:
            continue
        if f".modules_to_save.{ADAPTER}." in name:
            yield name.replace(f".modules_to_save.{ADAPTER}", ""), tensor
        elif name.endswith(".base_layer.weight"):
            held[name.removesuffix(".base_layer.weight")] = tensor.clone()
        elif ".base_layer." in name:
            yield name.replace(".base_layer", ""), tensor
        elif name.endswith(f".lora_A.{ADAPTER}.weight"):
            held[name] = tensor.clone()
        elif name.endswith(f".lora_B.{ADAPTER}.weight"):
            layer = name.removesuffix(f".lora_B.{ADAPTER}.weight")
            weight, a = held.pop(layer), held.pop(f"{layer}.lora_A.{ADAPTER}.weight")
            delta = tensor.float() @ a.float() * scalings[layer]
            yield f"{layer}.weight", (weight.float() + delta).to(weight.dtype)
        else:
            yield name, tensor
    if held:
        raise ValueError(f"LoRA layers without both adapters in the stream: {sorted(held)}")


def sync_parameters(
    policy: torch.nn.Module, named: Iterable[tuple[str, torch.Tensor]]
) -> Iterable[tuple[str, torch.Tensor]]:
    """What a rollout engine with its own weights receives: `named` as is, or the merged weights of a LoRA policy."""
    return merged_named_parameters(named, lora_scalings(policy)) if has_adapters(policy) else named


def trainable_state(state: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a module's `state_dict` that `model` (whose keys carry `prefix`) trains: what a LoRA
    checkpoint keeps. Frozen base weights are reloaded from `model.name_or_path`."""
    named = model.named_parameters(remove_duplicate=False)  # a tied head is a state_dict key of its own
    frozen = {prefix + name for name, p in named if not p.requires_grad}
    return {k: v for k, v in state.items() if k not in frozen}


def check_trainable_state(state: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> None:
    """Refuse a checkpoint that lacks some trainable parameter of `model`: a LoRA run loads non-strictly (the base
    weights are not in its checkpoints), so a missing adapter would otherwise keep its initial value silently."""
    missing = sorted(prefix + n for n, p in model.named_parameters() if p.requires_grad and prefix + n not in state)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise UserError(f"the checkpoint lacks trainable weights of this run ({shown}): were model.lora.* changed?")
