"""What the CPU can do, read once from /proc/cpuinfo: which kernels pay off depends on it."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cotbridge.errors import UserError


@functools.cache
def _first_cpu() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (read once); none where the file is missing (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ...: Intel's MKL takes its fastest kernels only on Intel's CPUs."""
    return _first_cpu().get("vendor_id", "")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the first CPU (``avx512f``, ``amx_bf16``, ...); empty where /proc/cpuinfo is
    missing (not Linux)."""
    return frozenset(_first_cpu().get("flags", "").split())


def forced_native_bf16() -> bool | None:
    """$COTBRIDGE_CPU_BF16: "1" says the CPU has native bf16, "0" that it has not (how the test suite runs as on a
    CPU without it); unset: None, ask the CPU. Any other value is refused rather than read as "ask the CPU"."""
    value = os.environ.get("COTBRIDGE_CPU_BF16")
    if value is None:
        return None
    if value not in ("0", "1"):
        raise UserError(
            f"COTBRIDGE_CPU_BF16={value!r}: must be 1 (native bf16) or 0 (none); set one of them or unset it"
        )
    return value == "1"
