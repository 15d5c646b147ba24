"""The local transformers backend on a tiny random model: batching, sampling, stops, loading errors."""

from __future__ import annotations

import pytest

from cotbridge.backends.base import Request, truncate_at_stop
from cotbridge.backends.hf import HFBackend
from cotbridge.errors import UserError
from cotbridge.models.loading import resolve_model_source
from tests.conftest import SMOLLM2_DIR

PROMPTS = [
    "Q: Tom has 3 apples.",
    "A: Let's think step by step. Tom starts with 3 apples and buys 4 more apples.",
    "The answer is",
    "Take the last letters of each word and concatenate them. yes no",
]


def test_batched_greedy_equals_one_at_a_time(tiny_model_dir):
    batched = HFBackend(str(tiny_model_dir), batch_size=8)
    single = HFBackend(str(tiny_model_dir), batch_size=1)
    reqs = [Request(prompt=p, max_tokens=12) for p in PROMPTS]
    a = [c[0].text for c in batched.generate(reqs, progress=False)]
    b = [c[0].text for c in single.generate(reqs, progress=False)]
    assert a == b  # left padding must not change what each prompt generates
    assert all(len(t) > 0 for t in a)


def test_n_samples_per_request_and_order_is_kept(tiny_backend):
    reqs = [Request(prompt=p, n=3, temperature=1.0, max_tokens=8, seed=1) for p in PROMPTS[:2]]
    out = tiny_backend.generate(reqs, progress=False)
    assert [len(c) for c in out] == [3, 3]
    assert len({c.text for c in out[0]}) > 1  # sampling: the three samples differ
    again = tiny_backend.generate(reqs, progress=False)
    assert [[c.text for c in cs] for cs in out] == [[c.text for c in cs] for cs in again]  # seeded
    assert out[0][0].prompt_tokens == len(tiny_backend.tokenizer(PROMPTS[0])["input_ids"])


def test_length_and_stop_finish_reasons(tiny_backend):
    [[free]] = tiny_backend.generate([Request(prompt=PROMPTS[0], max_tokens=6)], progress=False)
    assert free.finish_reason == "length" and free.completion_tokens == 6
    stop = free.text[2:5]
    [[stopped]] = tiny_backend.generate([Request(prompt=PROMPTS[0], max_tokens=6, stop=[stop])], progress=False)
    assert stop not in stopped.text and free.text.startswith(stopped.text)
    assert stopped.finish_reason == "stop"


def test_truncate_at_earliest_stop():
    assert truncate_at_stop("a END b Q: c", ["Q:", "END"]) == ("a ", True)
    assert truncate_at_stop("abc", ["Q:"]) == ("abc", False)


def test_chat_messages_use_the_template(tiny_backend):
    text = tiny_backend.render(Request(messages=[{"role": "user", "content": "hi"}]))
    assert text == "<user>hi\n<assistant>"
    cont = tiny_backend.render(
        Request(
            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}], continue_final=True
        )
    )
    assert cont.endswith("<assistant>x")


@pytest.mark.skipif(not SMOLLM2_DIR.exists(), reason=f"needs the SmolLM2 GGUF folder {SMOLLM2_DIR}")
def test_model_source_resolution(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_source("./no/such/model")
    with pytest.raises(UserError, match="holds no model weights"):
        resolve_model_source(str(tmp_path))
    assert resolve_model_source("HuggingFaceTB/SmolLM2-135M-Instruct") == ("HuggingFaceTB/SmolLM2-135M-Instruct", None)
    assert resolve_model_source(str(SMOLLM2_DIR)) == (str(SMOLLM2_DIR), "SmolLM2-135M-Instruct.Q4_1.gguf")
    gguf = SMOLLM2_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolve_model_source(str(gguf)) == (str(SMOLLM2_DIR), gguf.name)


@pytest.mark.slow
def test_real_smollm2_from_gguf_answers_sensibly():
    backend = HFBackend(str(SMOLLM2_DIR), batch_size=4, dtype="float32")  # bf16 flips this answer: see bench/
    [[c]] = backend.generate(
        [Request(messages=[{"role": "user", "content": "What is 12 + 7? Answer step by step."}], max_tokens=24)],
        progress=False,
    )
    assert "19" in c.text


@pytest.mark.slow
def test_gguf_is_dequantised_once_and_the_copy_loads_the_same_model(tmp_path, monkeypatch, caplog):
    import torch

    from cotbridge.models.loading import dequantised_dir, load_model_and_tokenizer

    monkeypatch.setenv("COTBRIDGE_GGUF_CACHE", str(tmp_path / "deq"))
    # the first load asks for bf16 (generation on a GPU or a bf16 CPU): the kept copy is still the fp32 one
    first_bf16, tok = load_model_and_tokenizer(str(SMOLLM2_DIR), dtype="bfloat16")
    kept = dequantised_dir(str(SMOLLM2_DIR), "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert kept is not None and (kept / "model.safetensors").exists() and not list(kept.parent.glob(".tmp-*"))
    with caplog.at_level("INFO", logger="cotbridge.models.loading"):
        first, _ = load_model_and_tokenizer(str(SMOLLM2_DIR), dtype="float32")
        second, _ = load_model_and_tokenizer(str(SMOLLM2_DIR), dtype="bfloat16")
    assert caplog.text.count("dequantised copy") == 2  # both later loads, whatever their dtype, read the copy
    assert first.dtype == torch.float32 and second.dtype == first_bf16.dtype == torch.bfloat16
    assert all(torch.equal(a, b) for a, b in zip(first_bf16.state_dict().values(), second.state_dict().values()))
    assert all(torch.equal(a.bfloat16(), b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert getattr(second, "hf_quantizer", None) is None  # trainable like the freshly dequantised one
    monkeypatch.setenv("COTBRIDGE_GGUF_CACHE", "off")
    assert dequantised_dir(str(SMOLLM2_DIR), "SmolLM2-135M-Instruct.Q4_1.gguf") is None


def test_in_place_kv_cache_generates_what_transformers_cache_does(tiny_model_dir):
    in_place = HFBackend(str(tiny_model_dir), batch_size=8, decoding="batches")
    default = HFBackend(str(tiny_model_dir), batch_size=8, kv_cache="dynamic", decoding="batches")
    assert in_place.in_place_cache and not default.in_place_cache  # "auto" picks it for a Llama
    greedy = [Request(prompt=p, max_tokens=90) for p in PROMPTS]  # long enough to grow the buffers twice
    sampled = [Request(prompt=p, n=3, temperature=1.0, max_tokens=8, seed=2) for p in PROMPTS[:2]]
    for reqs in (greedy, sampled):
        a = [
            [(c.text, c.finish_reason, c.completion_tokens) for c in cs]
            for cs in in_place.generate(reqs, progress=False)
        ]
        b = [
            [(c.text, c.finish_reason, c.completion_tokens) for c in cs]
            for cs in default.generate(reqs, progress=False)
        ]
        assert a == b
    with pytest.raises(UserError, match="kv_cache must be"):
        HFBackend(str(tiny_model_dir), kv_cache="paged")


def test_in_place_cache_writes_in_place_and_matches_concatenation():
    import torch

    from cotbridge.backends.kv_cache import GrowingCache

    cache, keys = GrowingCache(), []
    for step in range(100):  # a 7-token prefill, then one token at a time
        k = torch.randn(2, 3, 7 if step == 0 else 1, 4)
        keys.append(k)
        got, _ = cache.update(k, k + 1, layer_idx=0)
        assert torch.equal(got, torch.cat(keys, dim=-2))
    layer = cache.layers[0]
    assert layer.get_seq_length() == 106 and layer._key_buf.shape[-2] >= 106
    buffer = layer._key_buf.data_ptr()
    cache.update(torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4), layer_idx=0)
    assert layer._key_buf.data_ptr() == buffer  # spare room: the next token did not reallocate
    with pytest.raises(NotImplementedError):
        layer.reorder_cache(torch.tensor([1, 0]))
