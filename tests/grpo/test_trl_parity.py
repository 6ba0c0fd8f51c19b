"""Our loss, gradients and metrics equal TRL's `GRPOTrainer._compute_loss` on the same tiny models and batch.

TRL's method runs unbound on a stand-in `self` carrying only the attributes it reads, so no trainer, tokenizer,
dataset or hub access is needed. TRL scores tokens with its own fused LM head (`add_fused_lm_head`); we score the same
models' full logits with `completion_logprobs`, so the log-prob code is compared too, not shared.
"""

import copy
import os
from collections import defaultdict
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")
trl_utils = pytest.importorskip("trl.trainer.utils")
transformers = pytest.importorskip("transformers")

from medzero_pl.grpo import completion_logprobs, group_advantages, grpo_loss, token_entropy  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402

TEMPERATURE = 0.7
MAX_COMPLETION_LENGTH = 8
EPS_LOW, EPS_HIGH = 0.2, 0.28
METRICS = ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "entropy", "kl"]


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
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.04 * torch.randn_like(p))
    for m in (policy, ref, old):
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
    return SimpleNamespace(policy=policy, ref=ref, old=old, batch=batch)


def _stand_in(loss_type, beta, entropy_coef, grad_accum):
    """The attributes `_compute_loss` and `_get_per_token_logps_and_entropies` read, at TRL's defaults otherwise."""
    accelerator = SimpleNamespace(
        autocast=nullcontext,
        gather=lambda x: x,
        gather_for_metrics=lambda x: x,
        reduce=lambda x, reduction: x,
        num_processes=1,
        is_main_process=True,
        sync_gradients=True,
    )
    args = SimpleNamespace(
        use_bias_correction_kl=False, delta=None, steps_per_generation=grad_accum, report_to=[], entropy_target=None
    )
    cls = type(
        "GRPOStandIn",
        (),
        {
            "_compute_loss": trl_grpo.GRPOTrainer._compute_loss,
            "_get_per_token_logps_and_entropies": trl_grpo.GRPOTrainer._get_per_token_logps_and_entropies,
            "get_off_policy_mask": staticmethod(trl_grpo.GRPOTrainer.get_off_policy_mask),
        },
    )
    stub = cls()
    stub.__dict__.update(
        accelerator=accelerator,
        args=args,
        model=SimpleNamespace(training=True),
        loss_type=loss_type,
        beta=beta,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        max_completion_length=MAX_COMPLETION_LENGTH,
        importance_sampling_level="token",
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        aux_loss_enabled=False,
        _entropy_bonus_enabled=entropy_coef != 0,
        entropy_coef=entropy_coef,
        use_adaptive_entropy=False,
        current_gradient_accumulation_steps=grad_accum,
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


CASES = [
    pytest.param(loss_type, beta, mu, 0.0, 1, id=f"{loss_type}-beta{beta}-mu{mu}")
    for loss_type in ["grpo", "bnpo", "dr_grpo", "dapo"]
    for beta in [0.0, 0.04]
    for mu in [1, 2]
]
CASES += [
    pytest.param("dapo", 0.04, 2, 0.01, 1, id="dapo-entropy_bonus"),
    pytest.param("grpo", 0.04, 2, 0.01, 1, id="grpo-entropy_bonus"),
]
# With gradient accumulation TRL divides by the accumulation steps itself; Lightning does that for us (see loss.py).
CASES += [pytest.param(t, 0.04, 2, 0.0, 2, id=f"{t}-grad_accum2") for t in ["grpo", "bnpo", "dr_grpo", "dapo"]]


@pytest.mark.parametrize(("loss_type", "beta", "mu", "entropy_coef", "grad_accum"), CASES)
def test_matches_trl(setup, loss_type, beta, mu, entropy_coef, grad_accum):
    batch = dict(setup.batch)
    stub = _stand_in(loss_type, beta, entropy_coef, grad_accum)
    if beta:
        batch["ref_per_token_logps"] = _trl_logps(stub, setup.ref, batch)
    if mu == 2:
        batch["old_per_token_logps"] = _trl_logps(stub, setup.old, batch)

    trl_loss = stub._compute_loss(setup.policy, batch)
    trl_loss.backward()
    trl_grads = _grads(setup.policy)
    trl_metrics = {k: v[-1] for k, v in stub._metrics["train"].items()}

    completion_ids, mask = batch["completion_ids"], batch["completion_mask"]
    with torch.no_grad():
        ref_logp = completion_logprobs(_our_logits(setup.ref, batch), completion_ids, TEMPERATURE) if beta else None
        old_logp = completion_logprobs(_our_logits(setup.old, batch), completion_ids, TEMPERATURE) if mu == 2 else None
    logits = _our_logits(setup.policy, batch)
    loss, metrics = grpo_loss(
        completion_logprobs(logits, completion_ids, TEMPERATURE),
        old_logp,
        ref_logp,
        batch["advantages"],
        mask,
        beta=beta,
        epsilon_low=EPS_LOW,
        epsilon_high=EPS_HIGH,
        loss_type=loss_type,
        max_completion_length=MAX_COMPLETION_LENGTH,
        num_active_tokens=batch["num_items_in_batch"] / grad_accum,  # per micro-batch share, see loss.py
        entropy=token_entropy(logits, TEMPERATURE),
        entropy_coef=entropy_coef,
    )
    loss = loss / grad_accum  # what Lightning's accumulate_grad_batches does
    loss.backward()
    our_grads = _grads(setup.policy)

    torch.testing.assert_close(loss, trl_loss, atol=1e-5, rtol=1e-5)
    for ours, theirs in zip(our_grads, trl_grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    for name in METRICS:
        if name in trl_metrics or name in metrics:
            assert name in trl_metrics and name in metrics, name
            torch.testing.assert_close(metrics[name].item(), trl_metrics[name], atol=1e-5, rtol=1e-5)
    if mu == 2:  # the batch must exercise both clips, or it proves little
        assert trl_metrics["clip_ratio/low_mean"] > 0 and trl_metrics["clip_ratio/high_mean"] > 0
        assert trl_metrics["clip_ratio/region_mean"] < 1
