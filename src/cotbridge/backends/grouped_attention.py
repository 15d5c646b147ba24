"""The attention that slot decoding registers with transformers: SDPA, except that a block of several queries (a
step that checks prompt-lookup drafts) attends per key/value head instead of copying the cache per query head, and
that a bf16/fp16 step whose keys the decoder keeps in fp32 (on a CPU) takes its scores as fp32 products.

Why the second: torch's CPU flash kernel, which SDPA picks for bf16, packs each (row, key/value head)'s keys and
values anew for every call; a decoding step has 1-5 queries per head, so that packing is most of its time (one
SmolLM2-135M layer at 50 rows x 200 keys: 0.8-0.9 ms). Two batched products over the same values take about half:
scores from fp32 queries and keys (bf16 x bf16 products are exact in fp32, summed in fp32 as the flash kernel sums
them), a softmax in fp32, and the bf16 probabilities times the bf16 values with fp32 sums, the flash kernel's own
precisions (bench/results/decode_attention.md: errors against fp64 1.1-1.2x the flash kernel's, transformers'
eager attention, which rounds the scores to bf16, 3.5x). A decoding step at 50 rows took 0.84-0.88x the time. fp32
steps keep SDPA: no faster there at 16 rows, and it gives lm-eval's bits.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

# The mask of the step being decoded, repeated for the stacked query heads: the same for every layer of a forward.
# Per thread: two servers' decoders may run at once.
_REPEATED = threading.local()


def _grouped_query_sdpa(
    module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any, **kw: Any
):
    """transformers' SDPA attention, except that a block of several queries with a mask (a step that checks drafts)
    attends per key/value head: the query heads sharing a key/value head are stacked along the query axis, where
    transformers would copy the whole key/value cache once per query head (``repeat_kv``) in every layer."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if key.dtype != query.dtype:  # the decoder's fp32 keys (SlotDecoder.key_dtype)
        return _scores_in_fp32(query, key, value, mask, kw.get("scaling")), None
    if groups == 1 or mask is None or query.shape[2] == 1 or kw.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, mask, **kw)
    b, heads, q, d = query.shape
    stacked = query.reshape(b, heads // groups, groups * q, d)  # query head kv*groups + g -> rows g*q .. g*q+q-1
    out = torch.nn.functional.scaled_dot_product_attention(
        stacked, key, value, attn_mask=_repeated(mask, groups, q), scale=kw.get("scaling")
    )
    return out.reshape(b, heads, q, d).transpose(1, 2).contiguous(), None


def _repeated(mask: torch.Tensor, groups: int, width: int, additive: bool = False) -> torch.Tensor:
    """The step's mask for the query heads stacked ``groups`` deep along the query axis (a block of ``width``
    queries; one query broadcasts); ``additive``: as fp32 to add to the scores (-inf where not seen). Made once per
    forward and kept for its other layers."""
    key = (groups if width > 1 else 1, additive)
    if getattr(_REPEATED, "of", None) is not mask or _REPEATED.key != key:
        repeated = mask.repeat(1, 1, key[0], 1) if key[0] > 1 else mask
        if additive and repeated.dtype == torch.bool:
            repeated = torch.zeros(repeated.shape, device=mask.device).masked_fill_(~repeated, float("-inf"))
        elif additive:
            repeated = repeated.float()
        _REPEATED.of, _REPEATED.key, _REPEATED.mask = mask, key, repeated
    return _REPEATED.mask


def _scores_in_fp32(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, scaling: float | None
) -> torch.Tensor:
    """Attention of bf16/fp16 queries [rows, heads, width, dim] over fp32 keys and bf16/fp16 values [rows, kv heads,
    length, dim] as two batched products (the module docstring says why); [rows, width, heads, dim] like SDPA's."""
    b, heads, width, d = query.shape
    groups = heads // key.shape[1]
    stacked = query.reshape(b, key.shape[1], groups * width, d).float()  # query head kv*groups + g: rows g*width..
    scores = torch.matmul(stacked, key.transpose(-1, -2))
    scores *= d**-0.5 if scaling is None else scaling
    if mask is not None:
        scores += _repeated(mask, groups, width, additive=True)
    out = torch.matmul(torch.softmax(scores, -1).to(value.dtype), value)
    return out.reshape(b, heads, width, d).transpose(1, 2).contiguous()


ATTENTION = "cotbridge_slots"


def register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, _grouped_query_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
