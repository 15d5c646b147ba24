"""Training one student copy: LoRA on the student, QLoRA (4-bit base) where CUDA and bitsandbytes are
present, otherwise a clear message and LoRA in full precision."""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

from cotbridge.errors import UserError
from cotbridge.fileio import save_pretrained_staged
from cotbridge.recipes.instruct.config import StudentConfig

log = logging.getLogger(__name__)


def qlora_unavailable(cfg: StudentConfig) -> str | None:
    """Why 4-bit loading cannot happen here (None: it can)."""
    import torch

    if not cfg.lora:
        return "QLoRA trains LoRA adapters (lora: false was set)"
    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed (pip install bitsandbytes)"
    from cotbridge.models.loading import resolve_model_source

    if resolve_model_source(cfg.model, cfg.gguf_file)[1] is not None:
        return "the student is a GGUF file (already quantized; load it from its original weights for QLoRA)"
    return None


def load_student(cfg: StudentConfig) -> tuple[Any, Any, bool]:
    """(model, tokenizer, quantized). 4-bit NF4 with bf16 compute, as QLoRA; else full precision."""
    from cotbridge.models.loading import load_model_and_tokenizer

    if cfg.quantization != "4bit":
        return (*load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype), False)
    reason = qlora_unavailable(cfg)
    if reason:
        log.warning(
            "quantization: 4bit (QLoRA) requested but %s; training LoRA on the full-precision student instead", reason
        )
        return (*load_model_and_tokenizer(cfg.model, cfg.gguf_file, cfg.dtype), False)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        model = AutoModelForCausalLM.from_pretrained(
            cfg.model, quantization_config=bnb, dtype=torch.bfloat16, device_map={"": 0}
        )
    except OSError as e:
        raise UserError(f"could not load student {cfg.model!r} in 4 bits: {str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, True


def merge_adapter(
    base: str, gguf_file: str | None, adapter_dir: str | Path, out_dir: str | Path, dtype: str = "auto"
) -> None:
    """Base weights in full precision + the trained LoRA adapter, merged into ``out_dir``.

    After QLoRA the in-memory base is 4-bit; merging there would round the LoRA update into 4-bit
    weights, so the adapter is merged into a freshly loaded full-precision base instead.
    """
    from peft import PeftModel

    from cotbridge.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(base, gguf_file, dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    save_pretrained_staged(out_dir, merged, tokenizer)


def train_row(cfg: StudentConfig, examples: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Train on conversational prompt/completion examples; the merged student lands in ``out_dir``."""
    from cotbridge.train.config import TrainConfig
    from cotbridge.train.sft import train_student

    t0 = time.perf_counter()
    model, tokenizer, quantized = load_student(cfg)
    base_cfg = TrainConfig.model_validate(cfg.model_dump(exclude={"quantization", "family"}))
    base_cfg = base_cfg.model_copy(update={"output_dir": str(out_dir)})
    stats = train_student(base_cfg, examples, model=model, tokenizer=tokenizer)
    if quantized:
        merge_adapter(cfg.model, cfg.gguf_file, out_dir / "adapter", out_dir)
    return {**stats, "quantization": "4bit" if quantized else None, "wall_s": round(time.perf_counter() - t0, 1)}
