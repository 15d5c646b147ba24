"""Keep freed memory in the process heap instead of returning it to the OS (glibc only).

A training step of a small LM on CPU allocates and frees tensors of hundreds of MB (the logits over a 49k vocabulary
alone are ~200 MB for a batch of 8). glibc serves each from a fresh mmap and unmaps it on free, so every step
page-faults gigabytes back in: measured on SmolLM2-135M LoRA, 8.5M page faults and 40 s of kernel time in 62 s of
training. Serving large blocks from the heap and not trimming it took 8 such steps from 59.6 s to 34.8 s
(bench/allocator_training.py measures it). Opt-in with COTBRIDGE_MALLOC=heap (the quickstart sets it): the heap is
never trimmed, so a process keeps its peak. A throughput run under it on long rationales at batch 16 was OOM-killed
at 24 GiB; the same workload was later OOM-killed with glibc's defaults too, so that run does not show the setting
costs memory, but no bound has been measured either. Unset or "default" leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

from cotbridge.errors import UserError

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_applied: bool | None = None  # None until the first call with COTBRIDGE_MALLOC=heap tries mallopt


def keep_freed_memory() -> bool:
    """Once per process; True if glibc took the settings (later calls repeat the first answer)."""
    global _applied
    if _applied is None and malloc_setting() == "heap":
        _applied = _apply()
    return bool(_applied)


def malloc_setting() -> str:
    """$COTBRIDGE_MALLOC: "heap" or "default" (also when unset). Any other value is refused: a typo ("heap ",
    "Heap") would silently leave the allocator alone."""
    value = os.environ.get("COTBRIDGE_MALLOC", "default")
    if value not in ("heap", "default"):
        raise UserError(f"COTBRIDGE_MALLOC={value!r}: must be heap or default; set one of them or unset it")
    return value


def _apply() -> bool:
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    ok = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    log.debug("glibc allocator: large blocks from the heap, no trimming (%s)", "on" if ok else "refused")
    return ok
