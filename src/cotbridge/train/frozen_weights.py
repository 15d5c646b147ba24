"""Frozen linear weights cast to bf16 once per training run, instead of at every product.

Under bf16 autocast a product with an fp32 weight casts the weight first, and autocast keeps the cast only for
weights that train: a LoRA run casts every frozen base weight again in each forward pass. On a CPU with AMX that was
~10% of a SmolLM2-135M quickstart step (bench/results/quickstart_speed_round3.md). The copy made here holds the bits
autocast would make, so training is unchanged (tests/test_frozen_weights.py); outside autocast (dev generation, the
LoRA merge) the fp32 weight is used, and the modules get their own forward back when training ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F


def _forward(module: torch.nn.Linear, low: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == low.dtype:
        return F.linear(x, low, module.bias)
    return F.linear(x, module.weight, module.bias)


@contextlib.contextmanager
def frozen_weights_cast_once(model: Any, enabled: bool) -> Iterator[int]:
    """While open, every frozen fp32 ``nn.Linear`` on the CPU multiplies by a bf16 copy of its weight under bf16
    autocast. Yields how many linears were given a copy."""
    patched = []
    if enabled:
        for module in model.modules():
            w = module.weight if type(module) is torch.nn.Linear else None
            if w is not None and not w.requires_grad and w.dtype == torch.float32 and w.device.type == "cpu":
                module.forward = partial(_forward, module, w.detach().to(torch.bfloat16))
                patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward  # the class's forward again
