"""A run's base models, read from disk once: later loads of the same model are copies from memory.

The stage engine keeps a pool for a whole `cotbridge run` / `instruct` / `lmguided`, where the same base model is
loaded to train each method's student and to evaluate each method: a hub download, GGUF dequantisation or a
safetensors read then happens once per run. Masters stay on the CPU in the dtype first asked for (an fp32 master
also serves every other dtype, by an exact cast), and each load gets a private copy (training and adapters change
their copy, never the master). Outside a pool every load reads from disk, as before.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, "str | None"]  # (resolved source, GGUF file name)
_ACTIVE: ContextVar[ModelPool | None] = ContextVar("cotbridge_model_pool", default=None)


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: keep masters of up to 4 GiB
        return 16 << 30


class ModelPool:
    """Masters by (source, GGUF file), together at most ``budget_bytes`` (a quarter of the memory by default); a
    model that does not fit is not kept, and each of its loads reads it again."""

    def __init__(self, budget_bytes: int | None = None):
        self.budget_bytes = memory_bytes() // 4 if budget_bytes is None else budget_bytes
        self.masters: dict[tuple[str, str | None, Any], tuple[Any, Any]] = {}  # (*key, dtype) -> (model, tokenizer)
        self.reads = 0  # models read from disk (tests and logs: a run's base model is read once)
        self.copies = 0

    def copy(self, key: Key, dtype: Any, device: str, read: Callable[[Any], tuple[Any, Any]]) -> tuple[Any, Any]:
        """A private (model, tokenizer) in ``dtype`` on ``device``, from a master in that dtype or in fp32 (an
        exact source for any dtype); ``read(dtype)`` reads a new master onto the CPU."""
        master = self.master(key, dtype)
        if master is None:
            net, tokenizer = read(dtype)
            self.reads += 1
            size = nbytes(net)
            if size + sum(nbytes(m) for m, _ in self.masters.values()) > self.budget_bytes:
                log.info("not keeping %s in memory (%.1f GB: over the pool's budget)", key[0], size / 1e9)
                return tag(net.to(device), key), tokenizer
            self.masters[(*key, dtype)] = master = (net, tokenizer)
        else:
            log.info("loading %s from memory (read once this run)", key[0])
        self.copies += 1
        net = cast_as_loaded(copy.deepcopy(master[0]), dtype).to(device)
        return tag(net, key), copy.deepcopy(master[1])

    def master(self, key: Key, dtype: Any) -> tuple[Any, Any] | None:
        """A master that gives ``dtype`` exactly: one in that dtype, or one in fp32."""
        import torch

        return self.masters.get((*key, dtype)) or self.masters.get((*key, torch.float32))


def cast_as_loaded(net: Any, dtype: Any) -> Any:
    """``net`` in ``dtype`` as ``from_pretrained(dtype=...)`` would give it: parameters and saved buffers cast, but
    buffers that are not saved (RoPE's ``inv_freq``: transformers keeps them in fp32) and the model's
    keep-in-fp32 modules left as they are. ``net.to(dtype)`` would round the rotary frequencies too."""
    keep = set(getattr(net, "_keep_in_fp32_modules", None) or ()) | set(
        getattr(net, "_keep_in_fp32_modules_strict", None) or ()
    )
    saved = set(net.state_dict())
    for module_name, module in net.named_modules():
        if any(k in module_name.split(".") for k in keep):
            continue
        prefix = f"{module_name}." if module_name else ""
        for param in module.parameters(recurse=False):
            if param.is_floating_point():
                param.data = param.data.to(dtype)
        for name, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point() and prefix + name in saved:
                module._buffers[name] = buf.to(dtype)
    return net


def nbytes(net: Any) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def tag(net: Any, key: Key) -> Any:
    """Record on the model which base it is, in which dtype: a LoRA student trained on it can be rebuilt from the
    pool (its adapter merged into a copy of the same base, see :func:`cotbridge.models.loading.pooled_student`)."""
    net.cotbridge_base = {"source": key[0], "gguf_file": key[1], "dtype": str(net.dtype).removeprefix("torch.")}
    return net


def active_pool() -> ModelPool | None:
    return _ACTIVE.get()


@contextlib.contextmanager
def keeping_models(pool: ModelPool | None = None) -> Iterator[ModelPool]:
    """Loads inside share one pool (a pool already open stays the one used); it is dropped on exit."""
    current = _ACTIVE.get()
    if current is not None:
        yield current
        return
    pool = pool or ModelPool()
    token = _ACTIVE.set(pool)
    try:
        yield pool
    finally:
        _ACTIVE.reset(token)
        pool.masters.clear()
