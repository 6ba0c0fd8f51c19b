"""`python -m medzero_pl.eval`: evaluate base models and trained checkpoints on named benchmarks, one table.

    python -m medzero_pl.eval --model smollm2-135m-instruct --ckpt runs/default/checkpoints/last.ckpt \\
        --benchmarks medqa,pubmedqa --limit 20 --data-root ../shared/data --out runs/eval

Each ``--model`` and each ``--ckpt`` is one row of the report (a checkpoint's weights go into its own run's model,
or into ``--model``'s architecture when given); columns are benchmarks. Writes ``report.md``, ``report.json`` and
``predictions/`` to ``--out`` and prints the Markdown. ``--judge-url`` adds an LLM judge (RareArena rubric) for
diagnosis benchmarks, see :mod:`medzero_pl.eval.judge`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

import docstring_parser
import torch

from medzero_pl.errors import UserError, report_user_errors
from medzero_pl.eval.benchmarks import BenchmarkUnavailable, build_tasks
from medzero_pl.eval.config import EvalConfig
from medzero_pl.eval.report import write_report
from medzero_pl.eval.runner import evaluate
from medzero_pl.rollout import ENGINES, RolloutConfig, build_engine

log = logging.getLogger("medzero_pl.eval")
TRAINING_ONLY = ("every_n_steps",)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m medzero_pl.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="model name/path/alias; one row each (repeatable)")
    p.add_argument("--ckpt", action="append", default=[], help="last.ckpt (a file or ZeRO-3 dir); one row each")
    add_config_arguments(p)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--engine", default="hf", choices=list(ENGINES), help="what generates the completions")
    p.add_argument("--out", default="runs/eval", help="report directory")
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint (http://host:port/v1) for diagnosis judging")
    p.add_argument("--judge-model", default="judge", help="model name sent to the judge endpoint")
    p.add_argument("--judge-cache", help="judge cache directory (default: <out>/judge)")
    p.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per judge request (> 0)")
    p.add_argument("--judge-retries", type=int, default=2, help="extra attempts per case after a failure (>= 0)")
    p.add_argument(
        "--judge-structured",
        action="store_true",
        help="constrain the judge's replies to the score list (a vLLM server's structured outputs)",
    )
    p.add_argument(
        "--judge-api-key-env",
        default="MEDZERO_JUDGE_API_KEY",
        metavar="VAR",
        help="environment variable holding the judge's API key, sent as a Bearer header (never written anywhere)",
    )
    args = p.parse_args(argv)
    if not args.model and not args.ckpt:
        p.error("give at least one --model or --ckpt")
    if not args.benchmarks:
        p.error("give --benchmarks")
    return args


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `EvalConfig` field, its help the field's docstring: `--top-p` for `top_p`, comma-separated values
    for a list (`--benchmarks medqa,pubmedqa`), and `--path NAME=FILE` (repeatable) for the `paths` mapping."""
    docs = {
        p.arg_name: " ".join((p.description or "").split())
        for p in docstring_parser.parse_from_object(EvalConfig).params
    }
    hints = typing.get_type_hints(EvalConfig)
    for f in fields(EvalConfig):
        if f.name in TRAINING_ONLY:
            continue
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        hint, flag = hints[f.name], "--" + f.name.replace("_", "-")
        if typing.get_origin(hint) is dict:
            parser.add_argument(
                flag.removesuffix("s"), dest=f.name, action="append", default=[], metavar="NAME=FILE", help=docs[f.name]
            )
        elif typing.get_origin(hint) is list:
            choices = typing.get_args(typing.get_args(hint)[0])
            listing = f"Comma-separated, from: {','.join(choices)}."
            parser.add_argument(flag, type=_comma_list(choices), default=default, help=f"{docs[f.name]} {listing}")
        else:
            scalar = next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
            parser.add_argument(flag, type=scalar, default=default, help=docs[f.name])


def _comma_list(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        values = [v for v in text.split(",") if v]
        unknown = [v for v in values if choices and v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {','.join(choices)}")
        return values

    return parse


def eval_config(args: argparse.Namespace) -> EvalConfig:
    """The `EvalConfig` the flags describe (every problem raised at once)."""
    values = {f.name: getattr(args, f.name) for f in fields(EvalConfig) if f.name not in TRAINING_ONLY}
    values["paths"] = dict(item.split("=", 1) for item in values["paths"])
    config = EvalConfig(**values)
    config.check()
    return config


def rollout_engine(
    kind: str, policy: Any, tokenizer: Any, name: str, settings: EvalConfig, tasks: list[Any], seed: int
) -> Any:
    """The engine `kind` names, generating for the policy. An engine with its own copy of the weights (vLLM) is
    built from the base model's directory, then receives the policy's (a checkpoint's weights differ from it)."""
    from medzero_pl.model.loading import resolve_model

    budget = settings.max_new_tokens or max(task.benchmark.max_new_tokens for task in tasks)  # checked >= 1
    config = RolloutConfig(engine=kind, max_model_len=settings.max_prompt_length + budget)
    engine = build_engine(config, policy, tokenizer, resolve_model(name), seed=seed)
    if engine.owns_weights:
        engine.update_weights(policy.named_parameters())
    return engine


def load_policy(model: str | None, ckpt: str | None, dtype: str) -> tuple[torch.nn.Module, Any, str]:
    """The causal LM (with a checkpoint's policy weights when given), its tokenizer and the name it was built from."""
    from medzero_pl.checkpoints import load_policy as load_trained
    from medzero_pl.model.loading import load_causal_lm, load_tokenizer

    if ckpt is not None:
        policy, model = load_trained(ckpt, base=model, dtype=dtype)
    else:
        policy = load_causal_lm(model, dtype=dtype).eval()
    return policy, load_tokenizer(model), model


def check_inputs(runs: list[tuple[str | None, str | None]], out: str) -> None:
    """Fail before generating anything: every checkpoint readable, every model resolvable, `--out` writable."""
    from medzero_pl.checkpoints import CheckpointError, recorded_base
    from medzero_pl.model.loading import resolve_model

    for model, ckpt in runs:
        recorded = None if ckpt is None else recorded_base(ckpt)  # reads the checkpoint's header: it must exist
        base = model or recorded
        if base is None:
            raise CheckpointError(f"--ckpt {ckpt}: does not record its base model; name it with --model")
        resolve_model(base)
    probe_writable(Path(out))


def probe_writable(out: Path) -> None:
    """`out` exists (created if needed) and takes a file, or one `UserError` naming `--out`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as err:
        raise UserError(f"--out {out}: cannot write there ({err.strerror or err}); choose another directory") from None


def run(args: argparse.Namespace) -> int:
    """Check everything up front, then evaluate each row, rewriting the report after every benchmark so that a
    crash or a kill loses at most the benchmark in progress."""
    try:
        settings = eval_config(args)
        tasks = build_tasks(
            settings.benchmarks, settings.paths, settings.data_root, settings.limit, settings.seed, settings.prompt
        )
    except (ValueError, BenchmarkUnavailable) as err:  # ConfigError is a ValueError
        raise UserError(str(err)) from None
    if args.judge_timeout <= 0 or args.judge_retries < 0:
        raise UserError("--judge-timeout: expected > 0 seconds; --judge-retries: expected >= 0")
    runs = [(m, None) for m in args.model] + [(args.model[0] if len(args.model) == 1 else None, c) for c in args.ckpt]
    check_inputs(runs, args.out)
    judge = None
    if args.judge_url:
        from medzero_pl.eval.judge import JudgeClient

        judge = JudgeClient(
            args.judge_url,
            args.judge_model,
            cache_dir=args.judge_cache or Path(args.out) / "judge",
            timeout=args.judge_timeout,
            retries=args.judge_retries,
            api_key=os.environ.get(args.judge_api_key_env) or None,
            structured=args.judge_structured,
        )
    torch.manual_seed(settings.seed)
    rows: dict[str, dict[str, Any]] = {}
    meta = {"command": " ".join(sys.argv), "settings": asdict(settings), "models": args.model, "checkpoints": args.ckpt}
    for model, ckpt in runs:
        policy, tokenizer, name = load_policy(model, ckpt, args.dtype)
        row = f"{ckpt} ({name})" if ckpt else name
        log.info("evaluating %s", row)
        engine = rollout_engine(args.engine, policy, tokenizer, name, settings, tasks, settings.seed)
        rows[row] = {}
        for task in tasks:
            result = evaluate(engine, tokenizer, [task], settings)[task.benchmark.name]
            if judge is not None and task.benchmark.task == "diagnosis":
                from medzero_pl.eval.judge import judge_results

                judge_results(result, task.items, judge)
            rows[row][task.benchmark.name] = result
            write_report(rows, args.out, {**meta, "complete": False})
        del policy, engine
    md, js = write_report(rows, args.out, {**meta, "complete": True})
    print(md.read_text())
    log.info("report: %s and %s", md, js)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    return report_user_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
