"""Shared fixtures: paths to ../shared/data, a tiny causal LM built from a config, scripted backends; a helper that
keeps timings out of equality checks."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the clone; a machine without it (the GPU check) points here at a copy of what it needs
SHARED_DATA = Path(os.environ.get("COTBRIDGE_SHARED_DATA", REPO.parent / "shared" / "data"))
SMOLLM2_DIR = SHARED_DATA / "models" / "smollm2-135m-instruct-q4_1"
RE2 = SHARED_DATA / "teacher_rationales" / "rereading_re2"

# Keys whose values are measured, not computed: wall_time_s, wall_s, cpu_s, latency_s, tokens_per_s, *_seconds,
# train_runtime, created. Two runs with the same inputs differ in them (0.01 vs 0.0 s on a slower CPU).
TIMING_KEY = re.compile(r"(?:_s|seconds|_per_second|runtime)$|^created$")


def without_timings(value: Any) -> Any:
    """``value`` with every timing key dropped at any depth, for comparing results, summaries and records of two
    runs; everything else is compared as it is."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not TIMING_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return type(value)(without_timings(v) for v in value)
    return value


CORPUS = [
    "Q: Tom has 3 apples and buys 4 more. How many apples does he have?",
    "A: Let's think step by step. Tom starts with 3 apples. 3 + 4 = 7. Therefore, the answer is 7.",
    "The answer (arabic numerals) is 12. Take the last letters of each word and concatenate them.",
    "A coin is heads up. Alice flips the coin. Is the coin still heads up? yes no ### --> END",
] * 20


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained in memory (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    fast.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
        "{% if not loop.last or not continue_final_message %}{{ '\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return fast


def save_tiny_llama(out: Path, max_positions: int = 512) -> Path:
    """A 2-layer Llama with random weights (seed 0) and the tiny tokenizer, saved in ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights, saved once so path-based loading is exercised."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    from cotbridge.backends.hf import HFBackend

    return HFBackend(str(tiny_model_dir), batch_size=8)


class ScriptedBackend:
    """Returns canned completions chosen by a function of the prompt; records every request."""

    kind = "scripted"
    model_id = "scripted"

    def __init__(self, respond):
        self.respond = respond
        self.requests = []

    def generate(self, requests, progress=True, on_result=None):
        from cotbridge.backends.base import Completion

        self.requests.extend(requests)
        out = []
        for r in requests:
            text = r.prompt if r.prompt is not None else r.messages[-1]["content"]
            out.append([Completion(t, "stop") for t in self.respond(text, r)])
        return out


@pytest.fixture
def scripted():
    return ScriptedBackend


@pytest.fixture
def fake_hub(monkeypatch, request):
    """``datasets.load_dataset`` answered from the test module's ``ROWS`` (hub path -> rows), no network; returns
    the (path, config, split) of every call."""
    import datasets

    calls = []

    def load_dataset(path, config=None, split=None):
        calls.append((path, config, split))
        return request.module.ROWS[path]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("COTBRIDGE_DATA_DIR", raising=False)
    return calls
