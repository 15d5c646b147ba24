"""Coin flip state tracking (Wei et al.; Fine-tune-CoT wording) over k people, with exact rationales."""

from __future__ import annotations

import random

from cotbridge.tasks.base import Example
from cotbridge.tasks.synthetic.common import (
    NAMES,
    Draft,
    k_loader,
    pick_step,
    register_synthetic,
)

TASK_NAME = "synthetic_coin_flip"
N_PHRASINGS = 4


def side(heads: bool) -> str:
    """The coin side as the rationales name it."""
    return "heads up" if heads else "tails up"


def make_draft(rng: random.Random, k: int) -> Draft:
    """One question: k distinct people who each flip or do not flip; yes iff the flip count is even."""
    people = rng.sample(NAMES, k)
    flips = [rng.random() < 0.5 for _ in people]
    acts = " ".join(f"{p} flips the coin." if f else f"{p} does not flip the coin." for p, f in zip(people, flips))
    question = f'A coin is heads up. {acts} Is the coin still heads up? Note that "flip" here means "reverse".'
    return Draft(question, "yes" if sum(flips) % 2 == 0 else "no", {"people": people, "flips": flips})


def render_rationale(
    example: Example, phrasing: int, error_step: int | None = None, rng: random.Random | None = None
) -> str:
    """Re-render the reasoning from the trace; at ``error_step`` (0-based person) the flip is misapplied.

    The misapplied step inverts every later state, so the stated final side (and yes/no) is wrong.
    ``rng`` is accepted for a uniform signature; the error here is deterministic.
    """
    people: list[str] = example.meta["trace"]["people"]
    flips: list[bool] = example.meta["trace"]["flips"]
    step = pick_step(error_step, len(people))
    effect = [f != (i == step) for i, f in enumerate(flips)]  # what the rationale *applies* at each step
    states = [True]
    for e in effect:
        states.append(states[-1] != e)
    heads = states[-1]
    yn = "yes" if heads else "no"
    p = phrasing % N_PHRASINGS
    if p == 0:
        parts = ["The coin starts heads up."]
        for person, f, e, s in zip(people, flips, effect, states[1:]):
            did = f"{person} flips it" if f else f"{person} does not flip it"
            parts.append(f"{did}, so it {'is now' if e else 'stays'} {side(s)}.")
        end = "So yes, the coin is still heads up." if heads else "So no, the coin is now tails up."
        return " ".join(parts + [end])
    if p == 1:
        parts = ["Start: heads up."]
        for person, f, s in zip(people, flips, states[1:]):
            parts.append(f"{person} {'flips' if f else 'does not flip'}: {side(s)}.")
        return " ".join(parts + [f"Final: {side(heads)}, so {yn}."])
    if p == 2:  # a running count of flips, person by person, then its parity
        parts, n = ["Count the flips one person at a time."], 0
        for person, f, e in zip(people, flips, effect):
            n += e
            parts.append(
                f"{person} flips: {n} flip{'' if n == 1 else 's'} so far."
                if f
                else f"{person} does not flip: still {n}."
            )
        if heads:
            end = f"{n} is an even number of flips, which leaves the coin as it started, so yes, it is still heads up."
        else:
            end = f"{n} is an odd number of flips, which turns the coin over, so no, it is not heads up anymore."
        return " ".join(parts + [end])
    lines = ["1. The coin starts heads up."]
    for i, (person, f, before, after) in enumerate(zip(people, flips, states, states[1:]), 2):
        act = "flips the coin" if f else "does not flip the coin"
        lines.append(f"{i}. {person} {act}: {side(before)} -> {side(after)}.")
    lines.append(f"{len(people) + 2}. The coin ends {side(heads)}, so {yn}.")
    return "\n".join(lines)


TASK = register_synthetic(
    TASK_NAME,
    answer_type="yesno",
    k=4,
    version="1.1",  # 1.1: the counting phrasing counts person by person
    loader=k_loader(TASK_NAME, make_draft, render_rationale, N_PHRASINGS, 1, len(NAMES)),
    description="Is a coin still heads up after k people flip or do not flip it? (synthetic, exact rationales)",
    answer_trigger="Therefore, the answer (Yes or No) is",
)
