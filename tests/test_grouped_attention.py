"""The attention slot decoding registers (backends/grouped_attention.py): bf16 steps over fp32 keys take fp32 scores
by products; their outputs are the attention's, at the flash kernel's precision."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from cotbridge.backends import decoding_step
from cotbridge.backends.base import Request
from cotbridge.backends.grouped_attention import _grouped_query_sdpa, _scores_in_fp32
from cotbridge.backends.hf import HFBackend
from cotbridge.backends.slot_decoding import SlotDecoder
from tests.test_hf_backend import PROMPTS


def inputs(width: int, dtype=torch.bfloat16):
    """Queries of 6 heads over 2 key/value heads (groups of 3), ``width`` queries a row, 4 rows of 40 keys; row 1
    sees only its last 25 keys (another prompt's padding before them) and each query block is causal."""
    g = torch.Generator().manual_seed(width)
    q = torch.randn(4, 6, width, 16, generator=g).to(dtype)
    k, v = (torch.randn(4, 2, 40, 16, generator=g).to(dtype) for _ in range(2))
    mask = torch.ones(4, 1, width, 40, dtype=torch.bool)
    mask[1, :, :, :15] = False
    mask[:, :, :, 40 - width :] &= torch.ones(width, width, dtype=torch.bool).tril()
    return q, k, v, mask


@pytest.mark.parametrize("width", [1, 3])
def test_fp32_scores_are_the_attention_at_bf16_precision(width):
    q, k, v, mask = inputs(width)
    got = _scores_in_fp32(q, k.float(), v, mask, 0.3)  # [rows, width, heads, dim]
    assert got.dtype == torch.bfloat16 and got.shape == (4, width, 6, 16)
    # the same attention in fp64 from the same bf16 values, each query head on its own key/value head
    exact = F.scaled_dot_product_attention(
        q.double(), k.double().repeat_interleave(3, 1), v.double().repeat_interleave(3, 1), attn_mask=mask, scale=0.3
    ).transpose(1, 2)
    error = (got.double() - exact).abs()
    assert error.max() < 2**-7 * exact.abs().max()  # a bf16 rounding or two, not a wrong head or key
    flash = F.scaled_dot_product_attention(
        q.reshape(4, 2, 3 * width, 16), k, v, attn_mask=mask.repeat(1, 1, 3, 1), scale=0.3
    ).reshape(4, 6, width, 16)
    flash_error = (flash.transpose(1, 2).double() - exact).abs()
    assert error.mean() < 1.5 * flash_error.mean()  # the flash kernel's precision (eager's rounded scores: ~2-4x)
    # the padding is not attended: changing a masked key changes nothing
    k2 = k.clone()
    k2[1, :, :15] = 100
    assert torch.equal(_scores_in_fp32(q, k2.float(), v, mask, 0.3), got)


def test_the_registered_attention_takes_fp32_scores_only_for_fp32_keys(monkeypatch):
    taken = []
    monkeypatch.setattr(
        "cotbridge.backends.grouped_attention._scores_in_fp32", lambda *a: taken.append(a[1].dtype) or a[0]
    )
    module = type("Attention", (), {"num_key_value_groups": 3})()
    q, k, v, mask = inputs(1)
    _grouped_query_sdpa(module, q, k, v, mask, scaling=0.3)
    assert taken == []  # same dtypes: SDPA
    _grouped_query_sdpa(module, q, k.float(), v, mask, scaling=0.3)
    assert taken == [torch.float32]


def texts(out):
    return [[c.text for c in cs] for cs in out]


def test_bf16_slot_decoding_keeps_fp32_keys_and_decodes_with_them(tiny_model_dir, monkeypatch):
    import cotbridge.backends.grouped_attention as grouped

    calls = []
    real = grouped._scores_in_fp32
    monkeypatch.setattr(grouped, "_scores_in_fp32", lambda *a: calls.append(a[1].dtype) or real(*a))
    key_dtypes = []
    allocate = SlotDecoder._allocate

    def watched(self, *a):
        allocate(self, *a)
        key_dtypes.append((self.keys[0].dtype, self.values[0].dtype))

    monkeypatch.setattr(SlotDecoder, "_allocate", watched)
    reqs = [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS, [12, 30, 7, 25])]
    fp32_keys = HFBackend(str(tiny_model_dir), dtype="bfloat16", batch_size=3)
    with fp32_keys.keeping_prefixes():
        first = fp32_keys.generate(reqs, progress=False)
        # finished sequences' keys/values are stored in the model's dtype (a later pre-fill after them reads them)
        stored = list(fp32_keys.prefixes.entries.values())
        assert stored and all(kv.dtype == torch.bfloat16 for kv in stored)
        # a prompt that continues a finished sequence is pre-filled after its stored keys/values
        again = [Request(prompt=r.prompt + c[0].text + " and", max_tokens=5) for r, c in zip(reqs, first)]
        fp32_keys.generate(again, progress=False)
        assert fp32_keys.stats["reused_tokens"] > 0
    assert key_dtypes and set(key_dtypes) == {(torch.float32, torch.bfloat16)}
    assert decoding_step._SAME_BITS[fp32_keys.model] == {"cotbridge_slots": True}  # the lean step: model()'s bits
    assert len(calls) > 20 and set(calls) == {torch.float32}  # every layer of every step
    assert texts(fp32_keys.generate(reqs, progress=False)) == texts(first)  # repeatable
    # the flash kernel's side (off): keys in bf16, no fp32 scores
    calls.clear()
    key_dtypes.clear()
    monkeypatch.setattr(SlotDecoder, "fp32_keys_on_cpu", False)
    HFBackend(str(tiny_model_dir), dtype="bfloat16", batch_size=3).generate(reqs, progress=False)
    assert calls == [] and set(key_dtypes) == {(torch.bfloat16, torch.bfloat16)}
