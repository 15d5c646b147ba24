"""The labels' log-probabilities under the LM head, for TRL's fused loss on a CPU.

TRL's ``ChunkedLogProbFunction`` keeps [tokens, vocab] logits out of memory by folding vocabulary tiles one at a
time; off Triton devices it folds them with ~10 fp32 passes per tile and accumulates the gradient with fp32 matrix
products of bf16 tiles converted element by element. On a CPU that was ~40% of a SmolLM2-135M quickstart step.
:class:`LabelLogProbs` computes the same outputs over chunks of 1,024 tokens: one bf16 projection per chunk (native
on AMX / avx512_bf16), one log-sum-exp, and in the backward pass the softmax gradient fed back through bf16
products. Memory stays bounded by the chunk ([1024, vocab] fp32, recomputed in backward), as in TRL, unless the
probabilities of all tokens fit in KEEP_PROBS_BYTES: then the forward pass keeps them and the backward pass skips the
second projection and its exp (the same values, so the same gradients bit for bit; on the fp32 path a backward call
went from 0.94 to 0.27 s in a ~5.5 s quickstart step, bench/results/quickstart_speed_round3.md).
"""

from __future__ import annotations

from typing import Any

import torch

TOKEN_CHUNK = 1024
KEEP_PROBS_BYTES = 512 * 2**20  # the quickstart's ~1,100 labelled tokens x 49,152 entries: 216 MB
VOCAB_CHUNK = 4096  # columns of the fp32 projection per product (see _project)


def _project(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """hidden @ weight.t(). In fp32, as products of VOCAB_CHUNK columns into one output: each output tile stays in
    cache, 1.2-1.5x faster than one product on an AVX2 AMD EPYC (bench/results/quickstart_speed_round3.md) and bit for
    bit the same (each entry is the same dot product). bf16 products keep one call (not measured chunked)."""
    if hidden.dtype != torch.float32 or weight.shape[0] <= VOCAB_CHUNK:
        return hidden @ weight.t()
    out = torch.empty(hidden.shape[0], weight.shape[0], dtype=hidden.dtype, device=hidden.device)
    for s in range(0, weight.shape[0], VOCAB_CHUNK):
        torch.mm(hidden, weight[s : s + VOCAB_CHUNK].t(), out=out[:, s : s + VOCAB_CHUNK])
    return out


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kw: dict[str, Any]) -> Any:
    """(fp32 logits after TRL's transform: scale, soft cap, temperature; the soft cap's tanh or None)."""
    z = _project(hidden, weight).float()
    if bias is not None:
        z += bias.float()
    if kw["logit_scale"] != 1:  # each skipped no-op is a pass over [tokens, vocab]
        z *= kw["logit_scale"]
    tanh = None
    if kw["softcap"] is not None:
        tanh = torch.tanh(z / kw["softcap"])
        z = kw["softcap"] * tanh
    return (z / kw["temperature"] if kw["temperature"] != 1 else z), tanh


class LabelLogProbs(torch.autograd.Function):
    """Drop-in for TRL's ``ChunkedLogProbFunction.apply`` (same arguments, same five outputs)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,  # [N, H]
        weight: torch.Tensor,  # [V, H]
        bias: torch.Tensor | None,
        targets: torch.Tensor,  # [N]
        temperature: float,
        chunk_size: int,  # TRL's vocabulary tile width: unused, the whole vocabulary is one product here
        final_logit_softcapping: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1"),
    ) -> Any:
        ctx.set_materialize_grads(False)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype
        kw = {"temperature": temperature, "softcap": final_logit_softcapping, "logit_scale": logit_scale}
        w = weight.to(dtype)
        n = hidden.shape[0]
        f32 = dict(device=hidden.device, dtype=torch.float32)
        logprobs, log_z, entropy = torch.empty(n, **f32), torch.empty(n, **f32), torch.empty(n, **f32)
        log_sum_sq, mean_logits = torch.empty(n, **f32), torch.empty(n, **f32)
        is_top1 = torch.empty(n, device=hidden.device, dtype=torch.bool)
        # Only for a backward pass that can use them: one to come (not under no_grad, e.g. a reference model's scores)
        # and without a soft cap (its gradient needs the logits' tanh, so that backward pass projects again anyway)
        keep = (
            final_logit_softcapping is None
            and any(ctx.needs_input_grad[:3])
            and n * weight.shape[0] * 4 <= KEEP_PROBS_BYTES
        )
        kept = []  # per chunk: the probabilities the backward pass would recompute
        with torch.no_grad():
            for s in range(0, n, TOKEN_CHUNK):
                e = min(s + TOKEN_CHUNK, n)
                z, _ = _logits(hidden[s:e].to(dtype), w, bias, kw)
                lz = torch.logsumexp(z, -1)
                target = z.gather(-1, targets[s:e, None]).squeeze(-1)
                logprobs[s:e], log_z[s:e] = target - lz, lz
                # Only what the caller asked for (SFT: entropy and is_top1): each is another pass over [chunk, vocab]
                if keep or "entropy" in outputs or "log_sum_sq_probs" in outputs:
                    p = torch.exp(z - lz[:, None])
                    if keep:
                        kept.append(p)
                if "entropy" in outputs:
                    entropy[s:e] = lz - (p * z).sum(-1)
                if "log_sum_sq_probs" in outputs:
                    log_sum_sq[s:e] = torch.log((p * p).sum(-1))
                if "mean_logits" in outputs:
                    mean_logits[s:e] = z.mean(-1)
                if "is_top1" in outputs:
                    # the first maximum, as TRL counts ties (max's indices: argmax's, in half its time on a CPU)
                    is_top1[s:e] = z.max(-1).indices == targets[s:e]
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy)
        ctx.dtype, ctx.kw, ctx.kept = dtype, kw, kept
        out = {"entropy": entropy, "log_sum_sq_probs": log_sum_sq, "mean_logits": mean_logits, "is_top1": is_top1}
        extra = [out[name] if name in outputs else None for name in out]
        ctx.mark_non_differentiable(*(x for x in extra[1:] if x is not None))
        return (logprobs, *extra)

    @staticmethod
    def backward(ctx: Any, grad_logprobs: torch.Tensor | None, grad_entropy: torch.Tensor | None, *_: Any) -> Any:
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        dtype, kw = ctx.dtype, ctx.kw
        w = weight.to(dtype)
        grad_hidden = torch.empty(hidden.shape, dtype=torch.float32) if needs_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32) if needs_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32) if needs_bias else None
        # The kept probabilities stand in for the recomputed ones unless the entropy's gradient needs log p as well
        use_kept = ctx.kept and grad_entropy is None
        for i, s in enumerate(range(0, hidden.shape[0], TOKEN_CHUNK)):
            e = min(s + TOKEN_CHUNK, hidden.shape[0])
            h = hidden[s:e].to(dtype)
            if use_kept:
                p, tanh = ctx.kept[i], None
            else:
                z, tanh = _logits(h, w, bias, kw)
                log_p = z - log_z[s:e, None]
                p = torch.exp(log_p)
            if grad_logprobs is not None:  # d log p_target / dz = onehot(target) - p
                g = grad_logprobs[s:e].float()
                grad = p * -g[:, None]
                grad.scatter_add_(-1, targets[s:e, None], g[:, None])
            else:
                grad = torch.zeros_like(p)
            if grad_entropy is not None:  # d entropy / dz = -p (log p + entropy)
                grad -= grad_entropy[s:e, None].float() * p * (log_p + entropy[s:e, None])
            if kw["temperature"] != 1:
                grad /= kw["temperature"]
            if tanh is not None:
                grad *= 1 - tanh * tanh
            if kw["logit_scale"] != 1:
                grad *= kw["logit_scale"]
            if grad_bias is not None:
                grad_bias += grad.sum(0)
            grad_low = grad.to(dtype)
            if grad_hidden is not None:
                grad_hidden[s:e] = (grad_low @ w).float()
            if grad_weight is not None:
                grad_weight += (grad_low.t() @ h).float()
        return (
            grad_hidden.to(hidden.dtype) if grad_hidden is not None else None,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(bias.dtype) if grad_bias is not None else None,
            *([None] * 6),
        )
