"""Policy objectives: per-token losses from the policy's and the sampler's log-probs and the advantages.

Each entry of `POLICY_LOSSES` is a pure function

    objective(logp, old_logp, advantages, mask, *, <settings it uses>) -> ObjectiveOutput(per_token_loss, metrics)

kept apart from the aggregation over tokens (`loss.AGGREGATIONS`), as verl keeps `POLICY_LOSS_REGISTRY` apart from
`agg_loss` (`verl/trainer/ppo/core_algos.py`). An objective declares, as keyword-only parameters, which shared settings
it reads (`importance_sampling_level`, `epsilon_low`, `epsilon_high`, `is_weights`) and its own hyperparameters, with
the defaults of the implementation it follows; `grpo_loss` passes each objective only what it declares
(`objective_settings`), and config validation rejects a setting the chosen objective does not read.

Inputs: `logp` (B, T) with grad and `old_logp` (B, T) detached, both 0 outside `mask`; `advantages` (B, 1) or (B, T);
`mask` (B, T) float. `is_weights` are the off-policy correction weights against the sampler (`correction.py`),
(B, T) or (B, 1), detached: every objective multiplies its loss by them, as TRL 1.16 `_compute_loss` does, except
`vespo`, which folds them into its sequence weight, as TRL does. `per_token_loss` is (B, T), or (B, 1) for a
sequence-level ratio, which the aggregation broadcasts over the sequence's tokens.

The importance ratio `r = exp(log w)` is taken at `importance_sampling_level` (`IMPORTANCE_SAMPLING_LEVELS`):
`token`, `log w_t = logp_t - old_logp_t`; `sequence` (GSPO, Zheng et al. 2025, arXiv 2507.18071), one weight per
sequence, `log w = mean_t (logp_t - old_logp_t)` over its tokens. The GSPO paper's objective is `vanilla` at
sequence level aggregated as `grpo`. verl's `gspo` loss mode builds the same value and gradient per token as
`sg(w) * pi_t / sg(pi_t)`, clipped without a dual clip, and always aggregates it as `seq-mean-token-mean` (our
`grpo`), whatever its `loss_agg_mode` says (checked in `tests/grpo/test_verl_parity.py`). It also clamps `log w`
at 10, where the gradient stops; that changes anything only for a sequence with A < 0 whose mean log-ratio exceeds
10 and no `delta`.

verl references are to `verl/trainer/ppo/core_algos.py` at commit b178a3cd (January 2026), read line by line;
`tests/grpo/test_verl_parity.py` pins each formula on hand-computed numbers. verl clamps `log r` to [-20, 20] in
`vanilla`, `cispo` and `sapo` (not in `gpg`, `clip_cov`, `kl_cov`); TRL clamps nothing and neither do we: `old_logp`
here is the trainer's own log-prob of the batch (the sampler's enters through `is_weights` only), so `|log r| > 20`
would take a policy that moved by a factor e^20 within one generation batch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import torch
from torch import Tensor

SHARED_SETTINGS = ("importance_sampling_level", "epsilon_low", "epsilon_high", "is_weights")
"""Settings that `grpo_loss` owns and passes to each objective that declares them."""


class ObjectiveOutput(NamedTuple):
    per_token_loss: Tensor
    """`(B, T)` or `(B, 1)` loss to minimise, before aggregation; values outside `mask` are ignored."""
    metrics: dict[str, Tensor]
    """Scalars the objective logs (clip fractions and the like), under TRL's or verl's names."""


def token_log_weights(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """PPO/GRPO: one log-ratio per token.  `(B, T) -> (B, T)`."""
    return logp - old_logp


def sequence_log_weights(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """GSPO: the length-normalised log-ratio of the whole sequence, `mean_t (logp_t - old_t)`.  `(B, T) -> (B, 1)`.

    TRL 1.16 `GRPOTrainer._compute_loss`, `importance_sampling_level == "sequence"`.
    """
    log_ratio = (logp - old_logp) * mask  # (B, T)
    return (log_ratio.sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)  # (B, 1)


IMPORTANCE_SAMPLING_LEVELS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "token": token_log_weights,
    "sequence": sequence_log_weights,
}


def level_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of a per-token `(B, T)` statistic over `mask`, or of a per-sequence `(B, 1)` one over all rows.

    TRL's `global_masked_mean` on one process: a sequence-level statistic counts each sequence once.
    """
    x = x.float()
    if x.shape[-1] == 1 and mask.shape[-1] > 1:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def weighted(per_token_loss: Tensor, is_weights: Tensor | None) -> Tensor:
    """The loss times the off-policy correction weights (TRL: `per_token_loss * importance_sampling_ratio`)."""
    return per_token_loss if is_weights is None else per_token_loss * is_weights


def clipped_surrogate(
    ratio: Tensor, advantages: Tensor, epsilon_low: float, epsilon_high: float, delta: float | None = None
) -> Tensor:
    """PPO clipped surrogate with DAPO's asymmetric range, as a per-token loss (to minimise).

    `-min(min(r, delta) A, clip(r, 1 - epsilon_low, 1 + epsilon_high) A)`; the clip is taken of `r` itself, as in
    TRL.  `(B, T) or (B, 1), (B, 1) or (B, T) -> broadcast`.
    """
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    if delta is not None:
        ratio = ratio.clamp(max=delta)
    return -torch.min(ratio * advantages, clipped * advantages)


def clip_fractions(
    ratio: Tensor, advantages: Tensor, mask: Tensor, epsilon_low: float, epsilon_high: float
) -> dict[str, Tensor]:
    """Fractions of active tokens (sequences, for a sequence-level ratio) whose gradient the clip removes, TRL's
    `clip_ratio/*_mean` metrics.

    Low: ratio below `1 - epsilon_low` with A < 0; high: above `1 + epsilon_high` with A > 0; region: either.
    """
    low = (ratio < 1 - epsilon_low) & (advantages < 0)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)
    return {
        "clip_ratio/low_mean": level_mean(low, mask),
        "clip_ratio/high_mean": level_mean(high, mask),
        "clip_ratio/region_mean": level_mean(low | high, mask),
    }


def vanilla(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    importance_sampling_level: str,
    epsilon_low: float,
    epsilon_high: float,
    is_weights: Tensor | None = None,
    delta: float | None = None,
) -> ObjectiveOutput:
    """PPO clipped surrogate (GRPO, Shao et al. 2024; clip-higher from DAPO, Yu et al. 2025), optionally dual-clipped.

        loss = -min(min(r, delta) A, clip(r, 1 - eps_low, 1 + eps_high) A)

    Anchors: TRL 1.16 `GRPOTrainer._compute_loss`, `loss_type in ["grpo", "bnpo", "dr_grpo", "dapo", "luspo"]`;
    verl `compute_policy_loss_vanilla` (loss mode `vanilla`).

    `delta` bounds the ratio of a negative-advantage token, whose clipped loss `-A max(r, clip(r))` is otherwise
    unbounded: TRL's two-sided clipping (`delta`, INTELLECT-2) and verl's dual-clip (`clip_ratio_c`, Ye et al. 2020,
    default 3; `compute_policy_loss_vanilla` L1229-1235) give the same loss and gradient when
    `delta >= 1 + epsilon_high`. Below that they differ and we keep TRL's: for A < 0, TRL's loss is
    `-A max(min(r, delta), clip(r))` and verl's `-A min(c, max(r, clip(r)))`. None: no bound (TRL's default; verl
    always dual-clips, so `delta=3` reproduces verl's default). verl also clamps `log r` to [-20, 20] (L1212); see the
    module docstring for why we do not.
    """
    if delta is not None and not delta > 1:
        raise ValueError(f"delta={delta}: expected > 1 (verl asserts clip_ratio_c > 1; TRL recommends > 1 + epsilon)")
    ratio = torch.exp(IMPORTANCE_SAMPLING_LEVELS[importance_sampling_level](logp, old_logp, mask))
    per_token_loss = clipped_surrogate(ratio, advantages, epsilon_low, epsilon_high, delta)
    if delta is not None:
        ratio = ratio.clamp(max=delta)  # TRL's clip metrics read the ratio after the delta bound
    metrics = clip_fractions(ratio, advantages, mask, epsilon_low, epsilon_high)
    return ObjectiveOutput(weighted(per_token_loss, is_weights), metrics)


def cispo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    importance_sampling_level: str,
    epsilon_high: float,
    is_weights: Tensor | None = None,
) -> ObjectiveOutput:
    """CISPO (MiniMax-M1, arXiv 2506.13585): REINFORCE weighted by the clipped, detached ratio, so no token loses
    its gradient.

        loss = -sg(min(r, epsilon_high)) A logp

    Anchor: TRL 1.16 `GRPOTrainer._compute_loss`, `loss_type == "cispo"` (TRL aggregates it as `dapo`). As in TRL,
    `epsilon_high` is the cap itself, not `1 + epsilon`: ScaleRL recommends 5.0.

    verl's `cispo` (`compute_policy_loss_cispo`, L1722-1779) weighs by `sg(clip(r, 1 - clip_ratio_low,
    1 + clip_ratio_high))`, two-sided around 1 as in the MiniMax-M1 paper, token level only, `log r` clamped to
    [-20, 20], aggregated by its `loss_agg_mode`. Its floor gives a token with `r < 1 - clip_ratio_low` the weight
    `1 - clip_ratio_low` instead of `r`; the two agree when verl's `clip_ratio_low >= 1` (no floor) and
    `epsilon_high = 1 + clip_ratio_high`. We keep TRL's, which `tests/grpo/test_trl_parity.py` checks.
    """
    if not epsilon_high >= 1:
        raise ValueError(
            f"epsilon_high={epsilon_high} is cispo's cap on the importance weight itself (TRL; ScaleRL's eps_max, "
            "5.0 recommended), not 1 + epsilon: expected >= 1"
        )
    ratio = torch.exp(IMPORTANCE_SAMPLING_LEVELS[importance_sampling_level](logp, old_logp, mask))
    per_token_loss = -ratio.clamp(max=epsilon_high).detach() * advantages * logp
    metrics = {"cispo_clip_ratio": level_mean((ratio > epsilon_high) & (advantages > 0), mask)}
    return ObjectiveOutput(weighted(per_token_loss, is_weights), metrics)


def sapo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    importance_sampling_level: str,
    is_weights: Tensor | None = None,
    sapo_temperature_pos: float = 1.0,
    sapo_temperature_neg: float = 1.05,
) -> ObjectiveOutput:
    """SAPO (Soft Adaptive Policy Optimization, arXiv 2511.20347): a smooth sigmoid gate instead of a hard clip.

        loss = -(4 / tau) sigmoid(tau (r - 1)) A,   tau = sapo_temperature_pos if A > 0 else sapo_temperature_neg

    At r = 1 its gradient is the policy gradient `-A grad r`; away from 1 it fades instead of stopping.
    Anchor: TRL 1.16 `GRPOTrainer._compute_loss`, `loss_type == "sapo"` (TRL aggregates it as `grpo`). verl's `sapo`
    (`compute_policy_loss_sapo`, L1330-1411) is the same gate with the same defaults (`tau_pos` 1.0, `tau_neg` 1.05 in
    its `ActorConfig`), at token level only, with `log r` clamped to [-20, 20], and always aggregated as
    `seq-mean-token-mean` (our `grpo`).
    """
    if not (sapo_temperature_pos > 0 and sapo_temperature_neg > 0):
        raise ValueError(f"sapo temperatures {sapo_temperature_pos}, {sapo_temperature_neg}: expected > 0")
    ratio = torch.exp(IMPORTANCE_SAMPLING_LEVELS[importance_sampling_level](logp, old_logp, mask))
    tau = torch.where(advantages > 0, sapo_temperature_pos, sapo_temperature_neg)
    per_token_loss = -torch.sigmoid(tau * (ratio - 1)) * 4 / tau * advantages
    return ObjectiveOutput(weighted(per_token_loss, is_weights), {})


@torch.no_grad()
def gamma_weights(
    advantages: Tensor,
    log_ratio: Tensor,
    mask: Tensor,
    is_weights: Tensor | None,
    k_pos: float,
    lambda_pos: float,
    k_neg: float,
    lambda_neg: float,
) -> Tensor:
    """VESPO's detached sequence weight `phi(w) = exp(lambda + k log w - lambda w)` (so `phi(1) = 1`).  `-> (B, 1)`.

    `log w = sum_t clamp(log r_t, -20, 20)`, plus the log of the off-policy correction weights (each clamped to
    [log 1e-8, 20]), the sum clamped to [log 1e-8, 20]; `k`, `lambda` by the sign of A (A >= 0: `*_pos`).
    TRL 1.16 `GRPOTrainer.get_gamma_weights`.
    """
    lower = math.log(1e-8)
    log_w = (log_ratio.clamp(-20.0, 20.0) * mask).sum(-1, keepdim=True)  # (B, 1)
    if is_weights is not None:
        log_w = log_w + is_weights.log().clamp(lower, 20.0).sum(-1, keepdim=True)
    log_w = log_w.clamp(lower, 20.0)
    nonneg = advantages >= 0
    k = torch.where(nonneg, k_pos, k_neg)
    lam = torch.where(nonneg, lambda_pos, lambda_neg).clamp(min=1e-4)
    return torch.exp(lam + k * log_w - lam * log_w.exp()).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def vespo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    is_weights: Tensor | None = None,
    vespo_k_pos: float = 2.0,
    vespo_lambda_pos: float = 3.0,
    vespo_k_neg: float = 3.0,
    vespo_lambda_neg: float = 2.0,
) -> ObjectiveOutput:
    """VESPO (Variational Sequence-Level Soft Policy Optimization, arXiv 2602.10693): REINFORCE scaled by a smooth,
    asymmetric Gamma weight of the sequence's importance ratio instead of a clip.

        loss = -phi(w) A logp,   phi from `gamma_weights` (detached), w = prod_t r_t times the correction weights

    Anchor: TRL 1.16 `GRPOTrainer._compute_loss`, `loss_type == "vespo"` (TRL aggregates it as `dapo`). The ratio is
    always per token inside `phi`, so `importance_sampling_level` does not apply. TRL refuses sequence-level
    off-policy correction with vespo; here a sequence weight enters `log w` as the sum of its token terms would.
    """
    phi = gamma_weights(
        advantages, logp - old_logp, mask, is_weights, vespo_k_pos, vespo_lambda_pos, vespo_k_neg, vespo_lambda_neg
    )
    return ObjectiveOutput(-phi * advantages * logp, {"vespo/phi_seq_mean": level_mean(phi, mask)})


def gpg(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, is_weights: Tensor | None = None
) -> ObjectiveOutput:
    """GPG (Group Policy Gradient, Chu et al. 2025, arXiv 2504.02546): plain REINFORCE on the group advantage, no
    ratio and no clip.

        loss = -A logp

    Anchor: verl `compute_policy_loss_gpg` (loss mode `gpg`, L1415-1447), aggregated by its `loss_agg_mode`. Its
    gradient equals `vanilla`'s when every batch is used once (mu = 1, r = 1); with mu > 1 nothing keeps the policy
    near the sampler. GPG's advantage is verl's separate `gpg` advantage estimator (`compute_gpg_outcome_advantage`,
    L658-717): `alpha (r - group mean)`, no std division, `alpha = batch size / number of nonzero rewards` (one
    factor per batch). It is not offered here; `grpo.scale_rewards=none` gives the same advantages without `alpha`.
    """
    return ObjectiveOutput(weighted(-advantages * logp, is_weights), {})


def _covariance(advantages: Tensor, logp: Tensor, mask: Tensor) -> Tensor:
    """Per-token centred product `(A - mean A) (logp - mean logp)`, means over `mask`.  `-> (B, T)`, detached."""
    keep = mask.bool()
    advantages = advantages.detach().expand_as(logp)
    logp = logp.detach()
    return (advantages - advantages[keep].mean()) * (logp - logp[keep].mean())


def clip_cov(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    epsilon_low: float,
    epsilon_high: float,
    is_weights: Tensor | None = None,
    clip_cov_ratio: float = 0.0002,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
) -> ObjectiveOutput:
    """Clip-Cov (Cui et al. 2025, "The Entropy Mechanism of RL for Reasoning LMs"): the clipped surrogate, with the
    gradient of a few high-covariance tokens cut to slow entropy collapse.

        cov_t   = (A_t - mean A) (logp_t - mean logp)                       means over the active tokens
        chosen  = up to max(1, floor(clip_cov_ratio * active tokens)) tokens drawn uniformly at random among the
                  active, not already clipped tokens with clip_cov_lb < cov_t < clip_cov_ub
        loss_t  = -min(r_t A, clip(r_t) A) * (0 if t chosen else 1)

    Anchor: verl `compute_policy_loss_clip_cov` (loss mode `clip_cov`, L1451-1552; defaults 0.0002, 1, 5; clip range
    verl's `clip_ratio_low/high`, here `epsilon_low/high`; no dual clip and no `log r` clamp). Token-level ratio only.
    The chosen tokens' loss is multiplied by 0 (value and gradient), as verl's `corr` does. The draw is verl's: one
    `torch.randperm` over the candidates in row-major order, on torch's global CPU generator, none when there is no
    candidate, so a seeded run repeats it. verl logs the chosen share as `actor/pg_clipfrac`, here
    `clip_cov/detached_frac`.
    """
    if not clip_cov_ratio > 0 or not clip_cov_lb < clip_cov_ub:
        raise ValueError(
            f"clip_cov_ratio={clip_cov_ratio}, clip_cov_lb={clip_cov_lb}, clip_cov_ub={clip_cov_ub}: "
            "expected ratio > 0 and lb < ub"
        )
    ratio = torch.exp(logp - old_logp)  # (B, T)
    unclipped, clipped = -advantages * ratio, -advantages * ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    keep = mask.bool()
    cov = _covariance(advantages, logp, mask)  # (B, T)
    candidates = keep & ~(clipped > unclipped) & (cov > clip_cov_lb) & (cov < clip_cov_ub)
    idx = candidates.nonzero()  # (n, 2)
    n_chosen = max(int(clip_cov_ratio * keep.sum().item()), 1)
    idx = idx[torch.randperm(len(idx))[:n_chosen].to(idx.device)]
    detach = torch.zeros_like(ratio, dtype=torch.bool)
    detach[idx[:, 0], idx[:, 1]] = True
    per_token_loss = torch.maximum(unclipped, clipped).masked_fill(detach, 0.0)
    metrics = {"clip_cov/detached_frac": level_mean(detach, mask)}
    return ObjectiveOutput(weighted(per_token_loss, is_weights), metrics)


def kl_cov(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    is_weights: Tensor | None = None,
    kl_cov_ratio: float = 0.0002,
    ppo_kl_coef: float = 1.0,
) -> ObjectiveOutput:
    """KL-Cov (Cui et al. 2025, "The Entropy Mechanism of RL for Reasoning LMs"): the unclipped surrogate, plus a
    penalty on the distance to the sampler for the tokens of highest covariance.

        cov_t  = (A_t - mean A) (logp_t - mean logp)                        means over the active tokens
        top    = the max(1, floor(kl_cov_ratio * active tokens)) active tokens of largest cov_t
        loss_t = -r_t A + (ppo_kl_coef |log r_t| if t in top else 0)

    Anchor: verl `compute_policy_loss_kl_cov` (loss mode `kl_cov`, L1556-1632; no clip, no `log r` clamp). Token-level
    ratio only. Defaults: `kl_cov_ratio` 0.0002 as verl; `ppo_kl_coef` 1, the fallback in `core_algos` (L1592) and the
    value the paper's verl recipes set, whereas verl's `PolicyLossConfig` defaults it to 0.1: set 0.1 to match a verl
    run that leaves it unset.
    """
    if not kl_cov_ratio > 0:
        raise ValueError(f"kl_cov_ratio={kl_cov_ratio}: expected > 0")
    log_ratio = logp - old_logp  # (B, T)
    per_token_loss = -advantages * log_ratio.exp()  # (B, T)
    keep = mask.bool()
    top = torch.zeros_like(keep)
    n_active = int(keep.sum().item())
    if n_active:
        cov = _covariance(advantages, logp, mask)[keep]  # (n_active,)
        chosen = cov.topk(max(1, int(n_active * kl_cov_ratio))).indices
        top.view(-1)[keep.view(-1).nonzero().squeeze(1)[chosen]] = True
    per_token_loss = torch.where(top, per_token_loss + ppo_kl_coef * log_ratio.abs(), per_token_loss)
    return ObjectiveOutput(weighted(per_token_loss, is_weights), {"kl_cov/penalised_frac": level_mean(top, mask)})


POLICY_LOSSES: dict[str, Callable[..., ObjectiveOutput]] = {
    "vanilla": vanilla,
    "cispo": cispo,
    "sapo": sapo,
    "vespo": vespo,
    "gpg": gpg,
    "clip_cov": clip_cov,
    "kl_cov": kl_cov,
}


@cache
def objective_settings(policy_loss: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`(shared settings it reads, its own hyperparameters)` of a `POLICY_LOSSES` entry, from its signature."""
    names = [
        p.name
        for p in inspect.signature(POLICY_LOSSES[policy_loss]).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    return tuple(n for n in names if n in SHARED_SETTINGS), tuple(n for n in names if n not in SHARED_SETTINGS)
