"""SQuAD-style normalisation, exact match and token F1 (the official evaluation script's rules)."""

from __future__ import annotations

import re
import string
from collections import Counter


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse white space."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, gold: str) -> bool:
    return normalize_answer(pred) == normalize_answer(gold)


def token_f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    # The official script treats yes/no/noanswer specially: they must match exactly.
    if (
        normalize_answer(pred) in ("yes", "no", "noanswer") or normalize_answer(gold) in ("yes", "no", "noanswer")
    ) and p != g:
        return 0.0
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(pred: str, golds: list[str]) -> tuple[float, float]:
    """(EM, F1) against the best-matching gold answer, as HotpotQA and 2Wiki score aliases."""
    em = max(float(exact_match(pred, g)) for g in golds)
    f1 = max(token_f1(pred, g) for g in golds)
    return em, f1
