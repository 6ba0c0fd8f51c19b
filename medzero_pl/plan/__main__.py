"""`python -m medzero_pl.plan [key=value ...] [--gpu NAME|GIB]`: will this run fit, per rank, before it starts?

    python -m medzero_pl.plan experiment=medqa_usmle --gpu a100-80
    python -m medzero_pl.plan experiment=rarearena_1.5b --gpu 24
    python -m medzero_pl.plan grpo.max_completion_length=512          # the default run on this machine's RAM

The overrides are `fit`'s and compose the same config. Only the model's `config.json` is read (no weights), so a 7B
plan takes seconds on a laptop. `--gpu` is a GPU name (a100-40, a100-80, h100-80, h200) or its memory in GiB;
without it, a run on `trainer.accelerator=cpu` (or `auto` without CUDA) is planned against this machine's RAM, and
any other run against this machine's first GPU. Exit code 0 when it fits, 1 when it does not, 2 on bad input.
"""

from __future__ import annotations

import sys

from medzero_pl.config import compose
from medzero_pl.errors import UserError, report_user_errors
from medzero_pl.plan.memory import GIB, GPUS
from medzero_pl.plan.run import Plan, plan, suggestion

PHASES = {"resident": "held", "train": "fwd/bwd", "step": "opt step", "rollout": "rollout", "host": "host RAM"}


def parse_gpu(value: str) -> int:
    """Bytes of a `--gpu` name or GiB number."""
    if value in GPUS:
        return int(GPUS[value] * GIB)
    try:
        gib = float(value)
    except ValueError:
        gib = 0.0
    if gib <= 0:
        raise UserError(f"--gpu {value!r}: expected one of {', '.join(GPUS)} or a size in GiB (e.g. 24)")
    return int(gib * GIB)


def split_argv(argv: list[str]) -> tuple[list[str], str | None]:
    """`(fit's overrides, the --gpu value)`."""
    overrides, gpu, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--gpu":
            if i + 1 == len(argv):
                raise UserError("--gpu: expected a GPU name or a size in GiB after it")
            gpu, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--gpu="):
            gpu = arg.partition("=")[2]
        elif arg.startswith("-"):
            raise UserError(f"{arg}: unknown option (the planner takes fit's key=value overrides and --gpu)")
        else:
            overrides.append(arg)
        i += 1
    return overrides, gpu


def device_of(accelerator: str, gpu: str | None) -> tuple[str, int, int]:
    """`(device, capacity in bytes, devices for trainer.devices=auto)` the plan is made for."""
    import torch

    if gpu is not None:
        return "gpu", parse_gpu(gpu), 1
    if accelerator == "cpu" or not torch.cuda.is_available():
        if accelerator not in ("cpu", "auto"):
            raise UserError(f"trainer.accelerator={accelerator} and no CUDA here: pass --gpu NAME or --gpu GIB")
        return "cpu", host_ram(), 1
    return "gpu", torch.cuda.mem_get_info()[1], torch.cuda.device_count()


def host_ram() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise UserError("cannot read this machine's RAM from /proc/meminfo: pass --gpu GIB")


def report(p: Plan, name: str) -> str:
    """The plan as a table of per-rank terms, the peak and the verdict."""
    run, v = p.run, p.verdict
    lines = [
        f"model {name}: {p.model.params / 1e9:.2f}B parameters, {p.model.layers} layers, vocab {p.model.vocab}",
        f"per rank ({run.world_size} ranks, {run.device}): {run.prompts_per_rank} prompts x G={run.generations}, "
        f"{run.prompt_tokens} + {run.completion_tokens} tokens, micro-batch {run.micro_batch}, engine {run.engine}",
        "",
        f"{'':<42}{'GiB':>8}  {'when':<9} note",
    ]
    lines += [f"{t.name:<42}{t.bytes / GIB:>8.2f}  {PHASES[t.phase]:<9} {t.note}" for t in v.terms]
    lines.append(f"{'peak per rank':<42}{v.peak / GIB:>8.2f}  of {v.capacity / GIB:.1f} GiB")
    host = [t for t in v.terms if t.phase == "host"]
    if host:
        total = sum(t.bytes for t in host) * run.ranks_per_node
        lines.append(f"{'host RAM per node (offloaded)':<42}{total / GIB:>8.2f}  {run.ranks_per_node} ranks")
    lines += [f"warning: {w}" for w in v.warnings]
    if v.fits:
        lines.append("fits")
    else:
        lines.append(f"does not fit: {'; '.join(v.problems)}")
        lines.append(f"cheapest change: {suggestion(p)}")
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    overrides, gpu = split_argv(argv)
    cfg = compose(overrides)
    device, capacity, devices_if_auto = device_of(cfg.trainer.accelerator, gpu)
    p = plan(cfg, device, capacity, devices_if_auto)
    print(report(p, cfg.model.name_or_path))
    return 0 if p.verdict.fits else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    return report_user_errors(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
