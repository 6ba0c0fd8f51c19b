"""GRPOModule: the policy, an optional frozen reference, and one GRPO step per generation batch.

A training step reads: rollout -> reward -> group advantage -> mu optimisation passes -> log. The math lives in
`medzero_pl.grpo`, the rewards in `medzero_pl.rewards`, generation behind `RolloutEngine`; this file wires them.

Departures from the GRPO paper (all configurable, see `GRPOConfig`): token-level DAPO aggregation by default,
clip-higher (epsilon_high > epsilon_low), no KL term unless `beta > 0`, and no separate forward pass for old
log-probs: with mu = 1 the ratio is taken against the detached current log-probs (exactly 1), and with mu > 1
the first pass's log-probs (the policy before any update of the batch) serve the later passes.

Public surface used by callbacks: `policy`, `tokenizer`, `engine` (swap it to change how rollouts are made) and
`sampling`. An engine with its own copy of the weights (vLLM) is kept current by `callbacks.weight_sync.WeightSync`,
the only caller of `engine.update_weights` in a run. `training_step` returns the step's results as a plain dict (see
`step_outputs`), which Lightning hands to `Callback.on_train_batch_end(..., outputs, ...)`: statistics, samples and
evaluation callbacks read that, not attributes of the module.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, is_dataclass, replace
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from transformers import get_scheduler

from medzero_pl.config import GRPOConfig, ModelConfig, OptimConfig, RolloutConfig
from medzero_pl.data.datamodule import collate
from medzero_pl.errors import UserError
from medzero_pl.forward import completion_logprobs_and_entropy
from medzero_pl.grpo import MULTI_REWARD_ADVANTAGES, grpo_loss, reward_matrix
from medzero_pl.grpo.correction import importance_weights, sampler_mismatch
from medzero_pl.models import load_causal_lm, load_tokenizer, resolve_model
from medzero_pl.redaction import redact_secrets
from medzero_pl.rewards import RewardSpec, build_rewards
from medzero_pl.rollout import Placement, build_engine
from medzero_pl.rollout.base import RolloutEngine, Rollouts, SamplingParams
from medzero_pl.strategies import begin_micro_batch, clip_and_step, prepare_reference, trained_dtype, unsharded_init

RNG_KEY = "medzero_rng"
log = logging.getLogger(__name__)


class GRPOModule(LightningModule):
    """GRPO on a causal LM with manual optimisation (mu optimizer steps per generation batch)."""

    def __init__(
        self,
        model: ModelConfig | None = None,
        grpo: GRPOConfig | None = None,
        optim: OptimConfig | None = None,
        rewards: list[RewardSpec] | None = None,
        seed: int = 0,
        rollout: RolloutConfig | None = None,
    ) -> None:
        super().__init__()
        self.model_config = model or ModelConfig()
        self.grpo = grpo or GRPOConfig()
        self.optim = optim or OptimConfig()
        self.rollout_config = rollout or RolloutConfig()
        self.seed = seed
        # Plain containers only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(
            redact_secrets(
                {
                    "model": asdict(self.model_config),
                    "grpo": asdict(self.grpo),
                    "optim": asdict(self.optim),
                    "rewards": [asdict(r) if is_dataclass(r) else dict(r) for r in rewards or []],
                    "seed": seed,
                    "rollout": asdict(self.rollout_config),
                }
            )  # hparams reach hparams.yaml, checkpoints and W&B
        )
        self.automatic_optimization = False
        self.reward_specs = [r if isinstance(r, RewardSpec) else RewardSpec(**r) for r in rewards or []]
        self.reward_set = build_rewards(self.reward_specs)
        self.tokenizer = load_tokenizer(self.model_config.name_or_path)
        self.policy: torch.nn.Module | None = None
        self.reference: torch.nn.Module | None = None
        self.engine: RolloutEngine | None = None
        self.batches_trained = 0

    # ----------------------------------------------------------------------------------------- setup
    def configure_model(self) -> None:
        """The policy (float32 unless the strategy keeps float32 master weights, see `trained_dtype`), the reference
        and the engine (both in `model.dtype`)."""
        if self.policy is not None:
            return
        dtype = self.model_config.dtype
        if self._trainer is not None:  # a module configured outside a run takes `model.dtype`
            dtype = trained_dtype(self._trainer.strategy, self._trainer.precision, dtype)
        attention = self.model_config.attn_implementation
        self.policy = load_causal_lm(self.model_config.name_or_path, dtype, attn_implementation=attention).train()
        if self.model_config.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable()
        if self.grpo.beta > 0:
            reference = load_causal_lm(
                self.model_config.name_or_path, self.model_config.dtype, attn_implementation=attention
            )
            reference.requires_grad_(False).eval()
            # A plain attribute, not a submodule: frozen weights stay out of checkpoints and the optimizer.
            object.__setattr__(self, "reference", reference)
        path = resolve_model(self.model_config.name_or_path)
        with unsharded_init():  # the engine's own model is whole on every rank, also under ZeRO-3
            self.engine = build_engine(
                self.rollout_config,
                self.policy,
                self.tokenizer,
                path,
                seed=self.seed,
                placement=self._placement(),
                dtype=self.model_config.dtype,
            )

    def _placement(self) -> Placement:
        """This process among the trainer's; its engine goes on the device the strategy trains on."""
        trainer = self._trainer
        if trainer is None:  # built outside a run
            return Placement()
        return Placement.of(trainer.global_rank, trainer.local_rank, trainer.world_size, trainer.strategy.root_device)

    @property
    def optimizer_steps_per_batch(self) -> int:
        """mu: each generation batch (one GRPO step) makes this many optimizer steps."""
        return self.grpo.num_iterations

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            self.policy.parameters(),
            lr=self.optim.lr,
            betas=tuple(self.optim.betas),
            weight_decay=self.optim.weight_decay,
            fused=True,  # one kernel over all tensors: 5x faster than the per-tensor loop torch picks on CPU
        )
        total = max(1, self.trainer.max_steps)  # optimizer steps: GRPO steps x mu
        name, extra = ("constant_with_warmup", None)
        if self.optim.scheduler == "cosine":
            name, extra = "cosine_with_min_lr", {"min_lr_rate": self.optim.min_lr_ratio}
        sched = get_scheduler(name, opt, self.optim.warmup_steps, total, scheduler_specific_kwargs=extra)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_fit_start(self) -> None:
        if self.reference is not None:  # sharded in its own engine under ZeRO-3, else moved to the device
            object.__setattr__(self, "reference", prepare_reference(self.trainer.strategy, self.reference))

    def check_rewards(self, items: list[dict[str, Any]], per_source: int = 8) -> None:
        """Score a placeholder completion on a few rows of every source before training, so a broken reward, or a
        reward set that applies to none of the data (MCQ rewards on diagnosis cases), fails at start-up."""
        sample: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            rows = sample.setdefault(item["source"], [])
            if len(rows) < per_source:
                rows.append(item)
        rows = [row for group in sample.values() for row in group]
        if not rows:
            return
        columns = {k: v for k, v in collate(rows).items() if k != "prompt_ids"}
        prompts = columns.pop("prompts")
        probe = "<think>probe</think><answer>probe</answer>"
        scored = self.reward_set(prompts, [probe] * len(rows), completion_ids=[[0]] * len(rows), **columns)
        unused = [name for name, values in scored.per_function.items() if all(v is None for v in values)]
        tasks = sorted({row["task"] for row in rows})
        if len(unused) == len(scored.per_function):
            raise UserError(
                f"rewards: none of {unused} applies to the training data (tasks: {', '.join(tasks)}); every reward "
                "would be 0 and nothing would be learnt. Choose a reward preset that matches the data"
            )
        if unused:
            log.warning("rewards %s apply to none of the training data (tasks: %s)", unused, ", ".join(tasks))

    @property
    def sampling(self) -> SamplingParams:
        """Training-time sampling; each step replaces `seed` with one derived from (seed, step)."""
        g = self.grpo
        return SamplingParams(g.max_completion_length, g.temperature, g.top_p, g.top_k, seed=None)

    # -------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        g = self.grpo
        G = g.num_generations
        t0 = time.perf_counter()
        sampling = replace(self.sampling, seed=self._step_seed(self.batches_trained))
        rollouts = self.engine.generate(batch["prompt_ids"], G, sampling)
        self.engine.sleep()  # frees a vLLM engine's GPU memory while training (sleep mode only); no-op otherwise
        t_gen = time.perf_counter()

        columns = {k: repeat_each(v, G) for k, v in batch.items() if k not in ("prompt_ids",)}
        prompts = columns.pop("prompts")
        scored = self.reward_set(prompts, rollouts.texts, completion_ids=rollouts.completion_ids, **columns)
        rewards = torch.tensor(scored.total, dtype=torch.float32)
        scores = reward_matrix(list(scored.per_function.values()), len(rewards))  # (N, K), NaN: not applicable
        # Every rank's scores, rank-major: scale_rewards=batch and GDPO take statistics of the global batch.
        everyone = self.all_gather(scores.to(self.device)).reshape(-1, scores.shape[1]).cpu()
        weights = torch.tensor(self.reward_set.weights, dtype=torch.float64)
        advantages, zero_std = MULTI_REWARD_ADVANTAGES[g.multi_objective_aggregation](
            everyone, weights, G, g.scale_rewards
        )
        mine = slice(self.global_rank * len(rewards), (self.global_rank + 1) * len(rewards))
        advantages, zero_std = advantages[mine], zero_std[mine.start // G : mine.stop // G]
        t_score = time.perf_counter()

        inputs = self._pack(repeat_each(batch["prompt_ids"], G), rollouts)
        train_metrics = self._optimise(inputs, advantages.to(self.device))
        t_end = time.perf_counter()

        self.batches_trained += 1
        lengths = inputs["completion_mask"].sum(1).float()
        per_group_std = rewards.view(-1, G).std(dim=1)
        metrics = {
            "reward": rewards.mean(),
            "reward_std": per_group_std.mean(),
            "frac_reward_zero_std": zero_std.float().mean(),
            "tokens_per_second": lengths.sum() / max(t_end - t0, 1e-9),  # completion tokens per second of step
            "step_time": torch.tensor(t_end - t0),
            "timing/generate": torch.tensor(t_gen - t0),
            "timing/score": torch.tensor(t_score - t_gen),
            "timing/train": torch.tensor(t_end - t_score),
            "lr": torch.tensor(self.optimizers().param_groups[0]["lr"]),
            **train_metrics,
        }
        for name, values in scored.per_function.items():
            present = [v for v in values if v is not None]
            if present:
                metrics[f"rewards/{name}/mean"] = torch.tensor(sum(present) / len(present))
        for name, value in metrics.items():
            self.log(
                name, value.float().to(self.device), prog_bar=name == "reward", batch_size=len(rollouts), sync_dist=True
            )
        return step_outputs(batch, G, rollouts, scored, advantages)

    def _optimise(self, inputs: dict[str, torch.Tensor], advantages: torch.Tensor) -> dict[str, torch.Tensor]:
        """mu passes of micro-batched forward/backward, one optimizer step per pass.

        Micro-batches follow TRL's gradient accumulation: each micro-batch loss is divided by their number, and
        `dapo` normalises by the active tokens of the whole generation batch (passed per micro-batch share).
        """
        g = self.grpo
        opt = self.optimizers()
        sched = self.lr_schedulers()
        mask = inputs["completion_mask"]
        if g.mask_truncated_completions:
            mask = mask * (~inputs["truncated"]).unsqueeze(1)
        slices = [slice(i, i + g.micro_batch_size) for i in range(0, mask.shape[0], g.micro_batch_size)]
        n_micro = len(slices)
        active_tokens = mask.sum().clamp(min=1)
        # dapo divides by the active tokens of the whole generation batch. DDP averages gradients over ranks, so
        # each rank normalises by the global count divided by the world size (identity on one device).
        global_tokens = self.trainer.strategy.reduce(mask.sum().float(), reduce_op="sum").clamp(min=1)
        dapo_tokens = global_tokens / self.trainer.world_size

        ref_logp = None
        if self.reference is not None:
            with torch.no_grad():
                ref_logp = torch.cat([self._logprobs(self.reference, inputs, s)[0] for s in slices])

        # Sampled by another engine (vLLM): importance sampling against the sampler's log-probs.
        sampler_logp = inputs.get("sampler_logp")
        r = self.rollout_config
        off_policy = (r.off_policy_correction, r.off_policy_cap, r.off_policy_floor)

        # Old log-probs are those of the policy before this batch's first update: exactly what the first pass
        # computes, so passes 2..mu reuse them instead of running a separate no-grad forward.
        old_logp: torch.Tensor | None = None
        sums: dict[str, float] = {}
        for _ in range(g.num_iterations):
            opt.zero_grad(set_to_none=True)
            first_pass: list[torch.Tensor] = []
            for i, s in enumerate(slices):
                begin_micro_batch(self.trainer.strategy, last=i == n_micro - 1)
                logp, entropy = self._logprobs(self.policy, inputs, s, with_entropy=True)
                if old_logp is None:
                    first_pass.append(logp.detach())
                behaviour_logp = old_logp[s] if old_logp is not None else logp.detach()
                is_weights = None
                if sampler_logp is not None:
                    is_weights = importance_weights(behaviour_logp, sampler_logp[s], mask[s], *off_policy)
                loss, metrics = grpo_loss(
                    logp,
                    behaviour_logp,
                    ref_logp[s] if ref_logp is not None else None,
                    advantages[s],
                    mask[s],
                    beta=g.beta,
                    epsilon_low=g.epsilon_low,
                    epsilon_high=g.epsilon_high,
                    loss_type=g.loss_type,
                    max_completion_length=g.max_completion_length,
                    num_active_tokens=dapo_tokens / n_micro,
                    entropy=entropy,
                    entropy_coef=g.entropy_coef,
                    kl_clamp=g.kl_clamp,
                    policy_loss=g.policy_loss,
                    policy_loss_kwargs=g.policy_loss_kwargs,
                    importance_sampling_level=g.importance_sampling_level,
                    is_weights=is_weights,
                    top_entropy_quantile=g.top_entropy_quantile,
                    kl_loss_type=g.kl_loss_type,
                    use_bias_correction_kl=g.use_bias_correction_kl,
                )
                self.manual_backward(loss / n_micro)
                # Token-weighted, so the logged value is the masked mean over the whole generation batch.
                weight = (mask[s].sum() / active_tokens).item()
                sums["loss"] = sums.get("loss", 0.0) + loss.item() / n_micro
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v.item() * weight
            norm = clip_and_step(self.trainer.strategy, self.policy, opt, self.optim.grad_clip)
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + norm.item()
            sched.step()
            old_logp = old_logp if old_logp is not None else torch.cat(first_pass)
        result = {k: torch.tensor(v / g.num_iterations) for k, v in sums.items()}
        if sampler_logp is not None:
            result |= sampler_mismatch(old_logp, sampler_logp, mask, *off_policy)
        return result

    def _logprobs(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], rows: slice, with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return completion_logprobs_and_entropy(
            model,
            inputs["input_ids"][rows],  # (B, Lp + Lc)
            inputs["attention_mask"][rows],
            inputs["completion_ids"][rows],  # (B, Lc)
            self.grpo.temperature,
            shared_prompt=self.grpo.shared_prompt_forward,
            fused_head=self.grpo.fused_lm_head,
            with_entropy=with_entropy,
            entropy_grad=self.grpo.entropy_coef != 0,  # entropy is logged always, but needs a graph only in the loss
        )

    def _pack(self, prompt_ids: list[list[int]], rollouts: Rollouts) -> dict[str, torch.Tensor]:
        """Left-pad prompts and right-pad completions into one (B, Lp + Lc) batch."""
        pad = self.tokenizer.pad_token_id
        lp = max(len(p) for p in prompt_ids)
        lc = max(1, max(len(c) for c in rollouts.completion_ids))
        rows = len(prompt_ids)
        input_ids = torch.full((rows, lp + lc), pad, dtype=torch.long)
        attention = torch.zeros((rows, lp + lc), dtype=torch.long)
        for i, (p, c) in enumerate(zip(prompt_ids, rollouts.completion_ids, strict=True)):
            input_ids[i, lp - len(p) : lp] = torch.tensor(p, dtype=torch.long)
            attention[i, lp - len(p) : lp] = 1
            if c:
                input_ids[i, lp : lp + len(c)] = torch.tensor(c, dtype=torch.long)
                attention[i, lp : lp + len(c)] = 1
        truncated = torch.tensor([r == "length" for r in rollouts.finish_reasons], dtype=torch.bool)
        packed = {}
        if rollouts.logprobs is not None:
            sampler_logp = torch.zeros((rows, lc), dtype=torch.float32)
            for i, values in enumerate(rollouts.logprobs):
                sampler_logp[i, : len(values)] = torch.tensor(values, dtype=torch.float32)
            packed["sampler_logp"] = sampler_logp.to(self.device)
        return packed | {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention.to(self.device),
            "completion_ids": input_ids[:, lp:].to(self.device),
            "completion_mask": attention[:, lp:].to(self.device),
            "truncated": truncated.to(self.device),
        }

    def _step_seed(self, step: int) -> int:
        """Generation seed of a step: a function of (seed, step) only, so a resumed run samples the same."""
        return (self.seed * 1_000_003 + step) % (2**31 - 1)

    # ------------------------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        sampling = SamplingParams(self.grpo.max_completion_length, temperature=0.0, seed=self.seed)
        rollouts = self.engine.generate(batch["prompt_ids"], 1, sampling)
        columns = {k: v for k, v in batch.items() if k != "prompt_ids"}
        prompts = columns.pop("prompts")
        scored = self.reward_set(prompts, rollouts.texts, completion_ids=rollouts.completion_ids, **columns)
        n = len(rollouts)
        self.log("val/reward", float(np.mean(scored.total)), batch_size=n, prog_bar=True, sync_dist=True)
        lengths = [len(c) for c in rollouts.completion_ids]
        self.log("val/completions/mean_length", float(np.mean(lengths)), batch_size=n, sync_dist=True)
        for name, values in scored.per_function.items():
            present = [v for v in values if v is not None]
            if present:
                self.log(f"val/rewards/{name}/mean", float(np.mean(present)), batch_size=len(present), sync_dist=True)

    # ---------------------------------------------------------------------------------- checkpointing
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint[RNG_KEY] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate(),
            "batches_trained": self.batches_trained,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(RNG_KEY)
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(state["python"])
        self.batches_trained = state["batches_trained"]


def step_outputs(
    batch: dict[str, Any], G: int, rollouts: Rollouts, scored: Any, advantages: torch.Tensor
) -> dict[str, Any]:
    """What `training_step` returns: plain lists (no tensors), one entry per completion, prompt-major.

    Keys: `prompts`, `completions`, `completion_ids`, `completion_lengths`, `prompt_lengths`, `finish_reasons`,
    `truncated`, `rewards` (reward name -> values, None where not applicable), `reward` (weighted totals),
    `advantages`, `columns` (the gold fields: task, answer, options, ...) and `num_generations`.
    """
    columns = {k: repeat_each(v, G) for k, v in batch.items() if k not in ("prompt_ids", "prompts")}
    return {
        "prompts": repeat_each(batch["prompts"], G),
        "completions": list(rollouts.texts),
        "completion_ids": rollouts.completion_ids,
        "completion_lengths": [len(c) for c in rollouts.completion_ids],
        "prompt_lengths": repeat_each([len(p) for p in batch["prompt_ids"]], G),
        "finish_reasons": list(rollouts.finish_reasons),
        "truncated": [r == "length" for r in rollouts.finish_reasons],
        "rewards": {name: list(values) for name, values in scored.per_function.items()},
        "reward": list(scored.total),
        "advantages": advantages.tolist(),
        "columns": columns,
        "num_generations": G,
    }


def repeat_each(values: list[Any], n: int) -> list[Any]:
    """[a, b] -> [a, a, b, b] for n=2: the prompt-major layout of a generation batch."""
    return [v for v in values for _ in range(n)]
