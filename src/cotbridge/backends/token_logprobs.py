"""Token log-probabilities of given token sequences: what ``cotbridge serve`` answers ``logprobs``, ``echo`` and
``prompt_logprobs`` with, and what a teacher grades a student's tokens by.

The numbers are the model's own next-token distribution (log_softmax of its logits, widened to fp32), before any
sampling temperature or top-p, as vLLM returns them by default. Position 0 has no log-prob: nothing precedes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_TOP = 20  # the widest top-k a request may ask for (vLLM's default max_logprobs)
ROWS_PER_PASS = 4096  # positions whose full-vocabulary log-probs are held at once (4096 x 49k x fp32 = 0.8 GB)


@dataclass
class TokenLogprob:
    """One position of a sequence: its token, the token's log-prob given what precedes it, its rank among all
    tokens there (1: the most likely), and the ``top`` most likely tokens there as (id, log-prob), best first."""

    token: int
    logprob: float
    rank: int
    top: list[tuple[int, float]] = field(default_factory=list)


# Chooses the next token from the log-probs [V] after a sequence (greedy, or sampled: see ``next_token_picker``).
Picker = Callable[[Any], int]


def sequence_logprobs(
    model: Any, seqs: Sequence[Sequence[int]], top_n: int, pick: Sequence[Picker | None] | None = None
) -> list[list[TokenLogprob | None]]:
    """For each sequence, one entry per position (``None`` at position 0), from one forward pass of ``model`` (a
    causal LM) over the sequence. Sequences go one at a time: no padding can shift a position's numbers. ``pick``:
    for a sequence with a picker, the same pass also chooses the token after it, and its entry comes last (a
    one-token completion scored without a second pass)."""
    import torch

    if not 0 <= top_n <= MAX_TOP:
        raise ValueError(f"top_n must be in [0, {MAX_TOP}], got {top_n}")
    device = next(model.parameters()).device
    out: list[list[TokenLogprob | None]] = []
    for i, seq in enumerate(seqs):
        ids, picker = list(seq), pick[i] if pick is not None else None
        entries: list[TokenLogprob | None] = [None]
        if len(ids) > 1 or (ids and picker is not None):
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids], device=device)).logits[0]
            if picker is not None:
                ids.append(picker(torch.log_softmax(logits[-1].float(), dim=-1)))
            else:
                logits = logits[:-1]
            for start in range(0, logits.shape[0], ROWS_PER_PASS):
                entries.extend(
                    _rows(logits[start : start + ROWS_PER_PASS], ids[start + 1 : start + 1 + ROWS_PER_PASS], top_n)
                )
        out.append(entries[: len(ids)] if ids else [])
    return out


def next_token_picker(temperature: float, top_p: float, seed: int) -> Picker:
    """Greedy at temperature 0, else a draw from the temperature-scaled distribution cut to its top-p nucleus, from
    a generator seeded with ``seed``."""
    import torch

    def pick(logprobs: Any) -> int:
        if temperature == 0:
            return int(logprobs.argmax())
        probs = torch.softmax(logprobs / temperature, dim=-1)
        if top_p < 1:
            ordered, order = probs.sort(descending=True)
            outside = ordered.cumsum(0) - ordered >= top_p  # keep the smallest head whose mass reaches top_p
            probs = probs.clone()
            probs[order[outside]] = 0
        generator = torch.Generator(device=probs.device).manual_seed(seed)
        return int(torch.multinomial(probs, 1, generator=generator))

    return pick


def _rows(logits: Any, targets: list[int], top_n: int) -> list[TokenLogprob]:
    import torch

    lp = torch.log_softmax(logits.float(), dim=-1)
    target = torch.tensor(targets, device=lp.device)
    chosen = lp.gather(1, target[:, None])[:, 0]
    ranks = (lp > chosen[:, None]).sum(dim=1) + 1
    top = lp.topk(top_n, dim=-1) if top_n else None
    rows = []
    for i, t in enumerate(targets):
        best = list(zip(top.indices[i].tolist(), top.values[i].tolist())) if top is not None else []
        rows.append(TokenLogprob(t, float(chosen[i]), int(ranks[i]), best))
    return rows


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token decoded alone (as vLLM's ``decoded_token``); a piece of a multi-byte character decodes to U+FFFD."""
    return [tokenizer.decode([t], skip_special_tokens=False) for t in ids]


def text_offsets(strings: Sequence[str], start: int = 0) -> list[int]:
    """The character offset at which each token's string begins, counting from ``start``."""
    offsets, at = [], start
    for s in strings:
        offsets.append(at)
        at += len(s)
    return offsets


def tokens_within(strings: Sequence[str], length: int) -> int:
    """How many leading tokens begin inside the first ``length`` characters: a completion cut at a stop string keeps
    the log-probs of the tokens that made its text, not of those generated past it."""
    return sum(1 for o in text_offsets(strings) if o < length)
