"""Linear layers whose weights are packed once for the CPU's matrix kernels, for generation and scoring.

On a CPU, ``F.linear`` on a bf16 tensor hands oneDNN the weight in its plain layout, and oneDNN reorders it into the
blocked layout its AMX kernels read, on every call. At decoding sizes (16 rows x 576 columns) that reorder is half
of the product's time. Packing the weight once (``torch.ops.mkldnn._reorder_linear_weight``, what inductor's
freezing pass does) gives the same bits at up to 128 rows, 1.1-2.3x faster per product. fp32 products go to MKL's
sgemm, which packs its operands at every call too: ``torch.ops.mkl._mkl_reorder_linear_weight`` packs a weight once
for one row count (the decoding batch), same bits, 1.2x end to end, for copies ~5x the weights
(bench/results/prepacked_linear.md, fp32_decode_ceiling.md).

A packed layer serves only calls without autograd (generation and scoring run under ``torch.no_grad``); training
through the same module takes the plain path, so a LoRA adapter trained on a pooled base model is unaffected. The
packed copy is made on the first such call and made again when the weight changed: a new weight tensor, or an
in-place write to it (a loaded state dict, PEFT's safe merge). Writes through ``weight.data`` (PEFT's default merge)
bypass the version counter: after one, call :func:`forget_packed`. Only models the generation backend loads itself
are packed (private copies: the model pool hands out deep copies), so training never meets a packed layer.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import torch
from torch import nn

from cotbridge.models.pool import memory_bytes

log = logging.getLogger(__name__)

# bf16/fp16: decoding-sized calls only. From ~290 rows on, oneDNN picks another kernel for the plain call and the
# sums differ in the last bit; a pre-fill amortises the reorder over its rows anyway.
MAX_ROWS = 128
_PACKABLE = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
# fp32 products go to MKL, whose packed format serves one row count (the decoding batch) and gives F.linear's bits
# from 16 rows on (fewer rows: other kernels, other bits); the copies are ~5x the weights.
MIN_FP32_ROWS = 16
# module -> (the weight packed, its version counter then, the packed weight); outside the module, so that copying a
# model (the model pool deep-copies) copies no packed tensor: the copy packs its own on first use.
_packed: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, int, torch.Tensor]] = weakref.WeakKeyDictionary()


def cpu_packs(dtype: torch.dtype) -> bool:
    """Whether this torch build has packed products for ``dtype`` on this CPU: oneDNN with native bf16/fp16, MKL
    for fp32."""
    if dtype == torch.float32:
        return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
    check = _PACKABLE.get(dtype)
    return bool(check and torch.backends.mkldnn.is_available() and getattr(torch.ops.mkldnn, check)())


def _pack(w: torch.Tensor, rows: int) -> torch.Tensor:
    """fp32: MKL's format for ``rows``-row products; bf16/fp16: oneDNN's blocked layout (one hint serves all rows)."""
    if w.dtype == torch.float32:
        return torch.ops.mkl._mkl_reorder_linear_weight(w.detach(), rows)
    return torch.ops.mkldnn._reorder_linear_weight(w.detach(), 16)


def _packed_product(x: torch.Tensor, packed: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if w.dtype == torch.float32:
        return torch.ops.mkl._mkl_linear(x, packed, w, bias, x.numel() // w.shape[1])
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [None], "")


class PrepackedLinear(nn.Linear):
    """An ``nn.Linear`` (still one to ``isinstance``, PEFT and ``state_dict``) that multiplies with a packed copy of
    its weight when no gradient is needed: bf16/fp16 at up to MAX_ROWS rows, fp32 at exactly ``pack_rows`` rows."""

    pack_rows = MIN_FP32_ROWS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if torch.is_grad_enabled() or w.device.type != "cpu" or x.dtype != w.dtype or not x.is_contiguous():
            return super().forward(x)  # (a strided input with a bias: F.linear rounds it differently, 1 ulp)
        rows = x.numel() // w.shape[1]
        fp32 = w.dtype == torch.float32
        if (rows != self.pack_rows) if fp32 else (w.dtype not in _PACKABLE or rows > MAX_ROWS):
            return super().forward(x)
        entry = _packed.get(self)
        if entry is None or entry[0] is not w or entry[1] != w._version:
            entry = (w, w._version, _pack(w, self.pack_rows))
            _packed[self] = entry
        return _packed_product(x, entry[2], w, self.bias)


def forget_packed(model: Any) -> None:
    """Drop the model's packed copies (each is made again on its next use): after writing weights through
    ``.data``, which the version counter does not see."""
    for module in model.modules():
        _packed.pop(module, None)


def prepack_linears(model: Any, rows: int = 16, budget_bytes: int | None = None) -> int:
    """Turn the model's plain ``nn.Linear`` layers into :class:`PrepackedLinear` when this CPU has packed products
    for its dtype; returns how many. ``rows``: the decoding batch (fp32 packs serve that row count only; fewer than
    MIN_FP32_ROWS: not packed). Subclasses of ``nn.Linear`` (PEFT's LoRA layers, quantised layers) are left alone:
    their own base layers are converted. The packed copies sit beside the weights, so a model whose copies would
    exceed ``budget_bytes`` (an eighth of the memory by default) keeps the plain path."""
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu" or not cpu_packs(first.dtype):
        return 0
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    if not linears or (first.dtype == torch.float32 and rows < MIN_FP32_ROWS):
        return 0
    weights = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    size = weights
    if first.dtype == torch.float32:  # the packed format's size, from the largest weight
        big = max((m.weight for m in linears), key=torch.Tensor.numel)
        size = int(weights * _pack(big, rows).numel() * 4 / (big.numel() * big.element_size()))
    budget = memory_bytes() // 8 if budget_bytes is None else budget_bytes
    if size > budget:
        log.info("linear weights not packed: %.1f GB of copies exceed the %.1f GB allowed", size / 1e9, budget / 1e9)
        return 0
    if not same_bits(linears, [rows] if first.dtype == torch.float32 else [1, min(rows, MAX_ROWS), MAX_ROWS]):
        log.info("linear weights not packed: packed products round differently here")
        return 0
    for module in linears:
        module.__class__ = PrepackedLinear
        module.pack_rows = rows
    return len(linears)


def same_bits(linears: list[nn.Linear], row_counts: list[int]) -> bool:
    """Whether packed products give F.linear's bits for each weight shape of the model at these row counts (the
    kernels a library picks depend on the shapes: MKL's fp32 packs differ at 64 rows x 1536 inputs, for one)."""
    shapes = {(tuple(m.weight.shape), m.bias is not None): m for m in linears}
    generator = torch.Generator().manual_seed(0)
    for m in shapes.values():
        w = m.weight.detach()
        for rows in row_counts:
            x = torch.randn(rows, w.shape[1], generator=generator).to(w.dtype)
            if not torch.equal(_packed_product(x, _pack(w, rows), w, m.bias), nn.functional.linear(x, w, m.bias)):
                return False
    return True
