"""What the CPU can do, read once from /proc/cpuinfo: which kernels pay off depends on it."""

from __future__ import annotations

import functools
from pathlib import Path


def _cpuinfo_field(name: str) -> str:
    """The first CPU's ``name`` field in /proc/cpuinfo; empty where the file is missing (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    line = next((line for line in text.splitlines() if line.split(":")[0].strip() == name), "")
    return line.partition(":")[2].strip()


@functools.cache
def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ...: Intel's MKL takes its fastest kernels only on Intel's CPUs."""
    return _cpuinfo_field("vendor_id")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the first CPU (``avx512f``, ``amx_bf16``, ...); empty where /proc/cpuinfo is
    missing (not Linux)."""
    return frozenset(_cpuinfo_field("flags").split())
