"""The registered decoding step (backends/decoding_step.py): used after a first step that checks it gives model()'s
bits, and dropped for a model where it does not."""

from __future__ import annotations

import pytest
import torch

from cotbridge.backends import decoding_step
from cotbridge.backends.base import Request
from cotbridge.backends.hf import HFBackend
from cotbridge.models import stacked_projections
from cotbridge.models.prepacked_linear import OneDNNPacking, cpu_packs
from tests.test_hf_backend import PROMPTS


def texts(out):
    return [[c.text for c in cs] for cs in out]


def requests():
    return [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS, [12, 30, 7, 25])]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_step_gives_the_model_s_outputs_and_is_used(tiny_model_dir, monkeypatch, dtype):
    calls = count_step_calls(monkeypatch)
    steps = count_steps(monkeypatch)
    stacked = count_stacked_products(monkeypatch)
    slots = HFBackend(str(tiny_model_dir), dtype=dtype, batch_size=3)
    reference = HFBackend(str(tiny_model_dir), dtype=dtype, batch_size=8, decoding="batches")
    assert texts(slots.generate(requests(), progress=False)) == texts(reference.generate(requests(), progress=False))
    assert decoding_step._SAME_BITS[slots.model] == {"cotbridge_slots": True}
    assert len(calls) == len(steps) > 10  # every step, the first (the check) included
    layer = slots.model.model.layers[0]
    if isinstance(getattr(layer.mlp.up_proj, "packing", None), OneDNNPacking):  # the projections went stacked
        stacks = [stacked_projections._stacks[m] for m in (layer.self_attn, layer.mlp)]
        assert all(s.packed is not None and True in s.same_bits.values() for s in stacks)
        assert len(stacked) > 2 * len(stacks[0].same_bits)  # past each row count's check: the stacked product served
    elif getattr(torch, dtype) == torch.bfloat16 and cpu_packs(torch.bfloat16):
        pytest.fail("bf16 weights on a CPU with native bf16 are packed with oneDNN's layout")


def count_stacked_products(monkeypatch) -> list[int]:
    """Products with a stacked weight (passed on the meta device), counted; verdicts from other tests put aside."""
    monkeypatch.setattr(stacked_projections, "_keeps_bits", {})
    real, stacked = OneDNNPacking.product, []

    def counted(self, x, packed, w, bias):
        if w.is_meta:
            stacked.append(1)
        return real(self, x, packed, w, bias)

    monkeypatch.setattr(OneDNNPacking, "product", counted)
    return stacked


def count_step_calls(monkeypatch) -> list[int]:
    """The registered Llama step, counting its calls."""
    calls = []

    def counted(*a):
        calls.append(1)
        return decoding_step.llama_step(*a)

    monkeypatch.setitem(decoding_step.STEPS, "llama", counted)
    return calls


def count_steps(monkeypatch) -> list[int]:
    from cotbridge.backends import slot_decoding

    steps = []

    def counted(*a):
        steps.append(1)
        return decoding_step.step_logits(*a)

    monkeypatch.setattr(slot_decoding, "step_logits", counted)
    return steps


def test_a_step_that_differs_is_dropped_after_one_try(tiny_model_dir, monkeypatch):
    calls = []

    def off_by_a_bit(*a):
        calls.append(1)
        logits = decoding_step.llama_step(*a)
        return logits + torch.finfo(logits.dtype).eps * logits.abs().max()

    monkeypatch.setitem(decoding_step.STEPS, "llama", off_by_a_bit)
    steps = count_steps(monkeypatch)
    slots = HFBackend(str(tiny_model_dir), dtype="float32", batch_size=3)
    reference = HFBackend(str(tiny_model_dir), dtype="float32", batch_size=8, decoding="batches")
    assert texts(slots.generate(requests(), progress=False)) == texts(reference.generate(requests(), progress=False))
    assert decoding_step._SAME_BITS[slots.model] == {"cotbridge_slots": False}
    assert len(calls) == 1 and len(steps) > 10


def test_an_unregistered_model_type_decodes_through_the_model(tiny_model_dir, monkeypatch):
    monkeypatch.delitem(decoding_step.STEPS, "llama")
    slots = HFBackend(str(tiny_model_dir), dtype="float32", batch_size=3)
    reference = HFBackend(str(tiny_model_dir), dtype="float32", batch_size=8, decoding="batches")
    assert texts(slots.generate(requests(), progress=False)) == texts(reference.generate(requests(), progress=False))
    assert slots.model not in decoding_step._SAME_BITS


def test_every_step_gives_the_model_s_logits_with_drafts_and_shrinking_batches(tiny_model_dir, monkeypatch):
    """Each step's logits against model()'s on the same inputs, with drafts checked (several positions a row) and
    rows leaving: both run, the step first (the model then writes the same cache columns again)."""
    from cotbridge.backends.kv_cache import cache_argument

    widths, rows = set(), set()

    def both(model, ids, mask, positions, cache):
        lean = decoding_step.llama_step(model, ids, mask, positions, cache)
        kw = {cache_argument(model): cache}
        full = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kw).logits
        assert torch.equal(lean, full)
        widths.add(ids.shape[1])
        rows.add(ids.shape[0])
        return lean

    monkeypatch.setitem(decoding_step.STEPS, "llama", both)
    slots = HFBackend(str(tiny_model_dir), dtype="float32", batch_size=4, lookahead=4)
    reqs = [Request(prompt=p * 3, max_tokens=m) for p, m in zip(PROMPTS * 2, [5, 40, 12, 30, 3, 25, 33, 9])]
    slots.generate(reqs, progress=False)
    assert max(widths) > 1 and len(rows) > 1  # drafts were checked, and the batch shrank


@pytest.mark.parametrize("why", ["a forward hook", "training mode"])
def test_a_model_with_hooks_or_in_training_decodes_through_the_model(tiny_model_dir, monkeypatch, why):
    calls = count_step_calls(monkeypatch)
    slots = HFBackend(str(tiny_model_dir), dtype="float32", batch_size=3)
    reference = HFBackend(str(tiny_model_dir), dtype="float32", batch_size=8, decoding="batches")
    seen = []
    if why == "a forward hook":  # e.g. a steering vector added to a layer's output: the step would skip it
        handle = slots.model.model.layers[1].register_forward_hook(lambda m, a, out: seen.append(1))
        reference.model.model.layers[1].register_forward_hook(lambda m, a, out: None)
    else:
        slots.model.train()
        reference.model.train()
    try:
        assert texts(slots.generate(requests(), progress=False)) == texts(
            reference.generate(requests(), progress=False)
        )
    finally:
        slots.model.eval()
        if why == "a forward hook":
            handle.remove()
    assert calls == [] and (why != "a forward hook" or seen)
