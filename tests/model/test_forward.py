"""The training forward: trimming, the shared-prompt forward and the fused LM head give the plain forward's log-probs,
loss and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning.pytorch import Callback

from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.grpo import AGGREGATIONS, completion_logprobs, grpo_loss
from medzero_pl.model.forward import completion_logprobs_and_entropy, pack, pad_rows, prompt_groups, trim_columns
from medzero_pl.model.loading import load_causal_lm
from tests.tiny import tiny_llama
from tests.toy_task import toy_overrides

TEMPERATURE = 0.7
TOL = 1e-5


def _model(seed: int) -> torch.nn.Module:
    model = tiny_llama(seed).float()
    for p in model.parameters():  # wider than HF's init, so log-probs and ratios vary across tokens
        torch.nn.init.normal_(p, std=0.3)
    return model


def _batch(prompt_lengths=(7, 4, 2), completion_lengths=(5, 3, 0, 2, 4, 1), group=2, width=7, seed=1):
    """Prompt-major rows: `group` completions per prompt, prompts left-padded to `width`, completions right-padded."""
    g = torch.Generator().manual_seed(seed)
    rows, n_completion = len(completion_lengths), max(completion_lengths) + 2  # two all-pad completion columns
    ids = torch.zeros(rows, width + n_completion, dtype=torch.long)
    attn = torch.zeros_like(ids)
    prompts = [torch.randint(3, 64, (k,), generator=g) for k in prompt_lengths]
    for i, c in enumerate(completion_lengths):
        prompt = prompts[i // group]
        ids[i, width - len(prompt) : width], attn[i, width - len(prompt) : width] = prompt, 1
        ids[i, width : width + c], attn[i, width : width + c] = torch.randint(3, 64, (c,), generator=g), 1
    return ids, attn, ids[:, width:], attn[:, width:]


def test_rows_with_the_same_prompt_form_one_group():
    ids, attn, _, _ = _batch(group=2)
    group, first = prompt_groups(ids[:, :7], attn[:, :7])
    assert group.tolist() == [0, 0, 1, 1, 2, 2] and first.tolist() == [0, 2, 4]
    group, first = prompt_groups(ids[1:4, :7], attn[1:4, :7])  # a micro-batch cutting across groups
    assert group.tolist() == [0, 1, 1] and first.tolist() == [0, 1]


def test_trimming_keeps_only_columns_holding_a_token():
    _, attn, _, _ = _batch(prompt_lengths=(4, 2, 2))  # at most 4 of 7 prompt columns are used
    assert trim_columns(attn, n_completion=7) == (3, 5)
    assert trim_columns(torch.tensor([[0, 1, 0, 0]]), n_completion=2) == (1, 1)  # empty completions keep one column


FORWARDS = {"shared": (True, False), "fused-head": (False, True), "shared+fused-head": (True, True)}


@pytest.mark.parametrize("shared,fused", [(False, False), *FORWARDS.values()], ids=["plain", *FORWARDS])
def test_log_probs_equal_the_untrimmed_full_forward(shared, fused):
    model = _model(0)
    ids, attn, completion_ids, completion_mask = _batch(prompt_lengths=(4, 3, 2))
    logp, _ = completion_logprobs_and_entropy(
        model, ids, attn, completion_ids, TEMPERATURE, shared_prompt=shared, fused_head=fused
    )
    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=completion_ids.shape[1] + 1).logits[:, :-1]
    expected = completion_logprobs(logits, completion_ids, TEMPERATURE)
    torch.testing.assert_close(logp * completion_mask, expected * completion_mask, atol=TOL, rtol=0)
    assert (logp[:, 5:] == 0).all()  # past the longest completion: trimmed, zero


def _micro_batched_loss_and_grads(model, ref, old, batch, loss_type, shared, fused, micro_batch):
    """One GRPO pass as the module runs it (reference log-probs, old log-probs of mu = 2, micro-batches)."""
    ids, attn, completion_ids, mask = batch
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0, 0.3])
    model.zero_grad(set_to_none=True)
    slices = [slice(i, i + micro_batch) for i in range(0, len(ids), micro_batch)]
    total, logps = 0.0, []
    for s in slices:

        def forward(m, grad=True, s=s):
            with torch.set_grad_enabled(grad):
                args = (m, ids[s], attn[s], completion_ids[s], TEMPERATURE)
                return completion_logprobs_and_entropy(
                    *args, shared_prompt=shared, fused_head=fused, with_entropy=True, entropy_grad=True
                )

        logp, entropy = forward(model)
        loss, _ = grpo_loss(
            logp,
            forward(old, grad=False)[0],
            forward(ref, grad=False)[0],
            advantages[s],
            mask[s],
            beta=0.04,
            epsilon_low=0.2,
            epsilon_high=0.28,
            loss_type=loss_type,
            max_completion_length=ids.shape[1],
            num_active_tokens=mask.sum() / len(slices),
            entropy=entropy,
            entropy_coef=0.01,
        )
        (loss / len(slices)).backward()
        total += loss.item() / len(slices)
        logps.append(logp.detach())
    return total, torch.cat(logps), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("shared,fused", FORWARDS.values(), ids=FORWARDS)
@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
@pytest.mark.parametrize("micro_batch", [6, 4, 3], ids=["one", "group-crossing", "group-slices"])
def test_shared_prompt_and_fused_head_give_the_plain_loss_and_gradients(loss_type, micro_batch, shared, fused):
    model, ref = _model(0), _model(1)
    old = copy.deepcopy(model)  # mu = 2: the sampler is the policy one update earlier
    with torch.no_grad():
        for p in old.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = _batch()
    plain = _micro_batched_loss_and_grads(model, ref, old, batch, loss_type, False, False, micro_batch)
    shared = _micro_batched_loss_and_grads(model, ref, old, batch, loss_type, shared, fused, micro_batch)
    assert shared[0] == pytest.approx(plain[0], abs=TOL)
    torch.testing.assert_close(shared[1], plain[1], atol=TOL, rtol=0)
    for name, grad in plain[2].items():
        assert grad.abs().max() > 0, name  # every parameter is reached, the prompt's path through the cache included
        torch.testing.assert_close(shared[2][name], grad, atol=TOL, rtol=TOL, msg=name)


def test_without_the_prompt_cache_gradient_the_embeddings_would_differ():
    """The test above can fail: cutting the cache out of the graph changes the gradients it compares."""
    model = _model(0)
    ids, attn, completion_ids, mask = _batch()
    grads = []
    for detach in (False, True):
        model.zero_grad(set_to_none=True)
        if detach:
            handles = [layer.self_attn.k_proj.register_forward_hook(_detach_if_long) for layer in model.model.layers]
        logp, _ = completion_logprobs_and_entropy(model, ids, attn, completion_ids, TEMPERATURE, shared_prompt=True)
        (logp * mask).sum().backward()
        grads.append(model.model.embed_tokens.weight.grad.clone())
        if detach:
            for h in handles:
                h.remove()
    assert not torch.allclose(grads[0], grads[1], atol=TOL)


def _detach_if_long(module, inputs, output):
    return output.detach() if output.shape[1] > 5 else output  # the prompt pass (the completion pass is 5 long)


def test_the_shared_prompt_forward_looks_up_the_input_embeddings_once():
    """Each lookup's backward writes a dense (vocab, d) embedding gradient: one lookup serves both passes."""
    model = _model(0)
    ids, attn, completion_ids, mask = _batch()
    calls = []
    model.model.embed_tokens.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape))
    logp, _ = completion_logprobs_and_entropy(model, ids, attn, completion_ids, TEMPERATURE, shared_prompt=True)
    (logp * mask).sum().backward()
    prompt_tokens, completion_tokens = 3 * (7 - 1), 6 * 5  # 3 distinct prompts minus their last token; 6 x 5
    assert calls == [torch.Size([prompt_tokens + completion_tokens])]


def test_gradient_checkpointing_falls_back_to_the_plain_forward():
    model = _model(0).train()
    model.gradient_checkpointing_enable()
    ids, attn, completion_ids, mask = _batch()
    grads = []
    for shared in (False, True):
        model.zero_grad(set_to_none=True)
        logp, _ = completion_logprobs_and_entropy(model, ids, attn, completion_ids, TEMPERATURE, shared_prompt=shared)
        (logp * mask).sum().backward()
        grads.append(model.model.embed_tokens.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], atol=TOL, rtol=TOL)


def _train(toy, run_dir, shared: bool, fused: bool) -> tuple[dict[str, torch.Tensor], list[float]]:
    settings = {
        "trainer.max_steps": 2,
        "grpo.num_generations": 4,
        "data.prompts_per_step": 3,
        "grpo.micro_batch_size": 6,  # crosses groups: 3 prompts x 4 rows in micro-batches of 6
        "grpo.num_iterations": 2,
        "grpo.beta": 0.04,
        "grpo.shared_prompt_forward": str(shared).lower(),
        "grpo.fused_lm_head": str(fused).lower(),
    }
    cfg = compose(toy_overrides(toy, run_dir, **settings))
    trainer, module, datamodule = build(cfg)
    losses: list[float] = []

    class RecordLoss(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            losses.append(trainer.callback_metrics["loss"].item())

    trainer.callbacks.append(RecordLoss())
    trainer.fit(module, datamodule=datamodule)
    return {k: v.clone() for k, v in module.policy.state_dict().items()}, losses


def test_a_run_with_the_shared_prompt_forward_and_fused_head_trains_like_the_plain_one(toy, tmp_path):
    initial = load_causal_lm(str(toy["model"])).state_dict()
    plain_weights, plain_losses = _train(toy, tmp_path / "plain", shared=False, fused=False)
    shared_weights, shared_losses = _train(toy, tmp_path / "shared", shared=True, fused=True)
    assert shared_losses == pytest.approx(plain_losses, abs=TOL)
    # The updates, not the weights, with a relative tolerance: Adam divides each coordinate's gradient by its own
    # running scale, so float noise in a near-zero gradient becomes noise in its update (measured on one host:
    # 1.3e-5 on an update of 0.029 after 4 steps at lr 1e-2, with losses equal to 4e-9).
    for name, tensor in plain_weights.items():
        plain_update, shared_update = tensor - initial[name], shared_weights[name] - initial[name]
        torch.testing.assert_close(shared_update, plain_update, atol=TOL, rtol=1e-3, msg=name)


def test_pack_left_pads_prompts_and_right_pads_completions_after_them():
    packed = pack([[5, 6, 7], [8]], [[1], [2, 3]], pad_id=0)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 1, 0], [0, 0, 8, 2, 3]]
    assert packed["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [0, 0, 1, 1, 1]]
    assert packed["completion_ids"].tolist() == [[1, 0], [2, 3]]
    assert packed["completion_mask"].tolist() == [[1, 0], [1, 1]]
    empty = pack([[5]], [[]], pad_id=0)  # an empty completion still gets one (masked) column
    assert empty["completion_ids"].tolist() == [[0]] and empty["completion_mask"].tolist() == [[0]]


def test_pad_rows_fills_to_a_width_on_either_side():
    values, mask = pad_rows([[0.5], [-1.0, -2.0]], 0.0, width=3, dtype=torch.float32)
    assert values.tolist() == [[0.5, 0.0, 0.0], [-1.0, -2.0, 0.0]] and mask.tolist() == [[1, 0, 0], [1, 1, 0]]
    ids, mask = pad_rows([[4], [5, 6]], 9, side="left")
    assert ids.tolist() == [[9, 4], [5, 6]] and mask.tolist() == [[0, 1], [1, 1]]
