"""Linear layers whose bf16/fp16 weights are packed once for the CPU's matrix engine, for generation and scoring.

On a CPU, ``F.linear`` on a bf16 tensor hands oneDNN the weight in its plain layout, and oneDNN reorders it into the
blocked layout its AMX kernels read, on every call. At decoding sizes (16 rows x 576 columns) that reorder is half
of the product's time. Packing the weight once (``torch.ops.mkldnn._reorder_linear_weight``, what inductor's
freezing pass does) gives the same bits at every batch size, twice as fast at 16 rows (bench/results/).

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

# Decoding-sized calls only. From ~290 rows on, oneDNN picks another kernel for the plain call and the sums differ in
# the last bit; a pre-fill amortises the reorder over its rows anyway.
MAX_ROWS = 128
_PACKABLE = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}
# module -> (the weight packed, its version counter then, the packed weight); outside the module, so that copying a
# model (the model pool deep-copies) copies no packed tensor: the copy packs its own on first use.
_packed: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, int, torch.Tensor]] = weakref.WeakKeyDictionary()


def cpu_packs(dtype: torch.dtype) -> bool:
    """Whether this torch build's oneDNN runs ``dtype`` products natively on this CPU."""
    check = _PACKABLE.get(dtype)
    return bool(check and torch.backends.mkldnn.is_available() and getattr(torch.ops.mkldnn, check)())


class PrepackedLinear(nn.Linear):
    """An ``nn.Linear`` (still one to ``isinstance``, PEFT and ``state_dict``) that multiplies with a packed copy of
    its weight when no gradient is needed and the weight is a bf16/fp16 CPU tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (
            torch.is_grad_enabled()
            or w.device.type != "cpu"
            or x.dtype != w.dtype
            or w.dtype not in _PACKABLE
            or x.numel() > MAX_ROWS * w.shape[1]
            or not x.is_contiguous()  # F.linear rounds a strided input with a bias differently (1 ulp)
        ):
            return super().forward(x)
        entry = _packed.get(self)
        if entry is None or entry[0] is not w or entry[1] != w._version:
            entry = (w, w._version, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 16))
            _packed[self] = entry
        return torch.ops.mkldnn._linear_pointwise(x, entry[2], self.bias, "none", [None], "")


def forget_packed(model: Any) -> None:
    """Drop the model's packed copies (each is made again on its next use): after writing weights through
    ``.data``, which the version counter does not see."""
    for module in model.modules():
        _packed.pop(module, None)


def prepack_linears(model: Any, budget_bytes: int | None = None) -> int:
    """Turn the model's plain ``nn.Linear`` layers into :class:`PrepackedLinear` when its weights are in a dtype the
    CPU multiplies natively; returns how many. Subclasses of ``nn.Linear`` (PEFT's LoRA layers, quantised layers)
    are left alone: their own base layers are converted. The packed copies sit beside the weights, so a model whose
    linear weights exceed ``budget_bytes`` (an eighth of the memory by default) keeps the plain path."""
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu" or not cpu_packs(first.dtype):
        return 0
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    size = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    budget = memory_bytes() // 8 if budget_bytes is None else budget_bytes
    if size > budget:
        log.info(
            "linear weights not pre-packed: %.1f GB of copies exceed the %.1f GB allowed", size / 1e9, budget / 1e9
        )
        return 0
    for module in linears:
        module.__class__ = PrepackedLinear
    return len(linears)
