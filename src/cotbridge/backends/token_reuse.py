"""What slot decoding can reuse instead of computing again: earlier tokens of a sequence (prompt-lookup drafts,
:class:`NgramIndex`), earlier sequences' keys/values (stage 2 of a two-stage call, :class:`PrefixStore`) and the start
that prompts pre-filled together share (:func:`shared_start`)."""

from __future__ import annotations

from collections import OrderedDict

import torch


class NgramIndex:
    """Where each 1-, 2- and 3-gram of a token sequence last occurred (before its final position), so a draft is
    one dictionary lookup per step instead of a scan."""

    N = 3

    def __init__(self, tokens: list[int]):
        self.tokens: list[int] = []
        self.after: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token that followed it
        self.extend(tokens)

    def extend(self, new: list[int]) -> None:
        for tok in new:
            size = len(self.tokens)
            for n in range(1, min(self.N, size) + 1):
                self.after[tuple(self.tokens[size - n :])] = size
            self.tokens.append(tok)

    def draft(self, k: int) -> list[int]:
        for n in range(min(self.N, len(self.tokens)), 0, -1):
            at = self.after.get(tuple(self.tokens[-n:]))
            if at is not None:
                return self.tokens[at : at + k]
        return []


class PrefixStore:
    """Keys/values of finished sequences, keyed by their tokens, for later prompts that begin with them: stage 2 of
    a two-stage call sends stage 1's prompt and rationale again, followed by the answer trigger. Least recently used
    entries go first once the store holds more than ``budget_mb``."""

    HEAD = 16  # entries are found by their first tokens; a shorter shared prefix is not worth a lookup

    def __init__(self, budget_mb: float = 1024):
        self.budget = budget_mb * 2**20
        self.size = 0
        self.entries: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.by_head: dict[tuple[int, ...], set[tuple[int, ...]]] = {}

    def add(self, tokens: list[int], kv: torch.Tensor) -> None:
        key = tuple(tokens)
        if len(key) < self.HEAD or key in self.entries:
            return
        self.entries[key] = kv
        self.by_head.setdefault(key[: self.HEAD], set()).add(key)
        self.size += kv.numel() * kv.element_size()
        while self.size > self.budget and self.entries:
            old, dropped = self.entries.popitem(last=False)
            self.size -= dropped.numel() * dropped.element_size()
            self.by_head[old[: self.HEAD]].discard(old)

    def longest(self, prompt: list[int]) -> tuple[torch.Tensor, int] | None:
        """The stored keys/values sharing the longest prefix with ``prompt`` and its length (at least HEAD tokens,
        and one token short of the prompt: its last token must be run to give the next token's logits)."""
        best, best_n = None, 0
        for key in self.by_head.get(tuple(prompt[: self.HEAD]), ()):
            n = next((i for i, (a, b) in enumerate(zip(key, prompt)) if a != b), min(len(key), len(prompt)))
            n = min(n, len(prompt) - 1)
            if n > best_n:
                best, best_n = key, n
        if best is None or best_n < self.HEAD:
            return None
        self.entries.move_to_end(best)
        return self.entries[best], best_n


# Fewer shared tokens than this are pre-filled with each prompt: a separate forward pass costs more than they do.
MIN_SHARED_PREFIX = 4


def shared_start(prompts: list[list[int]], kept: list[int]) -> int:
    """How many leading tokens prompts pre-filled together take from a start computed once: the tokens they all begin
    with (several prompts), or the part of the run's kept prefix ``kept`` they all begin with (even one prompt); each
    keeps at least one token of its own to pre-fill; 0 below MIN_SHARED_PREFIX."""
    n = max(shared_prefix(prompts), min(common_length(kept, p[:-1]) for p in prompts))
    return n if n >= MIN_SHARED_PREFIX else 0


def shared_prefix(prompts: list[list[int]]) -> int:
    """How many leading tokens all prompts share (several prompts only), leaving each at least one token of its
    own to pre-fill (its next-token logits come from that pass); 0 below MIN_SHARED_PREFIX."""
    if len(prompts) < 2:
        return 0
    n = min(map(len, prompts)) - 1
    for p in prompts[1:]:
        n = common_length(prompts[0][:n], p)
    return n if n >= MIN_SHARED_PREFIX else 0


def common_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)
