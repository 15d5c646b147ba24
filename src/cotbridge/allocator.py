"""Keep freed memory in the process heap instead of returning it to the OS (glibc only).

A training step of a small LM on CPU allocates and frees tensors of hundreds of MB (the logits over a 49k vocabulary
alone are ~200 MB for a batch of 8). glibc serves each from a fresh mmap and unmaps it on free, so every step
page-faults gigabytes back in: measured on SmolLM2-135M LoRA, 8.5M page faults and 40 s of kernel time in 62 s of
training. Serving large blocks from the heap and not trimming it halves the step time (bench/training_throughput.py
records it). Opt-in with COTBRIDGE_MALLOC=heap (the quickstart sets it): with very variable batch shapes the
never-trimmed heap fragments, and a 128-example run on 100-950-token batches of 16 grew past 24 GiB and was
killed, where glibc's default returns the memory. Unset or "default" leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_done = False


def keep_freed_memory() -> bool:
    """Once per process; True if glibc took the settings."""
    global _done
    if _done or os.environ.get("COTBRIDGE_MALLOC", "default") != "heap":
        return _done
    _done = True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    ok = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    log.debug("glibc allocator: large blocks from the heap, no trimming (%s)", "on" if ok else "refused")
    return ok
