"""Projections of one input as one stacked packed product (models/stacked_projections.py): the separate products'
bits, made again when a weight changes, and not used where they would break bits, memory or autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cotbridge.models import stacked_projections
from cotbridge.models.prepacked_linear import MAX_ROWS, OneDNNPacking, cpu_packs, forget_packed, prepack_linears
from cotbridge.models.stacked_projections import projections

needs_bf16 = pytest.mark.skipif(not cpu_packs(torch.bfloat16), reason="this CPU has no native bf16 in oneDNN")


@pytest.fixture(autouse=True)
def fresh_verdicts(monkeypatch):
    """No row count's verdict carried over from another test (they are shared by shapes, process-wide)."""
    monkeypatch.setattr(stacked_projections, "_keeps_bits", {})


def packed_layers(
    sizes=(96, 32, 32), n_in: int = 64, dtype=torch.bfloat16, pack: bool = True, bias=(False, False, False)
) -> nn.ModuleList:
    torch.manual_seed(0)
    owner = nn.ModuleList(nn.Linear(n_in, n, bias=b).to(dtype) for n, b in zip(sizes, bias))
    if pack:
        assert prepack_linears(owner) == len(sizes)
    return owner


def separate(owner, x):
    return [m(x) for m in owner]


def stack_product(owner, calls: list, monkeypatch) -> None:
    """Records in ``calls`` the row count of each product with ``owner``'s stacked weight (a product whose weight has
    the stack's row count) from now on."""
    stack = stacked_projections._stacks[owner]
    packing = owner[0].packing
    real = type(packing).product

    def product(self, x, packed, w, bias):
        if w.shape[0] == stack.shape.shape[0]:
            calls.append(x.numel() // x.shape[-1])
        return real(self, x, packed, w, bias)

    monkeypatch.setattr(type(packing), "product", product)


def stack_product_off_by_one_ulp(owner, calls: list, monkeypatch) -> None:
    """As stack_product, and the stacked product's first element moved by one ulp (a kernel summing otherwise)."""
    stack = stacked_projections._stacks[owner]
    packing = owner[0].packing
    real = type(packing).product

    def product(self, x, packed, w, bias):
        out = real(self, x, packed, w, bias)
        if w.shape[0] == stack.shape.shape[0]:
            calls.append(x.numel() // x.shape[-1])
            out = out.clone()
            out.view(-1)[0] = torch.nextafter(out.view(-1)[0], torch.tensor(float("inf"), dtype=out.dtype))
        return out

    monkeypatch.setattr(type(packing), "product", product)


@needs_bf16
@pytest.mark.parametrize("bias", [(False, False, False), (True, True, True), (True, False, True)])
@pytest.mark.parametrize("rows", [1, 3, 16, 80, 128])
def test_a_stacked_product_has_the_separate_products_bits(rows, bias, monkeypatch):
    owner = packed_layers(bias=bias)  # Llama: no biases; Qwen2: query/key/value biases
    x = torch.randn(rows, 1, 64).to(torch.bfloat16)
    with torch.no_grad():
        first = projections(owner, tuple(owner), x)  # the first call at this row count: checked, the layers' own
        stack = stacked_projections._stacks[owner]
        assert stack.packed is not None and stack.same_bits[rows] is True
        calls = []
        stack_product(owner, calls, monkeypatch)
        together = projections(owner, tuple(owner), x)
        apart = separate(owner, x)
    assert calls == [rows]  # the stacked path ran
    assert [t.shape for t in together] == [a.shape for a in apart]
    assert all(torch.equal(t, a) for t, a in zip(together, apart))
    assert all(torch.equal(f, a) for f, a in zip(first, apart))


@needs_bf16
def test_a_changed_weight_is_stacked_again():
    owner = packed_layers()
    x = torch.randn(16, 64).to(torch.bfloat16)
    with torch.no_grad():
        before = projections(owner, tuple(owner), x)
        owner[1].weight.mul_(2)  # in place: the version counter moves
        after = projections(owner, tuple(owner), x)
        assert torch.equal(after[1], separate(owner, x)[1]) and not torch.equal(after[1], before[1])
        owner[2].weight = nn.Parameter(owner[2].weight * 3)  # a new tensor
        assert torch.equal(projections(owner, tuple(owner), x)[2], separate(owner, x)[2])
        owner[0].weight.data.mul_(5)  # through .data: no version counter sees it; forget_packed is the documented way
        forget_packed(owner)
        assert torch.equal(projections(owner, tuple(owner), x)[0], separate(owner, x)[0])


@needs_bf16
def test_a_changed_bias_is_stacked_again():
    owner = packed_layers(bias=(True, True, True))
    x = torch.randn(16, 64).to(torch.bfloat16)
    with torch.no_grad():
        projections(owner, tuple(owner), x)
        owner[1].bias.add_(1)
        assert torch.equal(projections(owner, tuple(owner), x)[1], separate(owner, x)[1])


@pytest.mark.parametrize("why", ["plain layers", "autograd", "bits", "memory", "rows the packing does not serve"])
def test_no_stack_where_it_would_not_hold(why, monkeypatch):
    dtype = torch.bfloat16 if cpu_packs(torch.bfloat16) else torch.float32
    if why == "rows the packing does not serve" and dtype == torch.float32:
        pytest.skip("oneDNN's fp32 packs serve every row count")
    owner = packed_layers(dtype=dtype, pack=why != "plain layers")
    if why == "bits":
        monkeypatch.setattr(stacked_projections, "_same_bits", lambda *a: False)
        monkeypatch.setattr(stacked_projections, "_keeps_bits", {})
    if why == "memory":
        monkeypatch.setattr(stacked_projections, "memory_bytes", lambda: 1024)
    x = torch.randn(MAX_ROWS + 1 if why == "rows the packing does not serve" else 16, 64).to(dtype)
    with torch.set_grad_enabled(why == "autograd"):
        for _ in range(2):  # a second call at the same row count: the stacked product's, had the check allowed it
            out = projections(owner, tuple(owner), x)
            assert all(torch.equal(t, a) for t, a in zip(out, separate(owner, x)))
    stack = stacked_projections._stacks.get(owner)
    if why == "bits" and isinstance(owner[0].packing, OneDNNPacking):
        assert stack is not None and stack.same_bits == {16: False}  # tried, and refused at that row count
    elif why == "memory" and isinstance(owner[0].packing, OneDNNPacking):
        assert stack is not None and stack.packed is None  # tried, and refused
    else:  # never tried (fp32 on an AVX-512 CPU packs with MKL, which is not stacked)
        assert stack is None


@needs_bf16
def test_a_row_count_whose_stacked_bits_differ_takes_the_layers_own_products(monkeypatch):
    owner = packed_layers()
    with torch.no_grad():
        projections(owner, tuple(owner), torch.randn(4, 64).to(torch.bfloat16))  # the stack, made and checked at 4
        calls = []
        stack_product_off_by_one_ulp(owner, calls, monkeypatch)
        x = torch.randn(16, 64).to(torch.bfloat16)
        first = projections(owner, tuple(owner), x)
        second = projections(owner, tuple(owner), x)
        apart = separate(owner, x)
    stack = stacked_projections._stacks[owner]
    assert stack.same_bits == {4: True, 16: False}
    assert calls == [16]  # tried once, at the check; the second call took the layers' own products
    assert all(torch.equal(f, a) and torch.equal(s, a) for f, s, a in zip(first, second, apart))


@needs_bf16
def test_a_stacked_product_that_fails_is_refused_at_that_row_count(monkeypatch, caplog):
    owner = packed_layers()
    real = stacked_projections._stacked_product

    def fails_at_8_rows(linears, stack, x):
        if x.numel() // x.shape[-1] == 8:
            raise RuntimeError("no kernel for this shape")
        return real(linears, stack, x)

    monkeypatch.setattr(stacked_projections, "_stacked_product", fails_at_8_rows)
    with torch.no_grad():
        for rows in (8, 8, 5, 5):
            x = torch.randn(rows, 64).to(torch.bfloat16)
            out = projections(owner, tuple(owner), x)
            assert all(torch.equal(t, a) for t, a in zip(out, separate(owner, x)))
    assert stacked_projections._stacks[owner].same_bits == {8: False, 5: True}
    assert "refused at 8 rows" in caplog.text
