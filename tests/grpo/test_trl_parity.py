"""Our loss, gradients and metrics equal TRL's `GRPOTrainer._compute_loss` on the same tiny models and batch.

TRL's method runs unbound on a stand-in `self` carrying only the attributes it reads, so no trainer, tokenizer,
dataset or hub access is needed. TRL scores tokens with its own fused LM head (`add_fused_lm_head`); we score the same
models' full logits with `completion_logprobs`, so the log-prob code is compared too, not shared.

Every TRL `loss_type` (an objective and an aggregation, `TRL_LOSS_TYPES`) is run at both importance-sampling levels,
with and without a KL term (bias-corrected, TRL's default) and with mu = 1 and 2; then two-sided clipping (`delta`),
high-entropy token masking, vLLM importance-sampling weights in every mode, and gradient accumulation.
"""

import copy
import os
from collections import defaultdict
from contextlib import nullcontext
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")
trl_utils = pytest.importorskip("trl.trainer.utils")
transformers = pytest.importorskip("transformers")

from medzero_pl.grpo import completion_logprobs, group_advantages, grpo_loss, token_entropy  # noqa: E402
from medzero_pl.grpo.correction import importance_weights  # noqa: E402
from medzero_pl.grpo.loss import TRL_LOSS_TYPES  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402

TEMPERATURE = 0.7
MAX_COMPLETION_LENGTH = 8
EPS_LOW, EPS_HIGH = 0.2, 0.28
CISPO_CAP = 1.1  # TRL's cispo caps the ratio at epsilon_high itself; 1.1 makes the cap bite on this batch
METRICS = [
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "clip_ratio/region_mean",
    "cispo_clip_ratio",
    "vespo/phi_seq_mean",
    "entropy",
    "kl",
]


def _tiny_llama(seed):
    torch.manual_seed(seed)
    config = tiny_config(hidden_size=16, intermediate_size=32, num_attention_heads=2, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(config).float()
    for p in model.parameters():  # HF's init std 0.02 gives ratios ~1 everywhere; widen it so clipping happens
        torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.fixture(scope="module")
def setup():
    policy, ref = _tiny_llama(0), _tiny_llama(1)
    old = copy.deepcopy(policy)  # mu = 2: the sampler is the policy one update earlier
    sampler = copy.deepcopy(policy)  # vLLM's view of the policy that sampled, for importance-sampling weights
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.04 * torch.randn_like(p))
        for p, q in zip(sampler.parameters(), old.parameters(), strict=True):
            p.copy_(q + 0.02 * torch.randn_like(q))
    for m in (policy, ref, old, sampler):
        trl_utils.add_fused_lm_head(m, temperature=TEMPERATURE, outputs=("log_probs", "entropy"))
    g = torch.Generator().manual_seed(0)
    b, p_len, c_len = 6, 4, 6
    prompt_ids = torch.randint(1, 64, (b, p_len), generator=g)
    prompt_mask = torch.ones(b, p_len, dtype=torch.long)
    prompt_mask[0, :2] = prompt_mask[3, :1] = 0  # left padding
    completion_ids = torch.randint(1, 64, (b, c_len), generator=g)
    lengths = torch.tensor([6, 3, 1, 5, 6, 2])
    completion_mask = (torch.arange(c_len) < lengths[:, None]).long()  # right padding
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.9])  # P = 3, G = 2; the middle group has zero std
    batch = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": group_advantages(rewards, group_size=2).advantages,
        # the generation batch this micro-batch came from had more tokens than the micro-batch itself
        "num_items_in_batch": completion_mask.sum() + 17,
    }
    return SimpleNamespace(policy=policy, ref=ref, old=old, sampler=sampler, batch=batch)


class Case(NamedTuple):
    loss_type: str  # TRL's
    level: str = "token"
    beta: float = 0.0
    mu: int = 1
    bias_kl: bool = False
    entropy_coef: float = 0.0
    grad_accum: int = 1
    delta: float | None = None
    top_entropy_quantile: float = 1.0
    is_mode: str | None = None  # our off-policy correction mode: TRL's vllm_importance_sampling_mode
    is_cap: float = 3.0

    @property
    def epsilon_high(self) -> float:
        return CISPO_CAP if self.loss_type == "cispo" else EPS_HIGH


def _stand_in(case: Case):
    """The attributes `_compute_loss` and the methods it calls read, at TRL's defaults otherwise."""
    accelerator = SimpleNamespace(
        autocast=nullcontext,
        gather=lambda x: x,
        gather_for_metrics=lambda x: x,
        reduce=lambda x, reduction: x,
        pad_across_processes=lambda x, dim, pad_index: x,
        num_processes=1,
        is_main_process=True,
        sync_gradients=True,
    )
    args = SimpleNamespace(
        use_bias_correction_kl=case.bias_kl,
        delta=case.delta,
        sapo_temperature_pos=1.0,
        sapo_temperature_neg=1.05,
        vespo_k_pos=2.0,
        vespo_lambda_pos=3.0,
        vespo_k_neg=3.0,
        vespo_lambda_neg=2.0,
        steps_per_generation=case.grad_accum,
        report_to=[],
        entropy_target=None,
    )
    trainer = trl_grpo.GRPOTrainer
    cls = type(
        "GRPOStandIn",
        (),
        {
            "_compute_loss": trainer._compute_loss,
            "_get_per_token_logps_and_entropies": trainer._get_per_token_logps_and_entropies,
            "get_high_entropy_mask": trainer.get_high_entropy_mask,
            "get_off_policy_mask": staticmethod(trainer.get_off_policy_mask),
            "get_gamma_weights": staticmethod(trainer.get_gamma_weights),
        },
    )
    stub = cls()
    stub.__dict__.update(
        accelerator=accelerator,
        args=args,
        model=SimpleNamespace(training=True),
        loss_type=case.loss_type,
        beta=case.beta,
        epsilon_low=EPS_LOW,
        epsilon_high=case.epsilon_high,
        max_completion_length=MAX_COMPLETION_LENGTH,
        importance_sampling_level=case.level,
        top_entropy_quantile=case.top_entropy_quantile,
        off_policy_mask_threshold=None,
        use_vllm=case.is_mode is not None,
        vllm_importance_sampling_correction=case.is_mode is not None,
        aux_loss_enabled=False,
        _entropy_bonus_enabled=case.entropy_coef != 0,
        entropy_coef=case.entropy_coef,
        use_adaptive_entropy=False,
        current_gradient_accumulation_steps=case.grad_accum,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    return stub


def _trl_logps(stub, model, batch):
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, _, _ = stub._get_per_token_logps_and_entropies(model, ids, mask, batch["completion_ids"].size(1))
    return logps


def _our_logits(model, batch):
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    c = batch["completion_ids"].size(1)
    return model(input_ids=ids, attention_mask=mask).logits[:, -c - 1 : -1]  # (B, C, V), logits[:, t] -> token t


def _grads(model):
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return grads


def _id(case: Case) -> str:
    defaults = Case(case.loss_type)
    extras = [f"{f}={getattr(case, f)}" for f in Case._fields[1:] if getattr(case, f) != getattr(defaults, f)]
    return "-".join([case.loss_type, *extras])


# Every TRL loss type at both levels, beta 0 / > 0 (with TRL's default bias-corrected KL) and mu 1 / 2.
CASES = [
    Case(t, level, beta, mu, bias_kl=beta > 0)
    for t in TRL_LOSS_TYPES
    for level in ["token", "sequence"]
    for beta in [0.0, 0.04]
    for mu in [1, 2]
]
# The plain k3 term (medzero_pl's default), for every aggregation.
CASES += [Case(t, beta=0.04, mu=mu) for t in ["grpo", "bnpo", "dr_grpo", "dapo", "luspo"] for mu in [1, 2]]
CASES += [Case(t, beta=0.04, mu=2, entropy_coef=0.01) for t in ["dapo", "grpo", "sapo"]]
# With gradient accumulation TRL divides by the accumulation steps itself; Lightning does that for us (see loss.py).
CASES += [Case(t, beta=0.04, mu=2, grad_accum=2) for t in TRL_LOSS_TYPES]
# Two-sided clipping, above and below 1 + epsilon_high (TRL clips the unbounded ratio, then bounds it by delta).
CASES += [Case(t, beta=0.04, mu=2, delta=d) for t in ["dapo", "grpo"] for d in [1.5, 1.2]]
CASES += [Case("dapo", "sequence", 0.04, 2, delta=1.2)]
# Only the top 20% of tokens by entropy train, the entropy bonus included.
CASES += [Case(t, beta=0.04, mu=2, entropy_coef=0.01, top_entropy_quantile=0.2) for t in ["dapo", "sapo", "cispo"]]
CASES += [Case("grpo", "sequence", 0.04, 2, bias_kl=True, top_entropy_quantile=0.2)]
# vLLM importance-sampling weights: every mode, and vespo folding token weights into its sequence weight.
CASES += [
    Case("dapo", beta=0.04, mu=2, is_mode=m, is_cap=c)
    for m in ["token", "sequence", "token_mask", "sequence_mask"]
    for c in [1.05, 3.0]
]
CASES += [Case(t, mu=2, is_mode=m, is_cap=1.05) for t in ["vespo", "cispo", "sapo"] for m in ["token", "token_mask"]]
CASES += [Case("grpo", "sequence", 0.04, 2, bias_kl=True, is_mode="sequence_mask", is_cap=1.05)]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_trl(setup, case):
    batch = dict(setup.batch)
    stub = _stand_in(case)
    if case.beta:
        batch["ref_per_token_logps"] = _trl_logps(stub, setup.ref, batch)
    if case.mu == 2:
        batch["old_per_token_logps"] = _trl_logps(stub, setup.old, batch)

    completion_ids, mask = batch["completion_ids"], batch["completion_mask"]
    with torch.no_grad():
        ref_logp = (
            completion_logprobs(_our_logits(setup.ref, batch), completion_ids, TEMPERATURE) if case.beta else None
        )
        old_logp = (
            completion_logprobs(_our_logits(setup.old, batch), completion_ids, TEMPERATURE) if case.mu == 2 else None
        )
    logits = _our_logits(setup.policy, batch)
    logp = completion_logprobs(logits, completion_ids, TEMPERATURE)
    is_weights = None
    if case.is_mode:  # the same weights go to both: TRL computes them outside `_compute_loss`
        sampler_logp = _trl_logps(stub, setup.sampler, batch) * mask
        behaviour = old_logp if old_logp is not None else logp.detach()
        is_weights = importance_weights(behaviour, sampler_logp, mask, case.is_mode, case.is_cap)
        batch["importance_sampling_ratio"] = is_weights

    trl_loss = stub._compute_loss(setup.policy, batch)
    trl_loss.backward()
    trl_grads = _grads(setup.policy)
    trl_metrics = {k: v[-1] for k, v in stub._metrics["train"].items()}

    policy_loss, loss_type = TRL_LOSS_TYPES[case.loss_type]
    loss, metrics = grpo_loss(
        logp,
        old_logp,
        ref_logp,
        batch["advantages"],
        mask,
        beta=case.beta,
        epsilon_low=EPS_LOW,
        epsilon_high=case.epsilon_high,
        loss_type=loss_type,
        policy_loss=policy_loss,
        policy_loss_kwargs={"delta": case.delta} if case.delta else None,
        importance_sampling_level=case.level,
        is_weights=is_weights,
        max_completion_length=MAX_COMPLETION_LENGTH,
        num_active_tokens=batch["num_items_in_batch"] / case.grad_accum,  # per micro-batch share, see loss.py
        entropy=token_entropy(logits, TEMPERATURE),
        entropy_coef=case.entropy_coef,
        top_entropy_quantile=case.top_entropy_quantile,
        use_bias_correction_kl=case.bias_kl,
    )
    loss = loss / case.grad_accum  # what Lightning's accumulate_grad_batches does
    loss.backward()
    our_grads = _grads(setup.policy)

    torch.testing.assert_close(loss, trl_loss, atol=1e-5, rtol=1e-5)
    for ours, theirs in zip(our_grads, trl_grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    for name in METRICS:
        if name in trl_metrics or name in metrics:
            assert name in trl_metrics and name in metrics, name
            torch.testing.assert_close(metrics[name].item(), trl_metrics[name], atol=1e-5, rtol=1e-5)
    # The batch must exercise what the case is about, or it proves little.
    if case.mu == 2 and policy_loss == "vanilla" and case.level == "token" and case.delta is None:
        assert trl_metrics["clip_ratio/low_mean"] > 0 and trl_metrics["clip_ratio/high_mean"] > 0
        assert trl_metrics["clip_ratio/region_mean"] < 1
    if case.mu == 2 and case.loss_type == "cispo" and case.level == "token":
        assert 0 < trl_metrics["cispo_clip_ratio"] < 1
    if case.delta is not None and case.level == "token":  # a bound below 1 + epsilon_high leaves none to high-clip
        assert (trl_metrics["clip_ratio/high_mean"] > 0) == (case.delta > 1 + EPS_HIGH)
    if case.top_entropy_quantile < 1:
        assert 0 < metrics["entropy_mask/kept_frac"] < 0.5
    if case.is_mode and case.is_cap < 2:
        assert is_weights.min() < 1 < is_weights.max() or (is_weights == 0).any(), is_weights
