"""The allocator setting that keeps freed tensor memory in the heap (training steps free hundreds of MB each)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from cotbridge.allocator import keep_freed_memory
took = keep_freed_memory()
def step():  # 200 MB and 100 MB tensors allocated, touched and freed, like a step's logits and their grads
    x = torch.empty(50_000_000).fill_(1.0)
    y = torch.empty(25_000_000).fill_(2.0)
    del x, y
for _ in range(6):  # warm-up: the heap grows to its working size
    step()
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(took, min(faults))  # the quietest step: a busy machine (page reclaim, other threads) adds faults to some steps
"""


def page_faults(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "COTBRIDGE_MALLOC"}
    if env_value is not None:
        env["COTBRIDGE_MALLOC"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again():
    took, tuned = page_faults("heap")
    left, default = page_faults(None)  # opt-in: without the variable glibc keeps its defaults
    assert took == "True" and left == "False"
    # default glibc maps and unmaps each block: ~73k page faults every step; tuned, the warm heap is reused
    assert default > 60_000 and tuned < default / 10
