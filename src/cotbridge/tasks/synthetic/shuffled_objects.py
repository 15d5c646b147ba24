"""Tracking shuffled objects (BIG-bench style): k players trade k objects in pairs; exact rationales."""

from __future__ import annotations

import random
import string
from functools import partial
from typing import Any

from cotbridge.tasks.base import Example, Task
from cotbridge.tasks.registry import register_task
from cotbridge.tasks.synthetic.common import (
    Draft,
    build_examples,
    check_int,
    error_rng,
    join_and,
    pick_step,
    split_drafts,
)

TASK_NAME = "synthetic_shuffled_objects"
N_PHRASINGS = 3
PLAYERS = ("Alice", "Bob", "Claire", "Dave", "Eve", "Fred", "Gertrude", "Harry", "Irene", "Jamie")
COLORS = ("pink", "white", "red", "blue", "green", "yellow", "orange", "purple", "black", "brown", "gray", "gold")
BOOKS = (
    "Frankenstein",
    "Moby Dick",
    "Ulysses",
    "The Odyssey",
    "Catch-22",
    "The Pearl",
    "Lolita",
    "The Great Gatsby",
    "Hamlet",
    "Dracula",
    "Emma",
    "Beloved",
)
# theme -> (singular noun, plural noun, item names, whether items take an article)
THEMES: dict[str, tuple[str, str, tuple[str, ...], bool]] = {
    "ball": ("ball", "balls", tuple(f"{c} ball" for c in COLORS), True),
    "present": ("present", "presents", tuple(f"{c} present" for c in COLORS), True),
    "book": ("new book", "books", BOOKS, False),
}


def named(theme: str, item: str, definite: bool) -> str:
    """'a pink ball' / 'an orange ball' / 'the pink ball' for objects, the bare title for books."""
    if not THEMES[theme][3]:
        return item
    return f"the {item}" if definite else f"{'an' if item[0] in 'aeiou' else 'a'} {item}"


def make_draft(rng: random.Random, k: int, swaps: int) -> Draft:
    """One question: k players, k distinct objects, ``swaps`` random pair swaps, one player asked about."""
    theme = rng.choice(sorted(THEMES))
    noun, plural, pool, _ = THEMES[theme]
    players, items = list(PLAYERS[:k]), rng.sample(pool, k)
    pairs = [rng.sample(range(k), 2) for _ in range(swaps)]
    target = rng.randrange(k)
    letters = string.ascii_uppercase[:k]
    holding = list(range(k))
    for a, b in pairs:
        holding[a], holding[b] = holding[b], holding[a]
    held = join_and([f"{p} has {named(theme, it, False)}" for p, it in zip(players, items)])
    lead = ["First, "] + ["Then, "] * (swaps - 2) + ["Finally, "] if swaps > 1 else [""]
    moves = " ".join(f"{w}{players[a]} and {players[b]} swap {plural}." for w, (a, b) in zip(lead, pairs))
    options = ", ".join(f"({L}) {it}" for L, it in zip(letters, items))
    question = (
        f"{join_and(players)} are playing a game. At the start of the game, they are each holding a {noun}: {held}. "
        f"As the game progresses, pairs of players trade {plural}. {moves} "
        f"At the end of the game, what does {players[target]} have? Which choice is true? Answer choices: {options}."
    )
    trace = {"theme": theme, "players": players, "items": items, "swaps": pairs, "target": target}
    return Draft(question, letters[holding[target]], trace)


def render_rationale(
    example: Example, phrasing: int, error_step: int | None = None, rng: random.Random | None = None
) -> str:
    """Re-render the reasoning from the trace; at ``error_step`` (0-based swap) the holdings go wrong.

    The corruption exchanges the object that will end with the asked player for another one (a forgotten
    swap when possible), so the stated final holding and choice letter are wrong.
    """
    tr = example.meta["trace"]
    theme, players, items, pairs, target = tr["theme"], tr["players"], tr["items"], tr["swaps"], tr["target"]
    letters = string.ascii_uppercase[: len(players)]
    step = pick_step(error_step, len(pairs))
    holding = list(range(len(players)))
    states = [list(holding)]
    for i, (a, b) in enumerate(pairs):
        holding[a], holding[b] = holding[b], holding[a]
        if i == step:
            src = target  # who holds, right after this swap, what ends up with the target
            for c, d in reversed(pairs[i + 1 :]):
                src = d if src == c else c if src == d else src
            other = (b if src == a else a) if src in (a, b) else error_rng(example, i, rng).choice([a, b])
            holding[src], holding[other] = holding[other], holding[src]
        states.append(list(holding))
    final = holding[target]
    who, what, letter = players[target], items[final], letters[final]

    def listing(state: list[int], sep: str, article: bool = True) -> list[str]:
        return [f"{p}{sep}{named(theme, items[j], True) if article else items[j]}" for p, j in zip(players, state)]

    p = phrasing % N_PHRASINGS
    if p == 0:
        parts = [f"At the start, {join_and(listing(states[0], ' has '))}."]
        for (a, b), st in zip(pairs, states[1:]):
            parts.append(f"After {players[a]} and {players[b]} swap, {join_and(listing(st, ' has '))}.")
        parts.append(f"At the end, {who} has {named(theme, what, True)}, which is choice ({letter}).")
        return " ".join(parts)
    if p == 1:
        lines = [f"Start: {', '.join(listing(states[0], '=', False))}."]
        for (a, b), st in zip(pairs, states[1:]):
            lines.append(f"Swap {players[a]}/{players[b]}: {', '.join(listing(st, '=', False))}.")
        lines.append(f"{who} ends with {what}, so ({letter}).")
        return "\n".join(lines)
    lines = [f"1. Initially, {join_and(listing(states[0], ' holds '))}."]
    for i, ((a, b), st) in enumerate(zip(pairs, states[1:]), 2):
        lines.append(f"{i}. {players[a]} and {players[b]} trade, so now {join_and(listing(st, ' holds '))}.")
    lines.append(f"{len(pairs) + 2}. {who} finishes holding {named(theme, what, True)}, option ({letter}).")
    return "\n".join(lines)


def load(
    data_dir: Any, split: str, *, k: int, swaps: int | None, n_train: int, n_test: int, seed: int
) -> list[Example]:
    """Loader for the registry: deterministic, disjoint splits; ``swaps`` defaults to k."""
    k = check_int(TASK_NAME, "k", k, 2, len(PLAYERS))
    swaps = k if swaps is None else check_int(TASK_NAME, "swaps", swaps, 1)
    n_train = check_int(TASK_NAME, "n_train", n_train, 0)
    n_test = check_int(TASK_NAME, "n_test", n_test, 0)
    seed = check_int(TASK_NAME, "seed", seed, -(2**63))
    make = partial(make_draft, k=k, swaps=swaps)
    drafts = split_drafts(TASK_NAME, split, make, seed=seed, n_train=n_train, n_test=n_test)
    meta = {"k": k, "swaps": swaps, "choice_letters": string.ascii_uppercase[:k]}
    return build_examples(split, drafts, render_rationale, N_PHRASINGS, meta)


TASK = register_task(
    Task(
        name=TASK_NAME,
        version="1.0",
        answer_type="choice",
        loader=load,
        sizes={"train": 1000, "test": 200},
        family="synthetic",
        description="Track which object a player holds after pairs of players swap (synthetic, exact rationales).",
        answer_trigger="Therefore, among A through C, the answer is",
        choice_letters="ABC",
        params={"k": 3, "swaps": None, "n_train": 1000, "n_test": 200, "seed": 0},
    )
)
