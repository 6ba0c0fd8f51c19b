"""The run's configuration: `Config` assembles the settings classes that live beside the code reading them, and
`compose` builds it from `conf/`.

``compose(["data=dataset2", "grpo.beta=0.04"])`` starts from ``conf/config.yaml``, swaps in the chosen group files
(``model/``, ``data/``, ``prompt/``, ``rewards/``, ``trainer/``, ``experiment/``), then applies ``key=value``
overrides. ``OmegaConf.structured`` enforces the schema (unknown keys, wrong types, and the choice fields, typed
``Literal`` from their registries), and we re-word its failures to one line naming the key, the allowed values or
the closest valid names. ``validate`` then collects every out-of-range value (each settings class checks its own
fields) and every conflict between blocks into one error.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import docstring_parser
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from medzero_pl.callbacks.checkpointing import CheckpointConfig
from medzero_pl.data.config import DataConfig
from medzero_pl.data.prompts import PromptTemplate
from medzero_pl.errors import ConfigError, UserError, expect
from medzero_pl.eval.config import EvalConfig
from medzero_pl.grpo.config import GRPOConfig, kl_loss_type_hint, loss_type_hint
from medzero_pl.model.attention import resolve_attn_implementation
from medzero_pl.model.loading import ModelConfig
from medzero_pl.optim import OptimConfig
from medzero_pl.paths import CONF_DIR
from medzero_pl.plan.config import PlanConfig
from medzero_pl.redaction import redact_secrets
from medzero_pl.rewards import RewardSpec
from medzero_pl.rollout.config import RolloutConfig
from medzero_pl.strategies import trained_dtype
from medzero_pl.trainer_config import MANAGED_TRAINER_ARGS, LoggingConfig, TrainerConfig, lightning_trainer_args

GROUPS = ("model", "data", "prompt", "rewards", "trainer")
MOVED_KEYS = {
    "rollout.off_policy_correction": "grpo.off_policy_correction",
    "rollout.off_policy_cap": "grpo.off_policy_cap",
}
"""Keys that moved: an old key is refused with its new name, and a checkpoint saved under it still resumes."""
CHOICE_HINTS = {"grpo.loss_type": loss_type_hint, "grpo.kl_loss_type": kl_loss_type_hint}
"""Choice fields whose refusal adds a hint for the value given (a TRL or verl name that maps to other settings)."""


@dataclass
class Config:
    """A whole run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    rewards: list[RewardSpec] = field(default_factory=list)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
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
    _apply_overrides(cfg, dotlist)
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        config: Config = OmegaConf.to_object(OmegaConf.merge(schema, resolved))
    except OmegaConfBaseException as err:
        raise ConfigError(_explain(err, "the resolved config")) from None
    config.run_dir = config.run_dir or f"runs/{run_name(config.experiment)}"
    validate(config)
    return config


def run_name(experiment: str | None) -> str:
    """The default run folder's name under `runs/`: the experiment's name, or its file's stem when the experiment is
    given as a path (`experiment=/abs/x.yaml` or `../x.yaml` must not nest `runs/` by the path or leave it)."""
    if not experiment:
        return "default"
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml") or path.is_absolute() or ".." in path.parts:
        return path.stem
    return experiment


def validate(cfg: Config) -> None:
    """Collect every problem into one error, so a run never fails halfway on a setting."""
    g, d, t, r = cfg.grpo, cfg.data, cfg.trainer, cfg.rollout
    blocks = {"grpo": g, "data": d, "optim": cfg.optim, "trainer": t, "logging": cfg.logging, "eval": cfg.eval}
    blocks["rollout"] = r
    blocks["model.lora"] = cfg.model.lora
    blocks["checkpoint"] = cfg.checkpoint
    problems = [f"{name}.{p}" for name, block in blocks.items() for p in block.problems()]  # each checks its own
    if not d.sources:
        problems.append("data.sources is empty: choose a recipe (data=demo) or list sources")
    if not cfg.rewards:
        problems.append("rewards is empty: choose a preset (rewards=mcq) or list {name, weight, kwargs}")
    for i, spec in enumerate(cfg.rewards):
        problems += expect(
            spec.weight >= 0, f"rewards.{i}.weight", spec.weight, ">= 0 (a penalty reward returns negative values)"
        )
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
    if r.engine == "vllm":
        needed = d.max_prompt_length + g.max_completion_length
        if r.max_model_len < needed:
            problems.append(
                f"rollout.max_model_len={r.max_model_len} < data.max_prompt_length + grpo.max_completion_length = "
                f"{needed}: vLLM would cut prompts or completions"
            )
    if r.engine in ("vllm", "vllm_server") and g.temperature > 2:
        problems.append(f"grpo.temperature={g.temperature}: vLLM samples at temperatures up to 2 only")
    problems += best_metric_problems(cfg)
    problems += model_problems(cfg)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def best_metric_problems(cfg: Config) -> list[str]:
    """`checkpoint.best_metric` must be a metric the run logs: a benchmark it evaluates every N steps, or validation
    inside fit."""
    metric, e, t = cfg.checkpoint.best_metric, cfg.eval, cfg.trainer
    if not metric:
        return []
    benchmark = metric.split("/")[1] if metric.count("/") >= 2 else None
    if metric.startswith("eval/") and (benchmark not in e.benchmarks or not e.every_n_steps):
        return [
            f"checkpoint.best_metric={metric}: {benchmark} must be among eval.benchmarks ({e.benchmarks}) and "
            f"evaluated during training (eval.every_n_steps={e.every_n_steps}, expected >= 1)"
        ]
    has_validation = cfg.data.val_fraction > 0 or bool(cfg.data.val_sources)
    if metric.startswith("val/") and not has_validation:
        return [
            f"checkpoint.best_metric={metric}: the data has no validation split (data.val_fraction, data.val_sources)"
        ]
    if metric.startswith("val/") and t.val_check_interval is None:
        return [f"checkpoint.best_metric={metric}: validation runs only at the end; set trainer.val_check_interval"]
    return []


def model_problems(cfg: Config) -> list[str]:
    """An attention implementation this machine cannot run (`medzero_pl.model.attention.resolve_attn_implementation`), and
    a `trainer.strategy`, `trainer.precision` and `model.dtype` with which AdamW would step half-precision weights
    with no float32 copy (`medzero_pl.strategies.trained_dtype`)."""
    checks = [
        lambda: resolve_attn_implementation(cfg.model.attn_implementation),
        lambda: trained_dtype(cfg.trainer.strategy, cfg.trainer.precision, cfg.model.dtype),
    ]
    problems = []
    for check in checks:
        try:
            check()
        except UserError as err:
            problems.append(str(err))
    return problems


def to_yaml(cfg: Config) -> str:
    """The config as YAML, secrets redacted (`medzero_pl/redaction.py`): what `config.yaml` and `print_config` show."""
    return OmegaConf.to_yaml(redact_secrets(OmegaConf.to_container(OmegaConf.structured(cfg)), env=os.environ))


def field_help(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, meaning) for every leaf field: the attribute docstrings as jsonargparse reads them
    (docstring_parser), and a choice field's allowed values from its `Literal` type."""
    docs = {p.arg_name: " ".join((p.description or "").split()) for p in docstring_parser.parse_from_object(cls).params}
    hints = get_type_hints(cls)
    rows: list[tuple[str, str, str]] = []
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        if is_dataclass(default):
            rows.extend(field_help(type(default), key + "."))
            continue
        doc = docs.get(f.name, "")
        if get_origin(hints[f.name]) is Literal:
            doc += f" One of: {' | '.join(dict.fromkeys(map(str, get_args(hints[f.name]))))}."
        rows.append((key, repr(default), doc.strip()))
    return rows


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


def _apply_overrides(cfg: Any, dotlist: list[str]) -> None:
    """`a.b=value` or `rewards.1.kwargs.x=value` (list indices too), each value parsed as YAML; every bad override
    is reported at once."""
    problems = []
    for item in dotlist:
        key, _, raw = item.partition("=")
        try:
            value = OmegaConf.from_dotlist([f"value={raw}"])["value"]
            OmegaConf.update(cfg, key, value, merge=True)
        except OmegaConfBaseException as err:
            if not getattr(err, "full_key", None):
                err.full_key = key  # type: ignore[attr-defined]
            problems.append(_explain(err, f"override '{item}'"))
    if problems:
        raise ConfigError("; ".join(problems))


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


_CHOICE = re.compile(r"Invalid value '(.*)', expected one of \[(.*)\]")


def _explain(err: OmegaConfBaseException, origin: str) -> str:
    """OmegaConf's error as one line naming the key: a moved key's new name, an unknown key's closest valid names,
    a choice field's allowed values."""
    key = re.sub(r"\[(\d+)\]", r".\1", getattr(err, "full_key", None) or "")  # sources[0].x -> sources.0.x
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        if key in MOVED_KEYS:
            return f"{origin}: '{key}' is now '{MOVED_KEYS[key]}'"
        parent, _, leaf = key.rpartition(".")
        valid = _valid_keys(parent)
        close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else ""
        listing = f" Valid keys{' of ' + parent if parent else ''}: {', '.join(valid)}." if valid else ""
        if parent == "trainer" and leaf in lightning_trainer_args() and leaf not in MANAGED_TRAINER_ARGS:
            hint = f" It is a lightning.Trainer argument: set trainer.lightning.{leaf}=..."
        return f"{origin}: unknown key '{key}'.{hint}{listing}"
    msg = str(err).split("\n")[0]
    if choice := _CHOICE.match(msg):
        allowed = " | ".join(dict.fromkeys(v.strip().strip("'") for v in choice.group(2).split(",")))
        hint = CHOICE_HINTS[key](choice.group(1)) if key in CHOICE_HINTS else ""
        return f"{origin}: {key}='{choice.group(1)}': expected one of {allowed}{hint}"
    return f"{origin}: bad value for '{key}': {msg}"


def _valid_keys(dotted_parent: str) -> list[str]:
    """Field names of the settings class at `dotted_parent` (list elements by their element type)."""
    node: Any = Config
    for part in filter(None, dotted_parent.split(".")):
        if part.isdigit():
            continue
        if not is_dataclass(node):
            return []
        node = get_type_hints(node).get(part)
        if get_origin(node) is list:
            node = get_args(node)[0]
    return [f.name for f in fields(node)] if is_dataclass(node) else []
