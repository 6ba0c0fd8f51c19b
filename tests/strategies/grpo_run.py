"""One rank of a GRPO run for the multi-process tests.

`python tests/strategies/grpo_run.py OUT [--scripted] [--max-new-tokens=A,B] key=value ...`

Builds the run like `medzero_pl.fit` does and writes `OUT.rank<N>`: every step's logged loss and grad norm, the
policy's full weights at the start and at the end (gathered under ZeRO-3), the reference's bytes on this rank,
the final step and the signal received. Exits like `fit`: 128 + the signal number after a signal, else 0.
`--scripted` replaces generation with completions that depend only on (prompt, sample); `--max-new-tokens=2,16`
gives rank r its own completion length, so the ranks stop generating at different times.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.rollout.base import Rollouts
from medzero_pl.strategies import full_named_parameters
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

    def wake_up(self) -> None:
        """Nothing to restore."""


class Record(Callback):
    def __init__(self, scripted: bool, lengths: list[int] | None) -> None:
        self.scripted = scripted
        self.lengths = lengths
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.initial: dict[str, torch.Tensor] = {}
        self.reference_bytes: int | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.scripted:
            pl_module.engine = ScriptedEngine(pl_module.tokenizer, pl_module.grpo.max_completion_length)
        if self.lengths:
            pl_module.grpo.max_completion_length = self.lengths[trainer.global_rank]
        self.initial = {name: t.clone() for name, t in full_named_parameters(pl_module.policy)}
        if pl_module.reference is not None:
            self.reference_bytes = local_parameter_bytes(getattr(pl_module.reference, "module", pl_module.reference))

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.losses.append(trainer.callback_metrics["loss"].item())
        self.grad_norms.append(trainer.callback_metrics["grad_norm"].item())


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    out, flags = Path(argv[0]), [a for a in argv[1:] if a.startswith("--")]
    lengths = [int(n) for f in flags if f.startswith("--max-new-tokens=") for n in f.split("=")[1].split(",")]
    cfg = compose([a for a in argv[1:] if not a.startswith("--")])
    trainer, module, datamodule = build(cfg)
    record = Record("--scripted" in flags, lengths)
    trainer.callbacks.append(record)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume)
    weights = {name: tensor.clone() for name, tensor in full_named_parameters(module.policy)}
    result = {
        "losses": record.losses,
        "grad_norms": record.grad_norms,
        "initial": record.initial,
        "weights": weights,
        "reference_bytes": record.reference_bytes,
        "global_step": trainer.global_step,
        "received": trainer.stopped_by_signal,
        "world_size": trainer.world_size,
    }
    torch.save(result, f"{out}.rank{trainer.global_rank}")
    return 128 + trainer.stopped_by_signal if trainer.stopped_by_signal else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
