"""A small decoder-only model with random weights and a real tokenizer, for writers trained from scratch.

LM-guided CoT needs a rationale writer much smaller than the large model; where no such pretrained
model is at hand (offline), a tiny Llama with the large model's tokenizer trains fast on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from cotbridge.config import SEED_MAX, StrictModel
from cotbridge.errors import UserError
from cotbridge.fileio import save_pretrained_staged


class ScratchSpec(StrictModel):
    tokenizer: str = "smollm2-135m-instruct"  # hub id, folder, .gguf or embedded name; unused with train_vocab
    # Train a byte-level BPE of this size on the writer's training texts instead. With a tiny model the output
    # layer over a 49k vocabulary is ~97% of the compute and most of its rows never see a gradient. At least the 256
    # byte symbols and the 2 special tokens.
    train_vocab: int | None = Field(default=None, ge=258)
    hidden_size: int = Field(default=64, ge=1)
    layers: int = Field(default=2, ge=1)
    heads: int = Field(default=4, ge=1)  # attention heads
    intermediate_size: int | None = Field(default=None, ge=1)  # default 4 × hidden
    max_position_embeddings: int = Field(default=1024, ge=1)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE (any text encodes; unseen words fall back to bytes) with end-of-text and pad tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise UserError("train_vocab needs training texts to learn a tokenizer from")
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")


def init_scratch_model(out_dir: str | Path, spec: ScratchSpec, texts: list[str] | None = None) -> Path:
    """Save a randomly initialised Llama (tied embeddings) and its tokenizer (``spec.tokenizer``, or one trained on
    ``texts`` when ``spec.train_vocab`` is set) to ``out_dir``; reuse what is there."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cotbridge.models.loading import resolve_model_source

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    if spec.train_vocab:
        tok = train_tokenizer(texts or [], spec.train_vocab)
    else:
        source, gguf = resolve_model_source(spec.tokenizer)
        tok = AutoTokenizer.from_pretrained(
            source, **({"gguf_file": gguf} if gguf and not (Path(source) / "tokenizer.json").exists() else {})
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        intermediate_size=spec.intermediate_size or 4 * spec.hidden_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    save_pretrained_staged(out, model, tok)
    return out
