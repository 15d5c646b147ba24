"""Linear layers whose weights are packed once for the CPU's matrix kernels, for generation and scoring.

On a CPU, ``F.linear`` on a bf16 tensor hands oneDNN the weight in its plain layout, and oneDNN reorders it into the
blocked layout its AMX kernels read, on every call. At decoding sizes (16 rows x 576 columns) that reorder is half
of the product's time. Packing the weight once (``torch.ops.mkldnn._reorder_linear_weight``, what inductor's
freezing pass does) gives the same bits at up to 128 rows, 1.1-2.3x faster per product. fp32 weights go to one of two
packings, whichever is faster on the CPU: MKL's packs (``torch.ops.mkl._mkl_reorder_linear_weight``; Intel CPUs
with AVX-512, decoding batches of 16 rows or more) give F.linear's bits for one row count (the decoding batch) and copy
3-5x the weights (bench/results/fp32_decode_ceiling.md); oneDNN's blocked layout (elsewhere, e.g. an AMD EPYC,
and smaller batches) serves every row count at the weights' size, and its products differ from F.linear's in the
last bits (~1e-6 relative), but each row's bits are the same whatever other rows share its product (checked at
load). A packing whose promise the check finds broken for the model's shapes is not used; the next one is tried.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cotbridge.models.cpu_features import cpu_flags, cpu_vendor
from cotbridge.models.pool import memory_bytes

log = logging.getLogger(__name__)

# bf16/fp16 oneDNN packs serve decoding-sized calls: from ~290 rows on, oneDNN picks another bf16 kernel for the plain
# call and the sums differ in the last bit; a pre-fill amortises the reorder over its rows anyway.
MAX_ROWS = 128
_NATIVE = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
# MKL's fp32 packs serve one row count, give F.linear's bits from 16 rows on (fewer rows: other kernels, other bits)
# and take 3-5x the weights.
MIN_MKL_ROWS = 16
# The most rows keeps_promise multiplies: past oneDNN's kernel switch for bf16 (~290 rows), ~0.15 s for a 49k LM head
CHECK_ROWS = 300
# module -> (the weight packed, its version counter then, the packed weight); outside the module, so that copying a
# model (the model pool deep-copies) copies no packed tensor: the copy packs its own on first use.
_packed: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, int, torch.Tensor]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class OneDNNPacking:
    """oneDNN's blocked layout (what inductor's freezing pass packs): copies the size of the weights, one copy for
    every row count up to ``most_rows`` (None: every row count)."""

    promise: str  # what keeps_promise checks: "same bits" (F.linear's) or "row-independent"
    most_rows: int | None = None
    # fp32: a fused bias sends single rows down another kernel (other bits than the same row among others); added
    # after the product, every row count sums alike
    bias_apart: bool = False
    # fp32: on an AVX-512 Xeon (Ice Lake) a single row over 1536 inputs takes another kernel than the same row among
    # others (other bits); a single row is multiplied as two (itself twice), like every other row count. On every
    # CPU: one decoding step's products at 2 rows took 1.1x those at 1 row on an AVX2 AMD EPYC, and single rows are
    # rare (a run's last sequence)
    least_rows: int = 1
    faster_with: tuple[str, ...] = ()
    name: str = "oneDNN"
    copy_ratio: float = 1.0  # the packed copies' size over the weights'

    def available(self, dtype: torch.dtype) -> bool:
        if not torch.backends.mkldnn.is_available():
            return False
        return dtype == torch.float32 or bool(dtype in _NATIVE and getattr(torch.ops.mkldnn, _NATIVE[dtype])())

    def serves(self, rows: int, pack_rows: int) -> bool:
        return self.most_rows is None or rows <= self.most_rows

    def pack(self, w: torch.Tensor, rows: int) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(w.detach(), 16)  # the row hint: 16 to 50 time the same

    def product(
        self, x: torch.Tensor, packed: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if 0 < x.numel() < self.least_rows * x.shape[-1]:
            rows = x.reshape(-1, x.shape[-1])
            padded = torch.cat([rows] + [rows[:1]] * (self.least_rows - len(rows)))
            return self.product(padded, packed, w, bias)[: len(rows)].reshape(*x.shape[:-1], w.shape[0])
        if self.bias_apart and bias is not None:
            return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [None], "") + bias
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [None], "")


@dataclass(frozen=True)
class MKLPacking:
    """MKL's fp32 packed format: one copy serves one row count (the decoding batch, from MIN_MKL_ROWS on)."""

    promise: str = "same bits"
    name: str = "MKL"
    copy_ratio: float = 5.0  # 3.4-5x measured (bench/results/fp32_decode_ceiling.md)
    # tried before oneDNN on Intel CPUs with AVX-512, where MKL's kernels for its packs beat oneDNN's. Not on an AMD
    # EPYC Zen 4, AVX-512 and all: there MKL's packs took 0.99x the plain path's time, oneDNN's 0.67x
    # (bench/results/prepacked_linear_fp32_zen4.md); MKL picks its fastest kernels only on Intel's CPUs
    faster_with: tuple[str, ...] = ("GenuineIntel", "avx512f")

    def available(self, dtype: torch.dtype) -> bool:
        mkl = torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
        return dtype == torch.float32 and mkl

    def serves(self, rows: int, pack_rows: int) -> bool:
        return rows == pack_rows >= MIN_MKL_ROWS

    def pack(self, w: torch.Tensor, rows: int) -> torch.Tensor:
        return torch.ops.mkl._mkl_reorder_linear_weight(w.detach(), rows)

    def product(
        self, x: torch.Tensor, packed: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        return torch.ops.mkl._mkl_linear(x, packed, w, bias, x.numel() // w.shape[1])


Packing = OneDNNPacking | MKLPacking

# Per dtype, the packings tried in order (those the CPU has every ``faster_with`` of first): the first whose promise
# this CPU keeps for the model's shapes is used.
# bf16/fp16: oneDNN's blocked layout, F.linear's bits at decoding sizes (native bf16 only: AMX, avx512_bf16).
# fp32: oneDNN's blocked layout copies the size of the weights and serves every row count; its sums differ from
# F.linear's in the last bits (~1e-6 relative), but a row's bits do not depend on the other rows of its call, so a
# sample does not depend on which sequences shared its batch. MKL's packs give F.linear's bits at one row count. Which
# is faster depends on the CPU: 64 greedy GSM8K completions took 0.88x the plain path's time with oneDNN's packs and
# 1.02x with MKL's on an AVX2 AMD EPYC (Zen 3), 0.67x and 0.99x on an AVX-512 AMD EPYC (Zen 4), but 0.78x and 0.69x on
# an AVX-512 Xeon (Ice Lake) (bench/results/prepacked_linear_fp32.md, _zen4.md, _icelake.md): MKL first on an Intel
# CPU with AVX-512.
PACKINGS: dict[torch.dtype, tuple[Packing, ...]] = {
    torch.bfloat16: (OneDNNPacking("same bits", most_rows=MAX_ROWS),),
    torch.float16: (OneDNNPacking("same bits", most_rows=MAX_ROWS),),
    torch.float32: (OneDNNPacking("row-independent", bias_apart=True, least_rows=2), MKLPacking()),
}


def packings(dtype: torch.dtype) -> tuple[Packing, ...]:
    """The packings for ``dtype`` in the order tried on this CPU: those faster on a CPU like it first."""
    have = cpu_flags() | {cpu_vendor()}
    return tuple(sorted(PACKINGS.get(dtype, ()), key=lambda p: not (p.faster_with and set(p.faster_with) <= have)))


def cpu_packs(dtype: torch.dtype) -> bool:
    """Whether this torch build has packed products for ``dtype`` on this CPU: oneDNN (fp32, and bf16/fp16 where
    native), MKL for fp32."""
    return any(p.available(dtype) for p in PACKINGS.get(dtype, ()))


class PrepackedLinear(nn.Linear):
    """An ``nn.Linear`` (still one to ``isinstance``, PEFT and ``state_dict``) that multiplies with a packed copy of
    its weight when no gradient is needed and the call's row count is one its packing serves."""

    packing: Packing = PACKINGS[torch.float32][0]
    pack_rows = MIN_MKL_ROWS  # the decoding batch the model was packed for

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if torch.is_grad_enabled() or w.device.type != "cpu" or x.dtype != w.dtype or not x.is_contiguous():
            return super().forward(x)  # (a strided input with a bias: F.linear rounds it differently, 1 ulp)
        if not self.packing.serves(x.numel() // w.shape[1], self.pack_rows):
            return super().forward(x)
        entry = _packed.get(self)
        if entry is None or entry[0] is not w or entry[1] != w._version:
            entry = (w, w._version, self.packing.pack(w, self.pack_rows))
            _packed[self] = entry
        return self.packing.product(x, entry[2], w, self.bias)


# What else keeps packed copies of a module's weights registers here how to drop them (stacked_projections)
FORGET_HOOKS: list[Callable[[nn.Module], None]] = []


def forget_packed(model: Any) -> None:
    """Drop the model's packed copies (each is made again on its next use): after writing weights through
    ``.data``, which the version counter does not see."""
    for module in model.modules():
        _packed.pop(module, None)
        for forget in FORGET_HOOKS:
            forget(module)


def prepack_linears(model: Any, rows: int = 16, budget_bytes: int | None = None) -> int:
    """Turn the model's plain ``nn.Linear`` layers into :class:`PrepackedLinear` with the first packing of
    :func:`packings` that this CPU has and whose promise holds for the model's weight shapes; returns how many.
    ``rows``: the decoding batch (MKL's packs serve that row count only, and none below MIN_MKL_ROWS). Subclasses of
    ``nn.Linear`` (PEFT's LoRA layers, quantised layers) are left alone: their own base layers are converted. The
    packed copies sit beside the weights, so a packing whose copies would exceed ``budget_bytes`` (an eighth of the
    memory by default) is not used."""
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu":
        return 0
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    if not linears:
        return 0
    weights = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    budget = memory_bytes() // 8 if budget_bytes is None else budget_bytes
    for packing in packings(first.dtype):
        if not packing.available(first.dtype) or not packing.serves(rows, rows):
            continue
        size = weights * packing.copy_ratio
        if size > budget:
            log.info(
                "%s packs not used: %.1f GB of copies exceed the %.1f GB allowed",
                packing.name,
                size / 1e9,
                budget / 1e9,
            )
            continue
        try:
            kept = keeps_promise(packing, linears, rows)
        except RuntimeError as e:  # a build whose kernels lack this dtype or shape: the plain path is still there
            log.info("%s packs not used: %s", packing.name, e)
            continue
        if not kept:
            log.info("%s packs not used: their products break the promise (%s) here", packing.name, packing.promise)
            continue
        for module in linears:
            module.__class__ = PrepackedLinear
            module.packing, module.pack_rows = packing, rows
        return len(linears)
    return 0


def keeps_promise(packing: Packing, linears: list[nn.Linear], rows: int) -> bool:
    """Whether the packing's products keep its promise for each weight shape of the model (the kernels a library
    picks depend on the shapes: MKL's fp32 packs differ from F.linear at 64 rows x 1536 inputs, for one).

    "same bits": F.linear's bits at the row counts it serves (1, the batch, the most). "row-independent": each row of
    a product with the most rows served has the bits of the same row in products of fewer rows, and is F.linear's
    within rounding."""
    counts = [n for n in sorted({1, 3, rows, MAX_ROWS, CHECK_ROWS}) if packing.serves(n, rows)]
    most = counts[-1]
    shapes = {(tuple(m.weight.shape), m.bias is not None): m for m in linears}
    generator = torch.Generator().manual_seed(0)
    for m in shapes.values():
        w, bias = m.weight.detach(), None if m.bias is None else m.bias.detach()
        packed = packing.pack(w, rows)
        x = torch.randn(most, w.shape[1], generator=generator).to(w.dtype)
        if packing.promise == "same bits":
            same = (torch.equal(packing.product(x[:n], packed, w, bias), F.linear(x[:n], w, bias)) for n in counts)
            if not all(same):
                return False
            continue
        full, reference = packing.product(x, packed, w, bias), F.linear(x, w, bias)
        if not all(torch.equal(packing.product(x[:n], packed, w, bias), full[:n]) for n in counts):
            return False
        if not torch.allclose(full, reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max())):
            return False
    return True
