"""A run reads its base model once: later loads are private copies, LoRA students the base plus their adapter."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import yaml

from cotbridge.models import loading
from cotbridge.models.loading import load_model_and_tokenizer, read_model_and_tokenizer
from cotbridge.models.pool import ModelPool, keeping_models
from cotbridge.train.config import TrainConfig
from cotbridge.train.sft import train_student
from tests.test_train import examples


@pytest.fixture
def reads(monkeypatch):
    """Every read from disk, by the path read."""
    counter: Counter[str] = Counter()
    real = loading.read_model_and_tokenizer

    def counting(model, *args):
        counter[str(model)] += 1
        return real(model, *args)

    monkeypatch.setattr(loading, "read_model_and_tokenizer", counting)
    return counter


def equal_weights(a, b) -> bool:
    """Saved tensors and also the buffers that are not saved (RoPE's fp32 inv_freq), values and dtypes."""
    sa, sb = a.state_dict(), b.state_dict()
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    same = lambda x, y: x.dtype == y.dtype and torch.equal(x.cpu(), y.cpu())  # noqa: E731
    return (
        sa.keys() == sb.keys()
        and ba.keys() == bb.keys()
        and all(same(sa[k], sb[k]) for k in sa)
        and all(same(ba[k], bb[k]) for k in ba)
    )


def test_a_pool_reads_once_and_hands_out_private_copies_in_any_dtype(tiny_model_dir, reads):
    folder = str(tiny_model_dir)
    with keeping_models() as pool:
        first, _ = load_model_and_tokenizer(folder, dtype="float32")
        with torch.no_grad():
            next(first.parameters()).add_(1.0)  # training changes its copy, never the master
        second, tok = load_model_and_tokenizer(folder, dtype="bfloat16")
    assert reads[folder] == 1 and pool.copies == 2 and not pool.masters  # masters dropped with the pool
    assert second.dtype == torch.bfloat16 and tok.padding_side == "left"
    read_bf16 = read_model_and_tokenizer(folder, None, torch.bfloat16, "cpu")[0]
    assert equal_weights(second, read_bf16)  # as from_pretrained(dtype=bf16): the rotary frequencies stay fp32
    ids = torch.arange(3, 200)[None] % second.config.vocab_size  # long enough for rounded frequencies to show
    with torch.no_grad():
        assert torch.equal(second(ids).logits, read_bf16(ids).logits)
    assert not equal_weights(first, read_model_and_tokenizer(folder, None, torch.float32, "cpu")[0])


def test_a_model_over_the_budget_is_read_every_time(tiny_model_dir, reads):
    with keeping_models(ModelPool(budget_bytes=1000)) as pool:
        load_model_and_tokenizer(str(tiny_model_dir), dtype="float32")
        load_model_and_tokenizer(str(tiny_model_dir), dtype="float32")
    assert reads[str(tiny_model_dir)] == 2 and pool.reads == 2


def test_a_lora_student_is_rebuilt_from_the_pooled_base_as_its_saved_folder(tiny_model_dir, tmp_path, reads):
    base, out = str(tiny_model_dir), tmp_path / "student"
    cfg = TrainConfig(model=base, output_dir=str(out), max_steps=3, batch_size=4, lr=1e-2, save_strategy="no")
    with keeping_models() as pool:
        train_student(cfg, examples())
        student, tok = load_model_and_tokenizer(str(out), dtype="bfloat16", generation=True)
    assert reads == {base: 1} and pool.copies == 2  # the student folder itself was never read
    assert loading.base_record(out).is_file()
    saved = read_model_and_tokenizer(str(out), None, torch.bfloat16, "cpu")[0]
    assert equal_weights(student, saved)  # bit for bit what the folder holds
    assert not equal_weights(student, read_model_and_tokenizer(base, None, torch.bfloat16, "cpu")[0])
    assert not hasattr(student, "cotbridge_base") and tok.padding_side == "left"
    with keeping_models():  # a later run: its pool never read the base, so the folder is read, not trusted
        load_model_and_tokenizer(str(out), dtype="bfloat16")
    assert reads[str(out)] == 1
    with keeping_models():
        load_model_and_tokenizer(base, dtype="float32")
        read_model_and_tokenizer(str(out), None, torch.float32, "cpu")[0].save_pretrained(out)  # same size, new file
        load_model_and_tokenizer(str(out), dtype="bfloat16")
    assert reads[str(out)] == 2  # the record names weights that were written again: void


def test_a_run_reads_its_base_model_once(tiny_model_dir, tmp_path, reads):
    from cotbridge.recipes.finetune_cot.config import RunConfig
    from cotbridge.recipes.finetune_cot.recipe import run_pipeline

    cfg = {
        "name": "pooled",
        "run_dir": str(tmp_path / "run"),
        "task": "synthetic_coin_flip:k=2,n_test=4",
        "train_limit": 8,
        "teacher": {"backend": "reference"},
        "student": {"model": str(tiny_model_dir), "max_steps": 1, "batch_size": 4, "save_strategy": "no"},
        "eval": {"limit": 4, "max_tokens": 4, "batch_size": 4},
        "methods": [
            {"name": "zero_shot_cot", "kind": "prompt"},
            {"name": "vanilla", "kind": "vanilla"},
            {"name": "ftcot", "kind": "distill", "samples": 1},
        ],
    }
    run_pipeline(RunConfig.model_validate(yaml.safe_load(yaml.safe_dump(cfg))), progress=False)
    # two students trained and three methods evaluated: one read of the base, none of the student folders
    assert reads == {str(tiny_model_dir): 1}


def test_dequantised_copies_of_gguf_files_that_are_gone_are_removed(tmp_path):
    from cotbridge.jsonl import write_json

    present = tmp_path / "venv" / "model.gguf"
    present.parent.mkdir()
    present.write_bytes(b"GGUF")
    for name, gguf in (("kept", present), ("orphan", tmp_path / "deleted-venv" / "model.gguf")):
        (tmp_path / "deq" / name).mkdir(parents=True)
        write_json(tmp_path / "deq" / name / loading.DEQUANTISED_FROM, {"gguf": str(gguf)})
    (tmp_path / "deq" / "unrecorded").mkdir()  # a copy from an older version: not ours to judge
    assert loading.remove_orphaned_copies(tmp_path / "deq") == [tmp_path / "deq" / "orphan"]
    assert sorted(p.name for p in (tmp_path / "deq").iterdir()) == ["kept", "unrecorded"]


def test_native_bf16_can_be_forced_off_to_run_as_on_a_cpu_without_it(monkeypatch):
    from cotbridge.models import loading

    monkeypatch.setenv("COTBRIDGE_CPU_BF16", "0")
    assert loading.cpu_has_native_bf16() is False
    monkeypatch.setenv("COTBRIDGE_CPU_BF16", "1")
    assert loading.cpu_has_native_bf16() is True


@pytest.fixture
def hub_lookups(monkeypatch, tmp_path):
    """No proxy, not offline, an empty hub cache, and a name lookup that fails as it does without a network; the
    hosts looked up are recorded."""
    import os
    import socket

    from huggingface_hub import constants

    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    looked_up: list[str] = []

    def no_network(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(loading.socket, "getaddrinfo", no_network)
    return looked_up


def test_a_hub_model_without_a_network_is_refused_at_once(hub_lookups, monkeypatch, tmp_path):
    """Without this, huggingface_hub retries each file with back-off and the user waits ~50 s for the error."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    from cotbridge.errors import UserError

    host = urlsplit(constants.ENDPOINT).hostname
    with pytest.raises(UserError, match=rf"'someone/not-cached' is not a local path .* {host} cannot be looked up"):
        read_model_and_tokenizer("someone/not-cached", None, torch.float32, "cpu")
    assert hub_lookups == [host]
    # a model already in the cache loads from it offline: no look-up, no refusal
    snapshot = tmp_path / "hub" / "models--someone--cached" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    loading.check_hub_reachable("someone/cached")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # a proxy resolves the host itself
    loading.check_hub_reachable("someone/not-cached")
    assert hub_lookups == [host]
