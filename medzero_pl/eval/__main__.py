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
from pathlib import Path
from typing import Any

import torch

from medzero_pl.config import RolloutConfig
from medzero_pl.eval.benchmarks import BENCHMARKS, BenchmarkUnavailable, build_tasks
from medzero_pl.eval.report import write_report
from medzero_pl.eval.runner import EvalSettings, evaluate

log = logging.getLogger("medzero_pl.eval")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m medzero_pl.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="model name/path/alias; one row each (repeatable)")
    p.add_argument("--ckpt", action="append", default=[], help="last.ckpt (a file or ZeRO-3 dir); one row each")
    p.add_argument("--benchmarks", required=True, help=f"comma-separated: {','.join(BENCHMARKS)}")
    p.add_argument("--data-root", help="folder laid out as ../shared/data")
    p.add_argument(
        "--path", action="append", default=[], metavar="NAME=FILE", help="a benchmark's file (GPQA: required)"
    )
    p.add_argument("--limit", type=int, help="at most N questions per benchmark (seeded subset)")
    p.add_argument("--samples", type=int, default=1, help="k completions per question (k > 1 needs --temperature)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, help="default: each benchmark's own")
    p.add_argument("--max-prompt-length", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=8, help="questions per generate call")
    p.add_argument("--scorers", default="strict,lenient")
    p.add_argument("--prompt", help="a conf/prompt template for every benchmark (default: each benchmark's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument(
        "--engine", default="hf", choices=["hf", "vllm"], help="hf: model.generate; vllm: the vLLM engine (faster)"
    )
    p.add_argument("--out", default="runs/eval", help="report directory")
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint (http://host:port/v1) for diagnosis judging")
    p.add_argument("--judge-model", default="judge", help="model name sent to the judge endpoint")
    p.add_argument("--judge-cache", help="judge cache directory (default: <out>/judge)")
    p.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per judge request (> 0)")
    p.add_argument("--judge-retries", type=int, default=2, help="extra attempts per case after a failure (>= 0)")
    p.add_argument(
        "--judge-api-key-env",
        default="MEDZERO_JUDGE_API_KEY",
        metavar="VAR",
        help="environment variable holding the judge's API key, sent as a Bearer header (never written anywhere)",
    )
    args = p.parse_args(argv)
    if not args.model and not args.ckpt:
        p.error("give at least one --model or --ckpt")
    return args


def load_policy(model: str | None, ckpt: str | None, dtype: str) -> tuple[torch.nn.Module, Any, str]:
    """The causal LM (with a checkpoint's policy weights when given), its tokenizer and the name it was built from."""
    from medzero_pl.checkpoints import load_policy as load_trained
    from medzero_pl.models import load_causal_lm, load_tokenizer

    if ckpt is not None:
        policy, model = load_trained(ckpt, base=model, dtype=dtype)
    else:
        policy = load_causal_lm(model, dtype=dtype).eval()
    return policy, load_tokenizer(model), model


def rollout_engine(
    kind: str, policy: Any, tokenizer: Any, name: str, settings: EvalSettings, tasks: list[Any], seed: int
) -> Any:
    """`model.generate` on the policy, or a vLLM engine built from the base model's directory that then receives the
    policy's weights (a checkpoint's weights differ from the directory's)."""
    from medzero_pl.rollout import build_engine

    if kind == "hf":
        return build_engine(RolloutConfig(engine="hf"), policy, tokenizer, name)
    from medzero_pl.models import resolve_model

    budget = settings.max_new_tokens or max(task.benchmark.max_new_tokens for task in tasks)
    config = RolloutConfig(engine="vllm", max_model_len=settings.max_prompt_length + budget)
    engine = build_engine(config, policy, tokenizer, resolve_model(name), seed=seed)
    engine.update_weights(policy.named_parameters())
    return engine


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        paths = dict(item.split("=", 1) for item in args.path)
        settings = EvalSettings(
            args.samples,
            args.temperature,
            args.top_p,
            args.max_new_tokens,
            args.max_prompt_length,
            args.batch_size,
            args.seed,
            tuple(s for s in args.scorers.split(",") if s),
        )
        names = [b for b in args.benchmarks.split(",") if b]
        tasks = build_tasks(names, paths, args.data_root, args.limit, args.seed, args.prompt)
    except (ValueError, BenchmarkUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    judge = None
    if args.judge_url:
        from medzero_pl.eval.judge import JudgeClient

        if args.judge_timeout <= 0 or args.judge_retries < 0:
            print("error: --judge-timeout: expected > 0 seconds; --judge-retries: expected >= 0", file=sys.stderr)
            return 2
        judge = JudgeClient(
            args.judge_url,
            args.judge_model,
            cache_dir=args.judge_cache or Path(args.out) / "judge",
            timeout=args.judge_timeout,
            retries=args.judge_retries,
            api_key=os.environ.get(args.judge_api_key_env) or None,
        )
    torch.manual_seed(args.seed)
    rows: dict[str, dict[str, Any]] = {}
    runs = [(m, None) for m in args.model] + [(args.model[0] if len(args.model) == 1 else None, c) for c in args.ckpt]
    for model, ckpt in runs:
        policy, tokenizer, name = load_policy(model, ckpt, args.dtype)
        row = f"{ckpt} ({name})" if ckpt else name
        log.info("evaluating %s", row)
        engine = rollout_engine(args.engine, policy, tokenizer, name, settings, tasks, args.seed)
        results = evaluate(engine, tokenizer, tasks, settings)
        if judge is not None:
            from medzero_pl.eval.judge import judge_results

            for task in tasks:
                if task.benchmark.task == "diagnosis":
                    judge_results(results[task.benchmark.name], task.items, judge)
        rows[row] = results
        del policy, engine
    meta = {"command": " ".join(sys.argv), "settings": vars(settings), "models": args.model, "checkpoints": args.ckpt}
    md, js = write_report(rows, args.out, meta)
    print(md.read_text())
    log.info("report: %s and %s", md, js)
    return 0


if __name__ == "__main__":
    sys.exit(main())
