"""Timing on a shared machine: measure a section only while no other process is using the CPUs.

On a 2-core box shared with other jobs, one foreign process running a model or a test suite makes
torch's OpenMP threads fight for cores and slows a section 3-10x, at random. ``QuietTimer.run`` waits
until the machine is quiet, times the section, measures how many CPUs *other* processes kept busy
meanwhile (from /proc/stat minus our own CPU time), and re-runs the section when that was more than
``max_foreign`` CPUs. Sections must be deterministic or re-runnable (greedy decoding, fixed seeds).
Both sides of every comparison go through the same timer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def busy_cpu_s() -> float:
    """CPU-seconds the whole machine has been busy (all processes); 0 where /proc/stat is unavailable."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class QuietTimer:
    def __init__(
        self, max_foreign: float = 0.15, max_tries: int = 20, max_wait_s: float = 900.0, enabled: bool = True
    ):
        self.max_foreign, self.max_tries, self.max_wait_s, self.enabled = max_foreign, max_tries, max_wait_s, enabled
        self.sections: dict[str, dict[str, Any]] = {}
        self.wasted_s = 0.0  # waiting for quiet + rejected attempts

    def wait_quiet(self, window_s: float = 3.0) -> bool:
        """Block until other processes used < max_foreign CPUs over a window; False if that never happened."""
        if not self.enabled:
            return True
        t_start = time.perf_counter()
        while True:
            b0, own0 = busy_cpu_s(), time.process_time()
            time.sleep(window_s)
            foreign = max(0.0, busy_cpu_s() - b0 - (time.process_time() - own0)) / window_s
            if foreign < self.max_foreign:
                self.wasted_s += time.perf_counter() - t_start
                return True
            if time.perf_counter() - t_start > self.max_wait_s:
                self.wasted_s += time.perf_counter() - t_start
                print(
                    f"  [quiet] machine still busy ({foreign:.2f} CPUs) after {self.max_wait_s:.0f}s; "
                    "measuring anyway",
                    file=sys.stderr,
                    flush=True,
                )
                return False

    def run(
        self, label: str, fn: Callable[[], Any], before_retry: Callable[[], None] | None = None
    ) -> tuple[Any, float]:
        """(fn(), wall seconds of the accepted attempt); accumulates into ``sections[label]``."""
        for attempt in range(1, self.max_tries + 1):
            self.wait_quiet()
            b0, own0, t0 = busy_cpu_s(), time.process_time(), time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            own = time.process_time() - own0
            foreign = max(0.0, busy_cpu_s() - b0 - own) / dt
            if not self.enabled or foreign <= self.max_foreign or attempt == self.max_tries:
                break
            self.wasted_s += dt
            print(
                f"  [quiet] {label}: other processes used {foreign:.2f} CPUs during the {dt:.1f}s section; "
                f"re-measuring (attempt {attempt + 1})",
                file=sys.stderr,
                flush=True,
            )
            if before_retry:
                before_retry()
        sec = self.sections.setdefault(
            label, {"s": 0.0, "cpu_s": 0.0, "parts": 0, "attempts": 0, "max_foreign_cpus": 0.0}
        )
        sec["s"] += dt
        sec["cpu_s"] += own
        sec["parts"] += 1
        sec["attempts"] += attempt
        sec["max_foreign_cpus"] = max(sec["max_foreign_cpus"], round(foreign, 3))
        return out, dt

    def report(self) -> dict[str, Any]:
        return {k: {**v, "s": round(v["s"], 2), "cpu_s": round(v["cpu_s"], 1)} for k, v in self.sections.items()}
