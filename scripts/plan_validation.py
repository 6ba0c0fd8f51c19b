"""The memory planner's prediction against the peak RSS `scripts/bench_grpo.py` measured, one row per benchmark run.

    python scripts/bench_grpo.py --trainers medzero --threads 1 --fixed-length --json runs/bench/hf_64.json
    python scripts/plan_validation.py runs/bench/*.json

Each `--json` file holds the run's settings, the model's config and the prompt lengths. The planner gets the same
settings as `fit` overrides, the model's shape from that config, and `data.max_prompt_length` set to the longest
prompt measured (it plans for the longest micro-batch, and the benchmark's prompts are shorter than the limit). On
CPU the device is the host, so the prediction covers the whole process: the planner's terms plus its fixed
`process` term. Only `--fixed-length` runs are compared (otherwise completions are shorter than planned).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medzero_pl.config import compose  # noqa: E402
from medzero_pl.plan.memory import estimate, peak, shape_from_config  # noqa: E402
from medzero_pl.plan.run import run_shape  # noqa: E402


def overrides(setting: dict, engine: str, prompt_length: int) -> list[str]:
    """`fit` overrides of the benchmark's medzero_pl run (`bench_grpo.run_medzero`) that bear on memory."""
    return [
        f"rollout.engine={engine}",
        *([f"rollout.kv_cache_gib={setting['kv_cache_gib']}"] if setting.get("kv_cache_gib") else []),
        f"data.prompts_per_step={setting['prompts']}",
        f"data.max_prompt_length={prompt_length}",
        f"grpo.num_generations={setting['generations']}",
        f"grpo.max_completion_length={setting['max_new_tokens']}",
        f"grpo.beta={setting['beta']}",
        f"grpo.micro_batch_size={setting['micro_batch']}",
        f"grpo.shared_prompt_forward={str(not setting['no_shared_prompt']).lower()}",
        f"grpo.fused_lm_head={str(not setting['no_fused_head']).lower()}",
        f"model.dtype={setting['dtype']}",
        f"model.gradient_checkpointing={str(setting['gradient_checkpointing']).lower()}",
        "rollout.max_model_len=8192",
    ]


def rows(path: Path) -> list[dict]:
    result = json.loads(path.read_text())
    setting = result["setting"]
    found = []
    for label, runs in result["runs"].items():
        if not label.startswith("medzero"):
            continue
        for run in runs:
            prompt_length = max(p for s in run["steps"] for p in s["prompt_lengths"])
            model = shape_from_config(run["model_config"])
            cfg = compose(overrides(setting, run["engine"], prompt_length))
            shape = run_shape(cfg, run["model_config"].get("model_type", ""), "cpu")
            predicted = peak(estimate(model, shape)) / 2**20
            found.append(
                {
                    "file": path.name,
                    "params": model.params,
                    "engine": run["engine"],
                    "rows": f"{setting['prompts']} x {setting['generations']}",
                    "tokens": f"{prompt_length} + {setting['max_new_tokens']}",
                    "micro_batch": setting["micro_batch"],
                    "checkpointing": setting["gradient_checkpointing"],
                    "fixed_length": setting["fixed_length"],
                    "predicted_mb": predicted,
                    "measured_mb": run["peak_rss_mb"],
                }
            )
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="--json files of scripts/bench_grpo.py")
    args = p.parse_args(argv)
    print(
        "| run | model | engine | prompts x G | prompt + completion | micro-batch | checkpointing | predicted (MB) "
        "| measured peak RSS (MB) | predicted / measured |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.results:
        for r in rows(path):
            model = f"{r['params'] / 1e6:.1f}M"
            ratio = r["predicted_mb"] / r["measured_mb"]
            flag = "" if r["fixed_length"] else " (not fixed length)"
            print(
                f"| {r['file']}{flag} | {model} | {r['engine']} | {r['rows']} | {r['tokens']} | {r['micro_batch']} "
                f"| {'on' if r['checkpointing'] else 'off'} | {r['predicted_mb']:.0f} | {r['measured_mb']:.0f} "
                f"| {ratio:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
