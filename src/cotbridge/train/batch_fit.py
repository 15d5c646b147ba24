"""The training batch a GPU's memory allows: ``TrainConfig.batch_size = "auto"``.

On one H200, SmolLM2-135M with LoRA at 8 rows a step trained at 7,279 real tokens/s, about 0.5% of the GPU's bf16
peak: the batch, not the GPU, set the pace. "auto" takes, on a GPU, the largest power of two up to ``AUTO_MAX_ROWS``
whose estimated training memory fits ``FREE_FRACTION`` of the device's free memory, and turns on transformers'
``auto_find_batch_size``, which halves the batch and starts again if a step still runs out of memory (the estimate
is an estimate). On a CPU "auto" is ``CPU_ROWS``: there the batch is a matter of time per step, not memory, and 8 is
what the published CPU settings were tuned with.

A larger batch means fewer optimizer steps per epoch at the same learning rate; a recipe whose accuracy depends on
its batch (the quickstart) names it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

CPU_ROWS = 8
AUTO_MAX_ROWS = 64  # beyond this a small student's epoch has too few steps for the recipes' learning rates
FREE_FRACTION = 0.7  # of the free memory; the rest for the allocator's fragmentation and the estimate's error
# Activations kept for the backward pass, bytes per token, layer and hidden unit at 2-byte precision, without the
# attention-score term (SDPA / flash attention keep no scores): Korthikanti et al. 2022, "Reducing Activation
# Recomputation in Large Transformer Models", section 4.1.
ACTIVATION_BYTES_PER_HIDDEN = 34
ADAM_BYTES_PER_TRAINED_PARAM = 16  # fp32 gradient, two fp32 moments, and the step's temporaries


def row_bytes(config: Any, tokens: int, value_bytes: int) -> int:
    """Training memory of one row of ``tokens`` tokens: the layers' activations and the vocabulary's fp32 logits
    with their gradient."""
    text = getattr(config, "text_config", None) or config
    per_layer = ACTIVATION_BYTES_PER_HIDDEN * text.hidden_size * value_bytes // 2
    logits = 2 * 4 * text.vocab_size
    return tokens * (text.num_hidden_layers * per_layer + logits)


def fitting_rows(per_row: int, free_bytes: int, fixed_bytes: int = 0, cap: int = AUTO_MAX_ROWS) -> int:
    """The largest power of two up to ``cap`` rows of ``per_row`` bytes that, with ``fixed_bytes`` (optimizer state),
    fits FREE_FRACTION of ``free_bytes``; at least 1."""
    budget = free_bytes * FREE_FRACTION - fixed_bytes
    rows = 1 << (max(cap, 1).bit_length() - 1)
    while rows > 1 and rows * per_row > budget:
        rows //= 2
    return rows


def train_batch_size(batch_size: int | str, model: Any, max_length: int, lora: bool, mixed_bf16: bool) -> int:
    """Rows per step and process: ``batch_size`` itself when it is a number, else what "auto" means here."""
    if batch_size != "auto":
        return int(batch_size)
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return CPU_ROWS
    free, _ = torch.cuda.mem_get_info(device)
    params = sum(p.numel() for p in model.parameters())
    trained = params // 100 if lora else params  # LoRA adapters: well under 1% of the weights
    value_bytes = 2 if mixed_bf16 or next(model.parameters()).dtype != torch.float32 else 4
    per_row = row_bytes(model.config, max_length, value_bytes)
    rows = fitting_rows(per_row, free, trained * ADAM_BYTES_PER_TRAINED_PARAM)
    log.info(
        "batch_size auto: %d rows of %d tokens (%.1f GB each, estimated; %.1f GB free on %s)",
        rows,
        max_length,
        per_row / 1e9,
        free / 1e9,
        device,
    )
    return rows


def finds_batch_on_oom(batch_size: int | str, model: Any) -> bool:
    """Whether transformers should halve the batch when a step runs out of memory: for an estimated GPU batch."""
    return batch_size == "auto" and next(model.parameters()).device.type == "cuda"
