"""The training batch a GPU's memory allows: ``TrainConfig.batch_size = "auto"``.

On one H200, SmolLM2-135M with LoRA at 8 rows a step trained at 7,279 real tokens/s, about 0.5% of the GPU's bf16
peak: the batch, not the GPU, set the pace. "auto" takes, on a GPU, the largest power of two up to ``AUTO_MAX_ROWS``
whose estimated training memory fits ``FREE_FRACTION`` of the device's free memory (what PyTorch holds in its cache
counts as free), and turns on transformers' ``auto_find_batch_size``: a step that still runs out of memory (the
estimate is an estimate) is retried with a smaller batch (accelerate shrinks it by 10% a try; 1.4 halved it). On a
CPU "auto" is ``CPU_ROWS``: there the batch is a matter of time per step, not memory, and 8 is what the published
CPU settings were tuned with.

Under several processes (``accelerate launch``) every process must take the same batch, and a retry in one process
alone would leave the others waiting: the estimate then starts from the device's total memory (the same on
identical GPUs) less the model, and nothing is retried.

A larger batch means fewer optimizer steps per epoch at the same learning rate; a recipe whose accuracy depends on
its batch (the quickstart, the paper reproductions) names it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

CPU_ROWS = 8
AUTO_MAX_ROWS = 64  # beyond this a small student's epoch has too few steps for the recipes' learning rates
FREE_FRACTION = 0.7  # of the free memory; the rest for the allocator's fragmentation and the estimate's error
# Activations kept for the backward pass, bytes per token, layer and hidden unit at 2-byte precision, without the
# attention-score term (SDPA / flash attention keep no scores): Korthikanti et al. 2022, "Reducing Activation
# Recomputation in Large Transformer Models", section 4.1. Activation checkpointing keeps each layer's input only
# (2 bytes a hidden unit), plus one layer's full set while it is recomputed.
ACTIVATION_BYTES_PER_HIDDEN = 34
ADAM_BYTES_PER_TRAINED_PARAM = 16  # fp32 gradient, two fp32 moments, and the step's temporaries


def row_bytes(config: Any, tokens: int, value_bytes: int, checkpointing: bool = False) -> int:
    """Training memory of one row of ``tokens`` tokens: the layers' activations and the vocabulary's fp32 logits
    with their gradient. An encoder-decoder row holds ``tokens`` on each side (``max_length`` applies to both)."""
    text = getattr(config, "text_config", None) or config
    layers = text.num_hidden_layers
    if getattr(text, "is_encoder_decoder", False):
        layers += getattr(text, "num_decoder_layers", None) or text.num_hidden_layers
        tokens *= 2
    full_layer = ACTIVATION_BYTES_PER_HIDDEN * text.hidden_size * value_bytes // 2
    activations = layers * text.hidden_size * value_bytes + full_layer if checkpointing else layers * full_layer
    return tokens * (activations + 2 * 4 * text.vocab_size)


def fitting_rows(per_row: int, free_bytes: int, fixed_bytes: int = 0, cap: int = AUTO_MAX_ROWS) -> int:
    """The largest power of two up to ``cap`` rows of ``per_row`` bytes that, with ``fixed_bytes`` (optimizer state),
    fits FREE_FRACTION of ``free_bytes``; at least 1."""
    budget = free_bytes * FREE_FRACTION - fixed_bytes
    rows = 1 << (max(cap, 1).bit_length() - 1)
    while rows > 1 and rows * per_row > budget:
        rows //= 2
    return rows


def several_processes() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def train_batch_size(cfg: Any, model: Any, mixed_bf16: bool) -> int:
    """Rows per step and process for a TrainConfig: its ``batch_size`` when that is a number, else what "auto" means
    for ``model`` where it is."""
    if cfg.batch_size != "auto":
        return int(cfg.batch_size)
    import torch

    first = next(model.parameters())
    if first.device.type != "cuda":
        return CPU_ROWS
    params = sum(p.numel() for p in model.parameters())
    if several_processes():  # each process's model may still sit on GPU 0: size from a whole device of its own
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        free = torch.cuda.get_device_properties(device).total_memory - params * first.element_size()
    else:
        device = first.device
        free = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
        free -= torch.cuda.memory_allocated(device)  # cached by PyTorch for reuse: free for this training
    trained = params // 100 if cfg.lora else params  # LoRA adapters: well under 1% of the weights
    value_bytes = 2 if mixed_bf16 or first.dtype != torch.float32 else 4
    per_row = row_bytes(model.config, cfg.max_length, value_bytes, cfg.gradient_checkpointing)
    rows = fitting_rows(per_row, free, trained * ADAM_BYTES_PER_TRAINED_PARAM)
    log.info(
        "batch_size auto: %d rows of %d tokens (%.2f GB each, estimated; %.1f GB free on %s)",
        rows,
        cfg.max_length,
        per_row / 1e9,
        free / 1e9,
        device,
    )
    return rows


def retries_on_oom(cfg: Any, model: Any) -> bool:
    """Whether transformers should retry a step that runs out of memory with fewer rows: for an estimated GPU batch
    in a single process."""
    return cfg.batch_size == "auto" and next(model.parameters()).device.type == "cuda" and not several_processes()
