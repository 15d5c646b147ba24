"""A small decoder-only model with random weights and a real tokenizer, for writers trained from scratch.

LM-guided CoT needs a rationale writer much smaller than the large model; where no such pretrained
model is at hand (offline), a tiny Llama with the large model's tokenizer trains fast on CPU.
"""

from __future__ import annotations

from pathlib import Path

from cotbridge.config import StrictModel


class ScratchSpec(StrictModel):
    tokenizer: str = "smollm2-135m-instruct"  # hub id, folder, .gguf or embedded name
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int | None = None  # default 4 × hidden
    max_position_embeddings: int = 1024
    seed: int = 0


def init_scratch_model(out_dir: str | Path, spec: ScratchSpec) -> Path:
    """Save a randomly initialised Llama (tied embeddings) and ``spec.tokenizer`` to ``out_dir``; reuse it if there."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cotbridge.backends.hf import resolve_model_source

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    source, gguf = resolve_model_source(spec.tokenizer)
    tok = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf} if gguf and not (Path(source) / "tokenizer.json").exists() else {}))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(spec.seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=spec.hidden_size, num_hidden_layers=spec.layers,
                         num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
                         intermediate_size=spec.intermediate_size or 4 * spec.hidden_size,
                         max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
