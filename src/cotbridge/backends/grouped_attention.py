"""The attention that slot decoding registers with transformers: SDPA, except that a block of several queries (a
step that checks prompt-lookup drafts) attends per key/value head instead of copying the cache per query head."""

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
    if groups == 1 or mask is None or query.shape[2] == 1 or kw.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, mask, **kw)
    b, heads, q, d = query.shape
    stacked = query.reshape(b, heads // groups, groups * q, d)  # query head kv*groups + g -> rows g*q .. g*q+q-1
    if getattr(_REPEATED, "of", None) is not mask or _REPEATED.groups != groups:  # once per forward, not per layer
        _REPEATED.of, _REPEATED.groups, _REPEATED.mask = mask, groups, mask.repeat(1, 1, groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        stacked, key, value, attn_mask=_REPEATED.mask, scale=kw.get("scaling")
    )
    return out.reshape(b, heads, q, d).transpose(1, 2).contiguous(), None


ATTENTION = "cotbridge_slots"


def register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, _grouped_query_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)
