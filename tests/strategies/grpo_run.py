"""One rank of a GRPO run for the multi-process tests.

`python tests/strategies/grpo_run.py OUT [--scripted] [--max-new-tokens=A,B] key=value ...`

Builds the run like `medzero_pl.fit` does and writes `OUT.rank<N>`: every step's logged loss and grad norm, the
policy's full weights at the start and at the end (gathered under ZeRO-3), the reference's bytes on this rank,
the final step and the signal received, and per step the completions trained on and the module's data position. Exits like `fit`: 128 + the signal number after a signal, else 0.
`--scripted` replaces generation with completions that depend only on (prompt, sample); `--max-new-tokens=2,16`
gives rank r its own completion length, so the ranks stop generating at different times.

With `rollout.engine=vllm`: `--prompt-seeded` makes the engine sample each prompt with a seed of (step, prompt), so
two ranks that split a batch sample what one process does; `--gather-numel=N` syncs the engine's weights through
gathers of at most N elements (many blocks); at the end the weights are synced once more, and the engine's greedy
rollouts of `GREEDY_PROMPTS` at the start and at the end and its final weights are written too
(`engine_greedy_before`, `engine_greedy`, `engine_weights`; with `rollout.engine=vllm_server` the served weights'
digests, `engine_digests`).
"""

from __future__ import annotations

import hashlib
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import torch
from lightning.pytorch import Callback

from medzero_pl.callbacks.weight_sync import WeightSync
from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.rollout.base import Rollouts, SamplingParams
from medzero_pl.strategies import full_named_parameters, leave_process_group
from medzero_pl.strategies.deepspeed import local_parameter_bytes


class ScriptedEngine:
    """Completions that depend only on (prompt, sample index): the same on one rank or split across two."""

    owns_weights = False

    def __init__(self, tokenizer, max_new_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    def generate(self, prompt_ids, n, sampling):
        ids, reasons = [], []
        vocab = len(self.tokenizer)
        for prompt in prompt_ids:
            for j in range(n):
                digest = hashlib.sha256(f"{prompt}|{j}|{sampling.seed}".encode()).digest()
                length = 1 + digest[0] % self.max_new_tokens
                tokens = [3 + b % (vocab - 3) for b in digest[1 : 1 + length]]
                stop = length < self.max_new_tokens
                ids.append(tokens[:-1] + [self.tokenizer.eos_token_id] if stop else tokens)
                reasons.append("stop" if stop else "length")
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Rollouts(completion_ids=ids, texts=texts, finish_reasons=reasons)

    def update_weights(self, named_tensors) -> None:
        """No weights: the completions are scripted."""

    def sleep(self) -> None:
        """Nothing to free."""


class PromptSeeded:
    """An engine that samples each prompt in its own call, seeded by (step seed, prompt): completions do not depend
    on which rank holds a prompt or where in the batch it is."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def generate(self, prompt_ids, n, sampling):
        parts = []
        for prompt in prompt_ids:
            seed = None if sampling.seed is None else (sampling.seed + zlib.crc32(str(prompt).encode())) % 2**31
            parts.append(self.engine.generate([prompt], n, replace(sampling, seed=seed)))
        logprobs = None if parts[0].logprobs is None else [lp for r in parts for lp in r.logprobs]
        return Rollouts(
            completion_ids=[ids for r in parts for ids in r.completion_ids],
            texts=[t for r in parts for t in r.texts],
            finish_reasons=[f for r in parts for f in r.finish_reasons],
            logprobs=logprobs,
        )

    def __getattr__(self, name):  # owns_weights, has_weights, update_weights, named_weights, sleep
        return getattr(self.engine, name)


SMALL_BLOCKS = 3000  # elements per gather for `*_blocks`: a tiny model's tensors then span many blocks
GREEDY_PROMPTS = ["Say C", "Say A and then B", "(D) letter D", "Answer Choices: (A) letter A (B) letter B"]
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


def engine_greedy(module) -> Rollouts:
    prompts = [module.tokenizer(p, add_special_tokens=False).input_ids for p in GREEDY_PROMPTS]
    return module.engine.generate(prompts, 1, GREEDY)


class Record(Callback):
    def __init__(self, scripted: bool, lengths: list[int] | None) -> None:
        self.scripted = scripted
        self.lengths = lengths
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.initial: dict[str, torch.Tensor] = {}
        self.initial_blocks: dict[str, torch.Tensor] = {}
        self.reference_bytes: int | None = None
        self.wrap = None  # e.g. PromptSeeded: wraps the module's engine at the start
        self.greedy_before: Rollouts | None = None
        self.rows_trained: list[int] = []
        self.data_positions: list[int] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.scripted:
            pl_module.engine = ScriptedEngine(pl_module.tokenizer, pl_module.grpo.max_completion_length)
        if self.wrap is not None:
            pl_module.engine = self.wrap(pl_module.engine)
        if pl_module.engine.owns_weights:  # the engine holds the weights it was started with
            self.greedy_before = engine_greedy(pl_module)
        if self.lengths:
            pl_module.grpo.max_completion_length = self.lengths[trainer.global_rank]
        self.initial = {name: t.clone() for name, t in full_named_parameters(pl_module.policy)}
        self.initial_blocks = {n: t.clone() for n, t in full_named_parameters(pl_module.policy, SMALL_BLOCKS)}
        if pl_module.reference is not None:
            self.reference_bytes = local_parameter_bytes(getattr(pl_module.reference, "module", pl_module.reference))

    def on_train_batch_end(self, trainer, pl_module, outputs, *args) -> None:
        self.rows_trained.append(len(outputs["completions"]))
        self.data_positions.append(pl_module.data_position)
        self.losses.append(trainer.callback_metrics["loss"].item())
        self.grad_norms.append(trainer.callback_metrics["grad_norm"].item())


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    out, flags = Path(argv[0]), [a for a in argv[1:] if a.startswith("--")]
    lengths = [int(n) for f in flags if f.startswith("--max-new-tokens=") for n in f.split("=")[1].split(",")]
    cfg = compose([a for a in argv[1:] if not a.startswith("--")])
    trainer, module, datamodule = build(cfg)
    gather_numel = [int(f.split("=")[1]) for f in flags if f.startswith("--gather-numel=")]
    record = Record("--scripted" in flags, lengths)
    trainer.callbacks.append(record)
    if gather_numel:
        sync = next(c for c in trainer.callbacks if isinstance(c, WeightSync))
        sync.source = lambda t, m: full_named_parameters(m.policy, max_numel=gather_numel[0])
    if "--prompt-seeded" in flags:
        record.wrap = PromptSeeded
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume)
    weights = {name: tensor.clone() for name, tensor in full_named_parameters(module.policy)}
    weights_blocks = {name: tensor.clone() for name, tensor in full_named_parameters(module.policy, SMALL_BLOCKS)}
    greedy = engine_weights = engine_digests = None
    if module.engine.owns_weights:
        module.engine.update_weights(full_named_parameters(module.policy, *gather_numel))  # every rank, collective
        greedy = engine_greedy(module)
        if hasattr(module.engine, "named_weights"):  # an engine in this process (vllm)
            engine_weights = module.engine.named_weights()
        if hasattr(module.engine, "weight_digests"):  # a server (vllm_server): SHA-256 of each served weight
            engine_digests = module.engine.weight_digests()
    result = {
        "losses": record.losses,
        "grad_norms": record.grad_norms,
        "rows_trained": record.rows_trained,
        "data_positions": record.data_positions,
        "initial": record.initial,
        "initial_blocks": record.initial_blocks,
        "weights": weights,
        "weights_blocks": weights_blocks,
        "reference_bytes": record.reference_bytes,
        "global_step": trainer.global_step,
        "received": trainer.stopped_by_signal,
        "world_size": trainer.world_size,
        "engine_greedy_before": record.greedy_before,
        "engine_greedy": greedy,
        "engine_weights": engine_weights,
        "engine_digests": engine_digests,
    }
    torch.save(result, f"{out}.rank{trainer.global_rank}")
    leave_process_group()  # as fit does
    return 128 + trainer.stopped_by_signal if trainer.stopped_by_signal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
