"""A smaller causal LM cut from a larger one: its first N decoder layers, with its embeddings, final norm, output
layer and tokenizer unchanged.

On-policy distillation compares the two models' next-token distributions token by token, so teacher and student
must share a tokenizer. Offline there is one pretrained model of the SmolLM2 family at hand; its first layers make
a student that shares everything with it but depth, and starts from pretrained weights rather than random ones.
"""

from __future__ import annotations

from pathlib import Path

from cotbridge.errors import UserError


def truncated_copy(source: str, out_dir: str | Path, layers: int, gguf_file: str | None = None) -> Path:
    """Save ``source`` (hub id, folder, .gguf or embedded name) cut to its first ``layers`` decoder layers, in fp32,
    with its tokenizer, to ``out_dir``."""
    from cotbridge.models.loading import load_model_and_tokenizer

    net, tokenizer = load_model_and_tokenizer(source, gguf_file, "float32")
    decoder = net.get_decoder()
    stack = getattr(decoder, "layers", None)
    if getattr(net.config, "is_encoder_decoder", False) or stack is None:
        raise UserError(f"truncate: {source} is not a decoder-only model with a layer stack; give a causal LM")
    if not 1 <= layers < len(stack):
        raise UserError(f"truncate.layers: {source} has {len(stack)} layers; keep between 1 and {len(stack) - 1}")
    decoder.layers = stack[:layers]
    net.config.num_hidden_layers = layers
    if getattr(net.config, "layer_types", None):  # per-layer attention kinds (sliding / full), one per kept layer
        net.config.layer_types = net.config.layer_types[:layers]
    out = Path(out_dir)
    net.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
