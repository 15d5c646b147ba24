"""Projections of one input multiplied as one packed product: a layer's query, key and value; its gate and up.

At decoding sizes each of these products is short of work for the CPU's kernels (576 inputs by 192 outputs for a
SmolLM2-135M key), and a product per weight pays a call's fixed costs each time. Their weights stacked and packed
once, one product gives the same bits as the separate ones (an output column sums its inputs the same way whatever
columns sit beside it; checked at each row count the first time stacks of those shapes meet it: the layers' own
products serve that call, the stacked one every later call at that count where the bits were equal), in less time at
decoding sizes: a bf16 step of SmolLM2-135M at 16 rows on an AMD EPYC Zen 4 took 0.89x model()'s time stacked and
0.98x with the projections apart, at 50 rows 0.95x and 0.94x, with +-4% noise on that machine
(bench/results/decoding_step_parts_zen4.md). backends/decoding_step.py is where this is used.

Only layers that :func:`prepack_linears` packed with oneDNN's layout (plain ``nn.Linear``, no LoRA adapter: its base
layer is not called alone) are stacked, and only while the stacks' packed copies fit in a sixteenth of the memory;
MKL's fp32 packs (3-5x the weights each) are not stacked. A stack is made again when one of its weights changed, as
a packed copy is.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from cotbridge.models.pool import memory_bytes
from cotbridge.models.prepacked_linear import FORGET_HOOKS, OneDNNPacking, Packing, PrepackedLinear


@dataclass
class Stack:
    sources: list[tuple[torch.Tensor | None, int]]  # each weight and bias stacked, and its version counter then
    packed: torch.Tensor | None  # None: memory is short
    shape: torch.Tensor  # the stacked weight's shape (on the meta device: oneDNN's product reads only its size)
    bias: torch.Tensor | None
    sizes: list[int]
    same_bits: dict[int, bool]  # per row count: whether the stacked product gave the separate ones' bits (_keeps_bits)


log = logging.getLogger(__name__)

# owner module (an attention, an MLP) -> its stack; two decoders (a server's threads) may stack at once
_stacks: weakref.WeakKeyDictionary[nn.Module, Stack] = weakref.WeakKeyDictionary()
_stacking = threading.Lock()
# (packing, dtype, weight shapes, which have a bias, pack rows) -> per row count met so far, whether the stacked
# product gave the separate products' bits (oneDNN picks its kernel by shape: one verdict serves every layer of those
# shapes)
_keeps_bits: dict[tuple, dict[int, bool]] = {}


def _forget(module: nn.Module) -> None:
    with _stacking:
        _stacks.pop(module, None)


# forget_packed (after writes through .data, which no version counter sees) drops the stacks too
FORGET_HOOKS.append(_forget)


def projections(owner: nn.Module, linears: tuple[nn.Module, ...], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each of ``linears``' products with ``x``: views of one stacked product where they can be stacked, the packing
    serves x's row count and the stacked product gave the separate ones' bits at that count, else each layer's own.
    The first call at a row count computes both and returns the layers' own: checking every count up front cost
    ~0.9 s at a run's start (fp32, 128 counts, two shapes), where a run meets a few dozen counts."""
    stack = _stack(owner, linears, x)
    rows = x.numel() // x.shape[-1]
    same = None if stack is None else stack.same_bits.get(rows)
    if stack is None or same is False:
        return tuple(m(x) for m in linears)
    if same is None:
        apart = tuple(m(x) for m in linears)
        try:
            together = _stacked_product(linears, stack, x)
        except RuntimeError as e:  # a kernel this build lacks for these shapes: the layers' own from now on
            log.warning("stacked projections refused at %d rows: %s", rows, e)
            together = None
        stack.same_bits[rows] = together is not None and _same_bits(apart, together)
        return apart
    return _stacked_product(linears, stack, x)


def _stacked_product(linears: tuple[nn.Module, ...], stack: Stack, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return linears[0].packing.product(x, stack.packed, stack.shape, stack.bias).split(stack.sizes, dim=-1)


def _stack(owner: nn.Module, linears: tuple[nn.Module, ...], x: torch.Tensor) -> Stack | None:
    if torch.is_grad_enabled() or not all(type(m) is PrepackedLinear for m in linears):
        return None
    first = linears[0]
    packing = first.packing
    if not isinstance(packing, OneDNNPacking) or any(m.packing is not packing for m in linears):
        return None
    if x.dtype != first.weight.dtype or not x.is_contiguous() or x.device.type != "cpu":
        return None
    rows = x.numel() // x.shape[-1]
    if not packing.serves(rows, first.pack_rows):
        return None
    stack = _stacks.get(owner)
    if stack is None or any(t is not s or v != _version(t) for t, (s, v) in zip(_tensors(linears), stack.sources)):
        with _stacking:
            stack = _stacks[owner] = _make_stack(packing, linears)
    return stack if stack.packed is not None else None


def _tensors(linears: tuple[nn.Module, ...]) -> list[torch.Tensor | None]:
    return [t for m in linears for t in (m.weight, m.bias)]


def _version(t: torch.Tensor | None) -> int:
    return 0 if t is None else t._version


def _make_stack(packing: Packing, linears: tuple[nn.Module, ...]) -> Stack:
    weights = [m.weight.detach() for m in linears]
    biases = [m.bias for m in linears]
    sources = [(t, _version(t)) for t in _tensors(linears)]
    sizes = [w.shape[0] for w in weights]
    stacked = torch.cat(weights)
    bias = None if all(b is None for b in biases) else torch.cat([_bias_or_zeros(m) for m in linears]).detach()
    shape = torch.empty(stacked.shape, dtype=stacked.dtype, device="meta")
    # which layers have a bias: a zero bias fused where a layer has none may take another kernel (prepacked_linear)
    has_bias = tuple(b is not None for b in biases)
    key = (packing, stacked.dtype, tuple(tuple(w.shape) for w in weights), has_bias, linears[0].pack_rows)
    same_bits = _keeps_bits.setdefault(key, {})
    if not _fits(stacked):
        return Stack(sources, None, shape, bias, sizes, same_bits)
    return Stack(sources, packing.pack(stacked, linears[0].pack_rows), shape, bias, sizes, same_bits)


def _bias_or_zeros(m: nn.Module) -> torch.Tensor:
    return m.bias if m.bias is not None else torch.zeros(m.weight.shape[0], dtype=m.weight.dtype)


def _fits(stacked: torch.Tensor) -> bool:
    """Whether this stack's packed copy fits beside the others in a sixteenth of the memory (prepack_linears allows
    the layers' own packed copies an eighth)."""
    used = sum(s.packed.numel() * s.packed.element_size() for s in _stacks.values() if s.packed is not None)
    return used + stacked.numel() * stacked.element_size() <= memory_bytes() // 16


def _same_bits(apart: tuple[torch.Tensor, ...], together: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(a, t) for a, t in zip(apart, together))
