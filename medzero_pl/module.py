"""GRPOModule: the policy, an optional frozen reference, and one GRPO step per generation batch.

A training step reads: rollout -> reward (-> dynamic sampling: keep the groups whose rewards differ, drawing more
prompts) -> group advantage -> mu optimisation passes -> log. The math lives in
`medzero_pl.grpo`, the rewards in `medzero_pl.rewards`, generation behind `RolloutEngine`; this file wires them.

Departures from the GRPO paper (all configurable, see `GRPOConfig`): token-level DAPO aggregation by default,
clip-higher (epsilon_high > epsilon_low), no KL term unless `beta > 0`, and no separate forward pass for old
log-probs: with mu = 1 the ratio is taken against the detached current log-probs (exactly 1), and with mu > 1
the first pass's log-probs (the policy before any update of the batch) serve the later passes.

Public surface used by callbacks: `policy`, `tokenizer`, `engine` (swap it to change how rollouts are made),
`sampling` and `grpo_step`, the run's one step counter (GRPO steps trained; Lightning's `trainer.global_step` counts
optimizer steps, `grpo_step x grpo.num_iterations`), and `data_position`, the batches drawn from the data stream,
where it resumes (the step pulls its batches from Lightning's `dataloader_iter`, since dynamic sampling draws more
than one). An engine with its
own copy of the weights (vLLM) is kept current by `callbacks.weight_sync.WeightSync`, the only caller of
`engine.update_weights` in a run. `training_step` returns the step's results as a plain dict (see `step_outputs`),
which Lightning hands to `Callback.on_train_batch_end(..., outputs, ...)`: statistics, samples and evaluation
callbacks read that, not attributes of the module.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass, replace
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule

from medzero_pl.errors import ConfigError
from medzero_pl.grpo import MULTI_REWARD_ADVANTAGES, grpo_loss, reward_matrix
from medzero_pl.grpo.config import GRPOConfig
from medzero_pl.grpo.correction import importance_weights, sampler_mismatch
from medzero_pl.grpo.dynamic_sampling import CapWatch, GroupCounts
from medzero_pl.grpo.metrics import step_metrics
from medzero_pl.model.forward import completion_logprobs_and_entropy, pack, pad_rows
from medzero_pl.model.loading import ModelConfig, load_causal_lm, load_tokenizer, resolve_model
from medzero_pl.optim import OptimConfig, build_optimizer
from medzero_pl.redaction import redact_secrets
from medzero_pl.rewards import RewardOutput, RewardSpec, build_rewards
from medzero_pl.rollout import Placement, RolloutConfig, build_engine
from medzero_pl.rollout.base import RolloutEngine, Rollouts, SamplingParams, repeat_each
from medzero_pl.rollout.dynamic import Batch, SampledGroups, ScoredGroups, sample_informative_groups
from medzero_pl.strategies import begin_micro_batch, clip_and_step, prepare_reference, trained_dtype, unsharded_init

RNG_KEY = "medzero_rng"
log = logging.getLogger(__name__)
# The step pulls its own batches (one, or more under dynamic sampling) and counts them in `data_position`; Lightning
# calls this step flavour experimental and warns on every run.
warnings.filterwarnings("ignore", message=".*`dataloader_iter`.*", category=UserWarning)


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
        self.grpo_step = 0
        """GRPO steps trained (generation batches), saved in checkpoints: the run's one step counter."""
        self.data_position = 0
        """Batches drawn from the data stream, saved in checkpoints; the stream resumes here. Equal to `grpo_step`
        unless `grpo.dynamic_sampling` draws extra batches."""
        self._cap_watch = CapWatch(self.grpo.dynamic_sampling.warn_after)
        metric = self.grpo.dynamic_sampling.metric
        if self.grpo.dynamic_sampling.enable and metric != "total" and metric not in self.reward_set.names:
            raise ConfigError(
                f"grpo.dynamic_sampling.metric={metric!r}: expected total or one of the run's rewards "
                f"({', '.join(self.reward_set.names)})"
            )

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
        return build_optimizer(self.policy.parameters(), self.optim, self.trainer.max_steps)  # GRPO steps x mu

    def on_fit_start(self) -> None:
        if self.reference is not None:  # sharded in its own engine under ZeRO-3, else moved to the device
            object.__setattr__(self, "reference", prepare_reference(self.trainer.strategy, self.reference))

    @property
    def sampling(self) -> SamplingParams:
        """Training-time sampling; each step replaces `seed` with one derived from (seed, step)."""
        g = self.grpo
        return SamplingParams(g.max_completion_length, g.temperature, g.top_p, g.top_k, seed=None)

    # -------------------------------------------------------------------------------------- training
    def training_step(self, dataloader_iter: Iterator[tuple[Batch, int, int]]) -> dict[str, Any]:
        G = self.grpo.num_generations
        seconds = {"generate": 0.0, "score": 0.0}
        sampled = self._sample_groups(dataloader_iter, seconds)  # rollout -> reward (-> dynamic sampling)
        rows, rollouts, scored = sampled.groups.rows, sampled.groups.rollouts, sampled.groups.scored
        self.engine.sleep()  # frees a vLLM engine's GPU memory while training (sleep mode only); no-op otherwise

        t_advantage = time.perf_counter()
        rewards = torch.tensor(scored.total, dtype=torch.float32)
        advantages, zero_std = self._group_advantages(scored)
        t_train = time.perf_counter()
        seconds["score"] += t_train - t_advantage

        inputs = self._pack(rows["prompt_ids"], rollouts)
        train_metrics = self._optimise(inputs, advantages.to(self.device))
        seconds["train"] = time.perf_counter() - t_train
        self.grpo_step += 1

        lengths = inputs["completion_mask"].sum(1)
        metrics = (
            step_metrics(rewards, G, zero_std, lengths, scored.per_function, seconds, scored.metrics) | train_metrics
        )
        metrics = {name: value.float().to(self.device) for name, value in metrics.items()}
        self.log("reward", metrics.pop("reward"), prog_bar=True, batch_size=len(rollouts), sync_dist=True)
        self.log_dict(metrics, batch_size=len(rollouts), sync_dist=True)
        if self.grpo.dynamic_sampling.enable:  # counts already summed over ranks
            self.log_dict(sampling_metrics(sampled), batch_size=len(rollouts))
        return step_outputs(rows, G, rollouts, scored, advantages)

    def _next_batch(self, dataloader_iter: Iterator[tuple[Batch, int, int]]) -> Batch:
        """The data stream's next batch (this rank's share), counted in `data_position`."""
        batch, _, _ = next(dataloader_iter)
        self.data_position += 1
        return batch

    def _sample_groups(
        self, dataloader_iter: Iterator[tuple[Batch, int, int]], seconds: dict[str, float]
    ) -> SampledGroups:
        """One batch's scored groups; under `grpo.dynamic_sampling`, its informative groups, drawing more batches."""
        first = self._next_batch(dataloader_iter)
        G, dynamic = self.grpo.num_generations, self.grpo.dynamic_sampling

        def rollout(batch: Batch, draw: int) -> ScoredGroups:
            t0 = time.perf_counter()
            sampling = replace(self.sampling, seed=self._step_seed(self.grpo_step, draw))
            rollouts = self.engine.generate(batch["prompt_ids"], G, sampling)
            t1 = time.perf_counter()
            rows = {key: repeat_each(values, G) for key, values in batch.items()}  # one row per completion
            scored = self.reward_set.score(rows, rollouts.texts, rollouts.completion_ids)
            seconds["generate"] += t1 - t0
            seconds["score"] += time.perf_counter() - t1
            return ScoredGroups(rows, rollouts, scored)

        if not dynamic.enable:
            groups = rollout(first, 0)
            return SampledGroups(groups, GroupCounts(), draws=1, cap_hit=False)
        sampled = sample_informative_groups(
            first,
            lambda: self._next_batch(dataloader_iter),
            rollout,
            lambda counts: self.all_gather(counts.to(self.device)).reshape(-1, counts.numel()).cpu(),
            group_size=G,
            metric=dynamic.metric,
            max_extra_draws=dynamic.max_extra_draws,
            correct_at=dynamic.correct_at,
        )
        if (warning := self._cap_watch.update(sampled.cap_hit, sampled.counts)) and self.global_rank == 0:
            log.warning(warning)
        return sampled

    def _group_advantages(self, scored: RewardOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's advantages `(B,)` and zero-std flags `(B / G,)`, computed over every rank's per-reward scores
        (rank-major), so `scale_rewards=batch` and GDPO take statistics of the global batch."""
        g, G = self.grpo, self.grpo.num_generations
        scores = reward_matrix(list(scored.per_function.values()), len(scored.total))  # (B, K), NaN: not applicable
        everyone = self.all_gather(scores.to(self.device)).reshape(-1, scores.shape[1]).cpu()
        weights = torch.tensor(self.reward_set.weights, dtype=torch.float64)
        aggregate = MULTI_REWARD_ADVANTAGES[g.multi_objective_aggregation]
        advantages, zero_std = aggregate(everyone, weights, G, g.scale_rewards)
        mine = slice(self.global_rank * len(scored.total), (self.global_rank + 1) * len(scored.total))
        return advantages[mine], zero_std[mine.start // G : mine.stop // G]

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
        off_policy = (g.off_policy_correction, g.off_policy_cap, g.off_policy_floor)

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
        """`forward.pack`'s batch on this device, with the truncation flags and the sampler's log-probs (if any)."""
        packed = pack(prompt_ids, rollouts.completion_ids, self.tokenizer.pad_token_id)
        packed["truncated"] = torch.tensor([r == "length" for r in rollouts.finish_reasons], dtype=torch.bool)
        if rollouts.logprobs is not None:
            width = packed["completion_ids"].shape[1]
            packed["sampler_logp"] = pad_rows(rollouts.logprobs, 0.0, width=width, dtype=torch.float32)[0]
        return {name: tensor.to(self.device) for name, tensor in packed.items()}

    def _step_seed(self, step: int, draw: int = 0) -> int:
        """Generation seed of a step's `draw`-th batch: a function of (seed, step, draw) only, so a resumed run
        samples the same."""
        return (self.seed * 1_000_003 + step + draw * 7_919_131) % (2**31 - 1)

    # ------------------------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        sampling = SamplingParams(self.grpo.max_completion_length, temperature=0.0, seed=self.seed)
        rollouts = self.engine.generate(batch["prompt_ids"], 1, sampling)
        scored = self.reward_set.score(batch, rollouts.texts, rollouts.completion_ids)
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
            "grpo_step": self.grpo_step,
            "data_position": self.data_position,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(RNG_KEY)
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(state["python"])
        self.grpo_step = state["grpo_step"] if "grpo_step" in state else state["batches_trained"]  # an older save
        self.data_position = state.get("data_position", self.grpo_step)  # saved before dynamic sampling: one each


def sampling_metrics(sampled: SampledGroups) -> dict[str, float]:
    """Dynamic sampling's per-step counts, summed over ranks, under `dynamic_sampling/`: `groups_drawn`,
    `groups_kept` (informative groups found, before keeping the step's share), `all_correct`, `all_wrong`, `draws`
    (batches drawn) and `cap_hit` (1 when the cap stopped the search)."""
    c = sampled.counts
    return {
        "dynamic_sampling/groups_drawn": float(c.drawn),
        "dynamic_sampling/groups_kept": float(c.kept),
        "dynamic_sampling/all_correct": float(c.all_correct),
        "dynamic_sampling/all_wrong": float(c.all_wrong),
        "dynamic_sampling/draws": float(sampled.draws),
        "dynamic_sampling/cap_hit": float(sampled.cap_hit),
    }


def step_outputs(
    rows: dict[str, list[Any]], G: int, rollouts: Rollouts, scored: RewardOutput, advantages: torch.Tensor
) -> dict[str, Any]:
    """What `training_step` returns: plain lists (no tensors), one entry per completion, prompt-major.

    Keys: `prompts`, `completions`, `completion_ids`, `completion_lengths`, `prompt_lengths`, `finish_reasons`,
    `truncated`, `rewards` (reward name -> values, None where not applicable), `reward` (weighted totals),
    `advantages`, `columns` (the gold fields: task, answer, options, ...) and `num_generations`.
    """
    return {
        "prompts": rows["prompts"],
        "completions": list(rollouts.texts),
        "completion_ids": rollouts.completion_ids,
        "completion_lengths": [len(c) for c in rollouts.completion_ids],
        "prompt_lengths": [len(p) for p in rows["prompt_ids"]],
        "finish_reasons": list(rollouts.finish_reasons),
        "truncated": [r == "length" for r in rollouts.finish_reasons],
        "rewards": {name: list(values) for name, values in scored.per_function.items()},
        "reward": list(scored.total),
        "advantages": advantages.tolist(),
        "columns": {key: values for key, values in rows.items() if key not in ("prompt_ids", "prompts")},
        "num_generations": G,
    }
