import math

import pytest
import torch

from medzero_pl.grpo import (
    completion_logprobs,
    linear_logprobs_and_entropy,
    logprobs,
    selective_log_softmax,
    token_entropy,
)


def _reference(logits, index, temperature):
    return torch.log_softmax(logits / temperature, dim=-1).gather(-1, index.unsqueeze(-1)).squeeze(-1)


def _inputs(dtype, b=3, t=7, v=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(b, t, v, generator=g)).to(dtype)
    index = torch.randint(0, v, (b, t), generator=g)
    return logits, index


def test_hand_computed():
    # softmax([0, ln 3] / 1) = [1/4, 3/4]; at T=0.5 the logits double: [0, ln 9] -> [1/10, 9/10].
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    index = torch.tensor([[0, 1]])
    torch.testing.assert_close(selective_log_softmax(logits, index), torch.tensor([[math.log(0.25), math.log(0.75)]]))
    torch.testing.assert_close(
        selective_log_softmax(logits, index, temperature=0.5), torch.tensor([[math.log(0.1), math.log(0.9)]])
    )
    torch.testing.assert_close(
        token_entropy(logits[0, :1]), torch.tensor([-(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_rows", [None, 2])
def test_fp32_matches_log_softmax_gather(temperature, chunk_rows):
    logits, index = _inputs(torch.float32)
    logits.requires_grad_(True)
    ours = selective_log_softmax(logits, index, temperature, chunk_rows=chunk_rows)
    ref = _reference(logits, index, temperature)
    torch.testing.assert_close(ours, ref)
    weights = torch.randn_like(ref)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_matches(dtype):
    logits, index = _inputs(dtype)
    logits.requires_grad_(True)
    ours = selective_log_softmax(logits, index, 0.7, chunk_rows=3)
    assert ours.dtype == torch.float32
    # Exact against the float32 reference on the same (rounded) logits; the half-precision reference is itself coarse.
    torch.testing.assert_close(ours, _reference(logits.float(), index, 0.7))
    torch.testing.assert_close(ours, _reference(logits, index, 0.7).float(), atol=0.1, rtol=0.02)
    weights = torch.randn(ours.shape)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    leaf = logits.detach().float().requires_grad_(True)
    (g_ref,) = torch.autograd.grad((_reference(leaf, index, 0.7) * weights).sum(), leaf)
    assert g_ours.dtype == dtype
    torch.testing.assert_close(g_ours.float(), g_ref, atol=1e-2, rtol=1e-2)


def test_gradcheck_float64():
    logits, index = _inputs(torch.float64, b=2, t=4, v=6)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: selective_log_softmax(x, index, 0.7, chunk_rows=3), (logits,))
    assert torch.autograd.gradcheck(lambda x: token_entropy(x, 0.7, chunk_rows=3), (logits,))


def test_non_contiguous_slice_and_flat_rows():
    # Causal-LM alignment: logits[:, P - 1 : -1] is a strided view, scored without a copy of the logits.
    full, ids = _inputs(torch.float32, t=10)
    aligned, completion = full[:, 3:-1], ids[:, 4:]
    assert not aligned.is_contiguous()
    torch.testing.assert_close(completion_logprobs(aligned, completion, 0.7), _reference(aligned, completion, 0.7))
    flat = full.reshape(-1, full.shape[-1])
    torch.testing.assert_close(selective_log_softmax(flat, ids.reshape(-1)), _reference(flat, ids.reshape(-1), 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_entropy_matches_reference(dtype):
    logits, _ = _inputs(dtype)
    logits.requires_grad_(True)
    ours = token_entropy(logits, 0.7, chunk_rows=4)
    leaf = logits.detach().float().requires_grad_(True)
    logp = torch.log_softmax(leaf / 0.7, dim=-1)
    ref = -(logp.exp() * logp).sum(-1)
    torch.testing.assert_close(ours, ref)
    weights = torch.randn(ref.shape)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), leaf)
    tol = {} if dtype == torch.float32 else {"atol": 1e-2, "rtol": 1e-2}
    torch.testing.assert_close(g_ours.float(), g_ref, **tol)


def test_argument_errors():
    logits, index = _inputs(torch.float32)
    with pytest.raises(ValueError, match="temperature"):
        selective_log_softmax(logits, index, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        token_entropy(logits, temperature=-1.0)
    with pytest.raises(ValueError, match="index shape"):
        selective_log_softmax(logits, index[:, :-1])
    with pytest.raises(ValueError, match=r"\(B, C, V\)"):
        completion_logprobs(logits[0], index[0], 1.0)


def _head_gradient_errors(monkeypatch=None, exact_products: bool = True) -> dict[str, float]:
    """Relative errors of the bf16 head's weight and bias gradients against float64 at the same (rounded) inputs,
    through the fused head in 256 blocks of 2 rows and through plain autograd on the full bf16 logits.

    Every row's log-prob gets the same gradient (one advantage over a completion) and the hidden states share a
    direction, as a decoder's do: each block then pulls every head row the same way, and the block sums grow together.
    """
    if monkeypatch is not None:
        monkeypatch.setattr(logprobs, "_exact_products", lambda device: exact_products)
    g = torch.Generator().manual_seed(0)
    n, d, vocab = 512, 64, 4096
    hidden = (torch.randn(n, d, generator=g) + 1).bfloat16()
    weight = (0.05 * torch.randn(vocab, d, generator=g)).bfloat16()
    bias = (0.05 * torch.randn(vocab, generator=g)).bfloat16()
    index = torch.randint(0, vocab, (n,), generator=g)
    grad_logp = torch.full((n,), 0.01)

    def gradients(dtype, fused):
        w, b = weight.to(dtype, copy=True).requires_grad_(), bias.to(dtype, copy=True).requires_grad_()
        h = hidden.to(dtype)
        if fused:
            logp, _ = linear_logprobs_and_entropy(h, w, b, index, chunk_rows=2)
        else:
            logp = selective_log_softmax(torch.nn.functional.linear(h, w, b), index)
        (logp * grad_logp.to(logp.dtype)).sum().backward()
        return w.grad, b.grad

    exact = gradients(torch.float64, fused=False)
    errors = {}
    for name, got in (("fused", gradients(torch.bfloat16, True)), ("plain", gradients(torch.bfloat16, False))):
        for part, value, ref in zip(("weight", "bias"), got, exact, strict=True):
            assert value.dtype == torch.bfloat16
            errors[f"{name} {part}"] = ((value.double() - ref).norm() / ref.norm()).item()
    return errors


def test_bf16_head_gradient_over_many_blocks_is_as_precise_as_one_matmul_on_the_full_logits():
    errors = _head_gradient_errors()
    for part in ("weight", "bias"):
        assert errors[f"fused {part}"] <= errors[f"plain {part}"], errors
    assert errors["plain weight"] < 0.004, errors  # bf16's own rounding, not accumulation


def test_bf16_head_gradient_with_half_precision_block_products_stays_near_one_matmul(monkeypatch):
    """The GPU arithmetic (each block's product rounded to bf16 once, summed in float32), run on CPU."""
    errors = _head_gradient_errors(monkeypatch, exact_products=False)
    for part in ("weight", "bias"):
        assert errors[f"fused {part}"] <= 1.5 * errors[f"plain {part}"], errors
