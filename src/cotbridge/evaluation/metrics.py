"""Aggregate metrics: accuracy with standard error, self-consistency vote, unbiased pass@k."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence


def majority_vote(answers: Sequence[str | None], key: Callable[[str], str] = lambda a: a) -> str | None:
    """Most frequent parseable answer; unparseable (None) answers do not vote; ties go to the first seen."""
    valid = [a for a in answers if a is not None]
    if not valid:
        return None
    counts = Counter(key(a) for a in valid)
    best = max(counts.values())
    return next(a for a in valid if counts[key(a)] == best)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k) for n samples of which c are correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def pass_k_values(n: int) -> list[int]:
    """k = 1, 2, 4, … up to n (and n itself)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]
