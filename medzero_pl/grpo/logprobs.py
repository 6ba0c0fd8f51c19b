"""Per-token log-probabilities and entropies of sampled tokens, without a full float32 log-softmax.

At a 150k vocabulary, an fp32 log-softmax over every completion position costs more memory than the model's bf16
logits. Both functions here walk the logits a block of rows at a time: a row's log-softmax is never stored, only
`z[index] - logsumexp(z)` (and the entropy), each row in float32 whatever the logits' dtype.

Departures from TRL's `selective_log_softmax` (`trl/trainer/utils.py`), which loops per batch row and, for bf16, keeps
bf16 log-softmax rows alive for backward:
- One code path for every dtype: each block is upcast to float32 and the result is float32 (TRL returns bf16 for bf16).
- A custom backward recomputes each block's softmax from the saved logits and log-normaliser, so autograd never keeps
  the per-block float32 copies either. Peak extra memory is one block plus the gradient of the logits.
- The temperature is applied inside the block, so no temperature-scaled copy of the logits is made.

`linear_logprobs_and_entropy` goes one step further and fuses the LM head in: it takes hidden states and the head's
weight, so not even the logits are ever stored (Liger's fused linear cross-entropy does the same for SFT).
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

CHUNK_NUMEL = 1 << 24
"""Float32 elements per block (64 MiB): about 110 rows at a 152k vocabulary."""

LINEAR_CHUNK_NUMEL = 1 << 22
"""Logits per block of `linear_logprobs_and_entropy` on CPU (16 MiB in float32): 85 rows at a 49k vocabulary, 27 at
152k. A block's working set is two to three times that. Measured at 4 x 4 x 128 on SmolLM2: peak RSS 5,062 MiB, against
5,138 with blocks of 32 MiB; the smaller blocks' head matmuls run a little slower on CPU (within the step's noise)."""

LINEAR_CHUNK_NUMEL_ACCELERATOR = 1 << 26
"""Logits per block on a GPU (256 MiB in float32): 441 rows at a 152k vocabulary, 1,365 at 49k.

Every block reads the whole head weight again (1.1 GB in bf16 for a 7B Qwen) and does `2 x rows` FLOPs per weight
element, so a block is bandwidth-bound until its rows reach the GPU's bf16 FLOPs per byte of memory bandwidth: about
150 on an A100, 200-300 on an H100/H200. 27-row blocks would use a tenth of the tensor cores. The working set, about
three times the logits (0.75 GiB), is small next to a 7B step's activations. The size is fixed rather than read from
free memory: blocks set the order of the gradient's sums, so a run's numbers do not depend on what else holds memory.
Not measured on a GPU yet."""


def linear_chunk_numel(device: torch.device) -> int:
    """Logits per block of `linear_logprobs_and_entropy` on `device` (see the two constants)."""
    return LINEAR_CHUNK_NUMEL if device.type == "cpu" else LINEAR_CHUNK_NUMEL_ACCELERATOR


def _exact_products(device: torch.device) -> bool:
    """Whether `_add_matmul_` multiplies in its accumulator's precision on `device` or in the operands' half
    precision (a GPU's tensor cores). On a CPU without bf16 instructions float32 is also the faster: one SmolLM2 block
    product (49,152 x 85 by 85 x 576, one thread) took 0.23 s in float32 and 2.7 s in bf16."""
    return device.type == "cpu"


def _add_matmul_(acc: Tensor, a: Tensor, b: Tensor) -> None:
    """`acc += a @ b` with `acc` in float32 (or float64), `a` and `b` in any float dtype.

    Summed in bf16, every one of hundreds of block additions rounds the running sum to 8 significant bits, and the
    errors add up (5% of the head's gradient over 256 blocks whose terms share a sign, against 0.2% for one matmul).
    Summed in `acc`, the gradient is rounded once, when the caller casts it. With exact products (CPU) that is as
    precise as one matmul on the full logits; with half-precision products (GPU) each block's product is also rounded
    once, before it is added.
    """
    if _exact_products(acc.device) or b.dtype == acc.dtype:
        acc.addmm_(a.to(acc.dtype), b.to(acc.dtype))
    else:
        acc.add_(a.to(b.dtype) @ b)


def _row_blocks(n: int, vocab: int, chunk_rows: int | None, numel: int):
    """Slices of at most `chunk_rows` rows (by default as many as fit `numel` logits) covering `n` rows."""
    step = chunk_rows or max(1, numel // vocab)
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _blocks(logits: Tensor, chunk_rows: int | None):
    """Yield `(b, rows)` covering a `(B, T, V)` tensor, `rows` a slice of at most `chunk_rows` positions."""
    batch, time, vocab = logits.shape
    for b in range(batch):
        for rows in _row_blocks(time, vocab, chunk_rows, CHUNK_NUMEL):
            yield b, rows


def _as_3d(logits: Tensor) -> Tensor:
    """View `(..., T, V)` as `(B, T, V)`; slices like `logits[:, P - 1 : -1]` stay views (no copy)."""
    if logits.dim() < 2:
        raise ValueError(f"logits must have at least 2 dims (..., V), got shape {tuple(logits.shape)}")
    return logits.unsqueeze(0) if logits.dim() == 2 else logits.reshape(-1, *logits.shape[-2:])


class _SelectiveLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, temperature: float, chunk_rows: int | None) -> Tensor:
        x = _as_3d(logits)  # (B, T, V)
        idx = index.reshape(x.shape[:2])  # (B, T)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        out = x.new_empty(x.shape[:2], dtype=dtype)  # (B, T)
        lse = torch.empty_like(out)  # (B, T)
        for b, rows in _blocks(x, chunk_rows):
            z = x[b, rows].to(dtype) / temperature  # (c, V)
            lse[b, rows] = z.logsumexp(-1)
            out[b, rows] = z.gather(-1, idx[b, rows, None]).squeeze(-1) - lse[b, rows]
        ctx.save_for_backward(logits, index, lse)
        ctx.temperature, ctx.chunk_rows = temperature, chunk_rows
        return out.reshape(index.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, index, lse = ctx.saved_tensors
        x = _as_3d(logits)  # (B, T, V)
        idx, g = index.reshape(x.shape[:2]), grad_out.reshape(x.shape[:2])  # (B, T)
        grad = torch.empty(x.shape, dtype=logits.dtype, device=logits.device)  # (B, T, V)
        for b, rows in _blocks(x, ctx.chunk_rows):
            z = x[b, rows].to(lse.dtype) / ctx.temperature  # (c, V)
            # d(z_i - lse)/dz = onehot(i) - softmax(z); chain through z = logits / T
            dz = (z - lse[b, rows, None]).exp_().mul_(-g[b, rows, None])
            dz.scatter_add_(-1, idx[b, rows, None], g[b, rows, None])
            grad[b, rows] = dz.div_(ctx.temperature)
        return grad.reshape(logits.shape), None, None, None


class _TokenEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, chunk_rows: int | None) -> Tensor:
        x = _as_3d(logits)  # (B, T, V)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        ent = x.new_empty(x.shape[:2], dtype=dtype)  # (B, T)
        for b, rows in _blocks(x, chunk_rows):
            logp = torch.log_softmax(x[b, rows].to(dtype) / temperature, dim=-1)  # (c, V), one block only
            ent[b, rows] = -(logp.exp() * logp).sum(-1)
        ctx.save_for_backward(logits, ent)
        ctx.temperature, ctx.chunk_rows = temperature, chunk_rows
        return ent.reshape(logits.shape[:-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, ent = ctx.saved_tensors
        x = _as_3d(logits)  # (B, T, V)
        g = grad_out.reshape(x.shape[:2])  # (B, T)
        grad = torch.empty(x.shape, dtype=logits.dtype, device=logits.device)  # (B, T, V)
        for b, rows in _blocks(x, ctx.chunk_rows):
            logp = torch.log_softmax(x[b, rows].to(ent.dtype) / ctx.temperature, dim=-1)  # (c, V)
            # dH/dz_v = -p_v (log p_v + H)
            dz = -(logp.exp() * (logp + ent[b, rows, None])) * g[b, rows, None]
            grad[b, rows] = dz / ctx.temperature
        return grad.reshape(logits.shape), None, None


def selective_log_softmax(
    logits: Tensor, index: Tensor, temperature: float = 1.0, chunk_rows: int | None = None
) -> Tensor:
    """`log_softmax(logits / temperature).gather(-1, index)` in float32, one block of rows at a time.

    Args:
        logits: `(..., V)` logits in any float dtype.
        index: `(...)` token ids to score.
        temperature: the sampling temperature the logits are divided by.
        chunk_rows: rows per block; by default as many as fit `CHUNK_NUMEL` float32 elements.

    Returns:
        `(...)` log-probabilities, float32 (float64 for float64 logits).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if index.shape != logits.shape[:-1]:
        raise ValueError(f"index shape {tuple(index.shape)} must be logits shape without V {tuple(logits.shape)}")
    return _SelectiveLogSoftmax.apply(logits, index.long(), float(temperature), chunk_rows)


def completion_logprobs(logits: Tensor, completion_ids: Tensor, temperature: float) -> Tensor:
    """Log-probs of the sampled completion tokens under the sampling distribution.

    `logits[:, t]` must already predict `completion_ids[:, t]`: for a causal LM run on `cat([prompt, completion])`,
    that is `out.logits[:, P - 1 : -1]` (or `logits_to_keep=C + 1` and `[:, :-1]`). Dividing by the rollout temperature
    makes the ratio to the sampler's log-probs 1 on-policy, as in TRL.

    Args:
        logits: `(B, C, V)` aligned logits.
        completion_ids: `(B, C)` sampled ids; padded positions are scored too and must be masked by the caller.
        temperature: the rollout sampling temperature.

    Returns:
        `(B, C)` float32 log-probs.
    """
    if logits.dim() != 3 or completion_ids.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, C, V) and completion_ids (B, C), got {tuple(logits.shape)} and "
            f"{tuple(completion_ids.shape)}"
        )
    return selective_log_softmax(logits, completion_ids, temperature)


def token_entropy(logits: Tensor, temperature: float = 1.0, chunk_rows: int | None = None) -> Tensor:
    """Entropy (nats) of `softmax(logits / temperature)` per position, float32, one block of rows at a time.

    Differentiable, so it can serve as an entropy bonus as well as a logged statistic.

    Args:
        logits: `(..., V)` logits in any float dtype.
        temperature: the sampling temperature (TRL logs the entropy of the tempered distribution).
        chunk_rows: rows per block; by default as many as fit `CHUNK_NUMEL` float32 elements.

    Returns:
        `(...)` entropies.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return _TokenEntropy.apply(logits, float(temperature), chunk_rows)


class _LinearLogSoftmax(torch.autograd.Function):
    """`log_softmax(linear(hidden) / T)` at `index` and its entropy, a block of rows at a time, logits never stored."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, index, temperature, with_entropy, entropy_grad, chunk_rows):
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        logp = hidden.new_empty(hidden.shape[0], dtype=dtype)  # (N,)
        lse, ent = torch.empty_like(logp), torch.empty_like(logp) if with_entropy else logp.new_empty(0)
        for rows in _row_blocks(hidden.shape[0], weight.shape[0], chunk_rows, linear_chunk_numel(hidden.device)):
            z = torch.nn.functional.linear(hidden[rows], weight, bias).to(dtype).div_(temperature)  # (c, V)
            lse[rows] = z.logsumexp(-1)
            z.sub_(lse[rows, None])  # log-probs of the whole vocabulary
            logp[rows] = z.gather(-1, index[rows, None]).squeeze(-1)
            if with_entropy:
                ent[rows] = -(z.exp() * z).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, index, lse, ent)
        ctx.temperature, ctx.chunk_rows = temperature, chunk_rows
        if not entropy_grad:
            ctx.mark_non_differentiable(ent)
        ctx.set_materialize_grads(False)
        return logp, ent

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logp: Tensor | None, grad_ent: Tensor | None):
        hidden, weight, bias, index, lse, ent = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        if grad_logp is None and grad_ent is None:
            return (None,) * 8
        grad_hidden = torch.empty_like(hidden) if needs_hidden else None
        # The head's gradients are sums over every block: accumulated in float32 (see `_add_matmul_`), cast once.
        acc = torch.promote_types(weight.dtype, torch.float32)
        grad_weight = torch.zeros_like(weight, dtype=acc) if needs_weight else None
        grad_bias = torch.zeros_like(bias, dtype=acc) if bias is not None and needs_bias else None
        for rows in _row_blocks(hidden.shape[0], weight.shape[0], ctx.chunk_rows, linear_chunk_numel(hidden.device)):
            z = torch.nn.functional.linear(hidden[rows], weight, bias).to(lse.dtype).div_(ctx.temperature)
            logq = z.sub_(lse[rows, None])  # (c, V) log-probs
            p = logq.exp()
            if grad_ent is not None:  # dH/dz = -p (logq + H)
                coef = logq.add_(ent[rows, None]).mul_(-grad_ent[rows, None])  # (c, V)
                if grad_logp is not None:
                    coef.sub_(grad_logp[rows, None])
            else:
                coef = -grad_logp[rows, None]  # (c, 1)
            dz = p.mul_(coef)
            if grad_logp is not None:  # d(logq_i)/dz = onehot(i) - p: the one-hot part
                dz.scatter_add_(-1, index[rows, None], grad_logp[rows, None])
            dz = dz.div_(ctx.temperature)  # (c, V) float32: gradient of the block's logits
            if grad_hidden is not None:
                grad_hidden[rows] = dz.to(weight.dtype) @ weight  # one matmul per row: no sum across blocks
            if grad_weight is not None:
                _add_matmul_(grad_weight, dz.T, hidden[rows])
            if grad_bias is not None:
                grad_bias += dz.sum(0)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None, None


def linear_logprobs_and_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    index: Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    chunk_rows: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """`selective_log_softmax` and `token_entropy` of `linear(hidden, weight, bias)`, the logits never held whole.

    An LM head fused with the log-softmax: forward keeps the hidden states and two floats per row, backward
    recomputes a block of logits at a time and accumulates the weight's and bias's gradients over the blocks in
    float32 (cast to their dtype once at the end). The logits, `(N, V)`, and their gradient never exist, at the cost
    of one more head matmul in backward and, for a bf16 head, a float32 copy of its gradient while backward runs.

    Args:
        hidden: `(..., d)` hidden states.
        weight: `(V, d)` head weight; bias: `(V,)` or None.
        index: `(...)` token ids to score.
        temperature: the sampling temperature the logits are divided by.
        with_entropy: also return the entropies of `softmax(logits / temperature)`.
        entropy_grad: make the entropies differentiable (an entropy bonus); otherwise they are constants.
        chunk_rows: rows per block; by default as many as fit `linear_chunk_numel(hidden.device)` logits.

    Returns:
        `(logp, entropy)`, each `(...)` float32 (float64 for float64 inputs), entropy None unless asked for.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if index.shape != hidden.shape[:-1]:
        raise ValueError(f"index shape {tuple(index.shape)} must be hidden shape without d {tuple(hidden.shape)}")
    flat = hidden.reshape(-1, hidden.shape[-1])
    logp, ent = _LinearLogSoftmax.apply(
        flat, weight, bias, index.reshape(-1).long(), float(temperature), with_entropy, entropy_grad, chunk_rows
    )
    return logp.reshape(index.shape), ent.reshape(index.shape) if with_entropy else None
