"""Linear layers packed once for the CPU's matrix kernels (models/prepacked_linear.py): oneDNN, and for fp32 MKL's
packs first on AVX-512 CPUs (and where oneDNN's rows would depend on each other); bf16 products with the same numbers
as ``F.linear``, fp32 products whose rows do not depend on the rows beside them; only without autograd, and never
from a stale copy of a weight that changed."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cotbridge.backends.base import Request
from cotbridge.backends.hf import HFBackend
from cotbridge.models import prepacked_linear
from cotbridge.models.prepacked_linear import PrepackedLinear, cpu_packs, forget_packed, prepack_linears
from tests.test_hf_backend import PROMPTS

needs_bf16 = pytest.mark.skipif(not cpu_packs(torch.bfloat16), reason="this CPU has no native bf16 in oneDNN")
needs_mkl = pytest.mark.skipif(
    not prepacked_linear.MKLPacking().available(torch.float32), reason="this torch build has no MKL"
)
needs_fp32_onednn = pytest.mark.skipif(
    not prepacked_linear.OneDNNPacking("row-independent").available(torch.float32), reason="this torch has no oneDNN"
)


def packed_layer(n_in: int = 96, n_out: int = 160, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(n_in, n_out, bias=bias).to(torch.bfloat16)
    assert prepack_linears(nn.Sequential(layer)) == 1
    return layer


@needs_bf16
@pytest.mark.parametrize("rows", [1, 3, 16, 17, 80, 128])
def test_a_packed_product_has_the_bits_of_f_linear(rows):
    layer = packed_layer()
    x = torch.randn(1, rows, 96).to(torch.bfloat16)
    with torch.no_grad():
        out = layer(x)
    assert prepacked_linear._packed.get(layer) is not None  # the packed path ran
    assert torch.equal(out, nn.functional.linear(x, layer.weight, layer.bias))


@needs_bf16
def test_training_takes_the_plain_path_and_gets_gradients():
    layer = packed_layer()
    x = torch.randn(4, 96).to(torch.bfloat16).requires_grad_()
    layer(x).sum().backward()
    assert prepacked_linear._packed.get(layer) is None
    assert layer.weight.grad is not None and x.grad is not None


@needs_bf16
def test_writes_through_data_need_forget_packed():
    layer = packed_layer(bias=False)
    x = torch.randn(16, 96).to(torch.bfloat16)
    with torch.no_grad():
        layer(x)
        layer.weight.data += 1  # PEFT's default merge: the version counter does not see it
        forget_packed(nn.Sequential(layer))
        assert torch.equal(layer(x), nn.functional.linear(x, layer.weight))


@needs_bf16
def test_a_strided_input_takes_the_plain_path():
    layer = packed_layer()
    x = torch.randn(96, 16).to(torch.bfloat16).t()
    with torch.no_grad():
        assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    assert prepacked_linear._packed.get(layer) is None


@needs_bf16
def test_a_changed_weight_is_packed_again():
    layer = packed_layer(bias=False)
    x = torch.randn(16, 96).to(torch.bfloat16)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)  # in place, as merging an adapter or loading a state dict does
        after = layer(x)
        assert torch.equal(after, nn.functional.linear(x, layer.weight))
        assert not torch.equal(after, before)
        layer.weight = nn.Parameter(torch.randn(160, 96).to(torch.bfloat16))  # a new tensor altogether
        assert torch.equal(layer(x), nn.functional.linear(x, layer.weight))


@needs_bf16
def test_only_plain_linear_layers_of_a_bf16_cpu_model_are_packed():
    class Custom(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(8, 8), Custom(8, 8), nn.Linear(8, 4)).to(torch.bfloat16)
    assert prepack_linears(model, budget_bytes=0) == 0  # the copies would not fit
    assert prepack_linears(model) == 2
    assert [type(m).__name__ for m in model] == ["PrepackedLinear", "Custom", "PrepackedLinear"]
    clone = copy.deepcopy(model)  # the model pool copies models: the copy packs its own weights
    with torch.no_grad():
        clone(torch.randn(2, 8).to(torch.bfloat16))
    assert prepacked_linear._packed.get(clone[0]) is not None and prepacked_linear._packed.get(model[0]) is None


@pytest.mark.parametrize(
    "dtype, slots, flags, packing",
    [
        pytest.param("bfloat16", 4, None, "oneDNN", marks=needs_bf16),
        pytest.param("float32", 16, frozenset(), "oneDNN", marks=needs_fp32_onednn),
        pytest.param("float32", 16, frozenset({"avx512f"}), "MKL", marks=needs_mkl),
    ],
)
def test_a_backend_generates_what_it_generates_unpacked(dtype, slots, flags, packing, tiny_model_dir, monkeypatch):
    if flags is not None:  # the packing tried first on such a CPU (an Intel one), whatever this one is
        monkeypatch.setattr(prepacked_linear, "cpu_flags", lambda: flags)
        monkeypatch.setattr(prepacked_linear, "cpu_vendor", lambda: "GenuineIntel")
    reqs = [Request(prompt=p, max_tokens=m) for p, m in zip(PROMPTS * 5, [12, 30, 7, 20] * 5)]
    reqs.append(Request(prompt=PROMPTS[0], n=4, temperature=1.0, top_p=0.9, max_tokens=10, seed=3))
    packed = HFBackend(str(tiny_model_dir), dtype=dtype, batch_size=slots)
    names = {m.packing.name for m in packed.model.modules() if isinstance(m, PrepackedLinear)}
    if packing == "oneDNN" and dtype == "float32" and names == {"MKL"}:
        pytest.skip("oneDNN's fp32 rows depend on the rows beside them on this CPU")
    assert names == {packing}
    monkeypatch.setattr(prepacked_linear, "memory_bytes", lambda: 0)  # no room for copies: the plain path
    plain = HFBackend(str(tiny_model_dir), dtype=dtype, batch_size=slots)
    assert not any(isinstance(m, PrepackedLinear) for m in plain.model.modules())
    texts = lambda out: [[c.text for c in cs] for cs in out]  # noqa: E731
    assert texts(packed.generate(reqs, progress=False)) == texts(plain.generate(reqs, progress=False))
    assert all(
        prepacked_linear._packed.get(m) is not None for m in packed.model.modules() if type(m) is PrepackedLinear
    )


@needs_bf16
def test_a_lora_adapter_wraps_packed_base_layers(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    backend = HFBackend(str(tiny_model_dir), dtype="bfloat16", batch_size=4)
    reference = copy.deepcopy(backend.model)
    for m in reference.modules():
        if type(m) is PrepackedLinear:
            m.__class__ = nn.Linear
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    lora = get_peft_model(backend.model, cfg)
    torch.manual_seed(1)
    lora_ref = get_peft_model(reference, cfg)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        adapted = lora(input_ids=ids).logits
        assert torch.equal(adapted, lora_ref(input_ids=ids).logits)
        with lora.disable_adapter():
            assert not torch.equal(lora(input_ids=ids).logits, adapted)  # the adapter adds to the packed base
    assert any(type(m) is PrepackedLinear for m in lora.modules())


@needs_fp32_onednn
def test_fp32_packs_serve_every_row_count_and_a_row_has_the_same_bits_whatever_rows_share_its_product():
    torch.manual_seed(0)
    layer = nn.Linear(96, 160)  # with a bias: fused into the product, a single row took another kernel
    if prepack_linears(nn.Sequential(layer), rows=8) == 0:  # refused only where the check finds rows depend
        assert not prepacked_linear.keeps_promise(prepacked_linear.PACKINGS[torch.float32][0], [layer], 8)
        pytest.skip("oneDNN's fp32 rows depend on the rows beside them on this CPU")
    assert layer.packing.promise == "row-independent"
    x = torch.randn(400, 96)  # a pre-fill's worth of rows: served too
    with torch.no_grad():
        together = layer(x)
        assert prepacked_linear._packed.get(layer) is not None  # 400 rows, packed for 8: the packed path ran
        for n in (1, 3, 8, 17, 129):
            assert torch.equal(layer(x[:n]), together[:n])
        torch.testing.assert_close(together, nn.functional.linear(x, layer.weight, layer.bias))


@needs_mkl
def test_fp32_falls_back_to_mkl_packs_for_the_decoding_batch_only(monkeypatch):
    monkeypatch.setitem(prepacked_linear.PACKINGS, torch.float32, (prepacked_linear.MKLPacking(),))
    torch.manual_seed(0)
    layer = nn.Linear(96, 160)
    assert prepack_linears(nn.Sequential(layer), rows=8) == 0  # MKL's packs for few rows round differently
    assert prepack_linears(nn.Sequential(layer), rows=16) == 1
    with torch.no_grad():
        x = torch.randn(3, 96)
        assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
        assert prepacked_linear._packed.get(layer) is None  # 3 rows: the plain path
        x = torch.randn(16, 1, 96)
        assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
        assert prepacked_linear._packed.get(layer) is not None


@needs_mkl
@needs_fp32_onednn
def test_packs_that_round_differently_are_not_used(monkeypatch):
    for packing in (prepacked_linear.OneDNNPacking, prepacked_linear.MKLPacking):
        real = packing.pack
        monkeypatch.setattr(packing, "pack", lambda self, w, rows, real=real: real(self, w * 1.001, rows))
    model = nn.Sequential(nn.Linear(96, 160), nn.Linear(160, 8))
    assert prepack_linears(model, rows=16) == 0  # off in the fourth digit: neither promise holds
    assert all(type(m) is nn.Linear for m in model)


@needs_fp32_onednn
def test_a_row_that_depends_on_the_rows_beside_it_breaks_the_promise(monkeypatch):
    real = prepacked_linear.OneDNNPacking.product

    def lone_rows_round_otherwise(self, x, packed, w, bias):
        out = real(self, x, packed, w, bias)
        return out + 1e-6 * out.abs() if x.shape[0] == 1 else out  # within rounding of F.linear, yet another row

    monkeypatch.setattr(prepacked_linear.OneDNNPacking, "product", lone_rows_round_otherwise)
    monkeypatch.setitem(prepacked_linear.PACKINGS, torch.float32, (prepacked_linear.OneDNNPacking("row-independent"),))
    assert prepack_linears(nn.Sequential(nn.Linear(96, 160, bias=False)), rows=16) == 0


@needs_mkl
@needs_fp32_onednn
def test_a_packing_this_build_cannot_run_gives_way_to_the_next(monkeypatch):
    def missing_kernel(self, w, rows):
        raise RuntimeError("no kernel for this dtype")

    monkeypatch.setattr(prepacked_linear.OneDNNPacking, "pack", missing_kernel)
    monkeypatch.setattr(prepacked_linear, "cpu_flags", frozenset)  # oneDNN tried first, as on an AVX2 CPU
    layer = nn.Linear(96, 160)
    assert prepack_linears(nn.Sequential(layer), rows=16) == 1
    assert isinstance(layer.packing, prepacked_linear.MKLPacking)


@needs_fp32_onednn
def test_a_single_row_is_multiplied_as_two_where_lone_rows_take_another_kernel(monkeypatch):
    # as oneDNN does on an AVX-512 Xeon (Ice Lake) for one row over 1536 inputs: other bits than among other rows
    real = torch.ops.mkldnn._linear_pointwise

    def lone_rows_round_otherwise(x, *args):
        out = real(x, *args)
        return out + 1e-6 * out.abs() if x.numel() == x.shape[-1] else out

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lone_rows_round_otherwise)
    monkeypatch.setitem(prepacked_linear.PACKINGS, torch.float32, prepacked_linear.PACKINGS[torch.float32][:1])
    torch.manual_seed(0)
    layer = nn.Linear(96, 160)
    assert prepack_linears(nn.Sequential(layer), rows=16) == 1 and layer.packing.name == "oneDNN"
    with torch.no_grad():
        x = torch.randn(5, 96)
        assert torch.equal(layer(x[:1]), layer(x)[:1])
        assert torch.equal(layer(x[0]), layer(x)[0])  # a lone vector keeps its shape
    # without the padding the load-time check sees the lone row's other bits and refuses the packs
    alone = prepacked_linear.OneDNNPacking("row-independent", bias_apart=True)
    monkeypatch.setitem(prepacked_linear.PACKINGS, torch.float32, (alone,))
    assert prepack_linears(nn.Sequential(nn.Linear(96, 160)), rows=16) == 0


def test_fp32_tries_mkl_packs_first_on_intel_avx512_cpus_and_onednn_first_elsewhere(monkeypatch):
    monkeypatch.setattr(prepacked_linear, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(prepacked_linear, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert [p.name for p in prepacked_linear.packings(torch.float32)] == ["MKL", "oneDNN"]
    monkeypatch.setattr(prepacked_linear, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert [p.name for p in prepacked_linear.packings(torch.float32)] == ["oneDNN", "MKL"]
    assert [p.name for p in prepacked_linear.packings(torch.bfloat16)] == ["oneDNN"]
    # an AMD EPYC Zen 4 has AVX-512 too, but MKL's packs gained nothing there (prepacked_linear_fp32_zen4.md)
    monkeypatch.setattr(prepacked_linear, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(prepacked_linear, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert [p.name for p in prepacked_linear.packings(torch.float32)] == ["oneDNN", "MKL"]


def test_cpu_vendor_and_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    from cotbridge.models import cpu_features

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\n")
    real_path = cpu_features.Path
    monkeypatch.setattr(cpu_features, "Path", lambda p: info if p == "/proc/cpuinfo" else real_path(p))
    cpu_features._first_cpu.cache_clear(), cpu_features.cpu_flags.cache_clear()
    try:
        assert cpu_features.cpu_vendor() == "AuthenticAMD"
        assert cpu_features.cpu_flags() == frozenset({"fpu", "avx2", "avx512f"})
        info.unlink()  # no /proc/cpuinfo (not Linux): nothing known, nothing preferred
        cpu_features._first_cpu.cache_clear(), cpu_features.cpu_flags.cache_clear()
        assert cpu_features.cpu_vendor() == "" and cpu_features.cpu_flags() == frozenset()
    finally:
        cpu_features._first_cpu.cache_clear(), cpu_features.cpu_flags.cache_clear()
