"""Multi-step arithmetic word problems (+, -, *, exact /; values stay in 0..999) with exact rationales."""

from __future__ import annotations

import random
from typing import Any

from cotbridge.tasks.base import Example
from cotbridge.tasks.synthetic.common import Draft, error_rng, k_loader, pick_step, register_synthetic

TASK_NAME = "synthetic_arithmetic"
N_PHRASINGS = 3
LIMIT = 1000  # every value stays below this
# theme -> (items, containers, giver, (add verb, add gerund), (subtract verb, subtract gerund))
THEMES: dict[str, tuple[str, str, str, tuple[str, str], tuple[str, str]]] = {
    "fruit": ("apples", "baskets", "a neighbor", ("picks", "picking"), ("eats", "eating")),
    "bakery": ("cupcakes", "boxes", "a friend", ("bakes", "baking"), ("sells", "selling")),
    "library": ("books", "shelves", "a friend", ("buys", "buying"), ("donates", "donating")),
    "stickers": ("stickers", "albums", "a classmate", ("wins", "winning"), ("gives away", "giving away")),
    "farm": ("eggs", "cartons", "a neighbor", ("collects", "collecting"), ("uses", "using")),
    "marbles": ("marbles", "bags", "a cousin", ("finds", "finding"), ("loses", "losing")),
}
# (name, subject, object, possessive)
PEOPLE = (
    ("Mia", "she", "her", "her"),
    ("Liam", "he", "him", "his"),
    ("Sofia", "she", "her", "her"),
    ("Noah", "he", "him", "his"),
    ("Priya", "she", "her", "her"),
    ("Mateo", "he", "him", "his"),
    ("Hana", "she", "her", "her"),
    ("Omar", "he", "him", "his"),
    ("Grace", "she", "her", "her"),
    ("Ivan", "he", "him", "his"),
    ("Amara", "she", "her", "her"),
    ("Kenji", "he", "him", "his"),
)
CONNECTORS = ("Then", "Next,", "After that,", "Later,")
TIMES = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}


def apply(op: str, a: int, n: int) -> int:
    """One operation; division is only ever generated (or accepted) when exact."""
    return a + n if op == "+" else a - n if op == "-" else a * n if op == "*" else a // n


def make_draft(rng: random.Random, k: int) -> Draft:
    """One problem: a start value and k operations chosen among those that keep the value in 2..999."""
    theme = rng.choice(sorted(THEMES))
    items, containers, giver, (add_v, _), (sub_v, _) = THEMES[theme]
    name, subj, obj, poss = rng.choice(PEOPLE)
    value = start = rng.randint(5, 80)
    sentences, ops = [f"{name} has {value} {items}."], []
    for step in range(k):
        options: dict[str, list[int]] = {
            "+": list(range(1, min(50, LIMIT - 1 - value) + 1)),
            "-": list(range(1, min(50, value - 2) + 1)),  # keep at least 2 so later steps stay interesting
            "*": [f for f in TIMES if value * f < LIMIT],
            "/": [d for d in range(2, 10) if value % d == 0 and value >= 2 * d],
        }
        op = rng.choice([o for o in "+-*/" if options[o]])
        n = rng.choice(options[op])
        conn = rng.choice(CONNECTORS) if step else "Then"
        if op == "+":
            sentences.append(f"{conn} {subj} {add_v} {n} more {items}.")
        elif op == "-":
            sentences.append(f"{conn} {subj} {sub_v} {n} of {poss} {items}.")
        elif op == "*":
            sentences.append(
                f"{conn} {giver} gives {obj} enough {items} that {subj} has {TIMES[n]} as many as before."
            )
        else:
            sentences.append(
                f"{conn} {subj} divides {poss} {items} equally into {n} {containers} and keeps only one of them."
            )
        ops.append([op, n])
        value = apply(op, value, n)
    sentences.append(f"How many {items} does {name} have now?")
    trace = {"theme": theme, "person": [name, subj, obj, poss], "start": start, "ops": ops}
    return Draft(" ".join(sentences), str(value), trace)


def _wrong_values(start: int, ops: list[list[Any]], step: int, rng: random.Random) -> list[int]:
    """Values after each op with the result of ``step`` off by a nonzero delta; later ops stay valid and exact."""
    deltas = [d for d in range(-10, 11) if d != 0]
    rng.shuffle(deltas)
    later = 1
    for op, n in ops[step + 1 :]:
        later *= n if op == "/" else 1
    for delta in deltas + [later]:  # a multiple of every later divisor always works
        values, v, ok = [], start, True
        for i, (op, n) in enumerate(ops):
            if op == "/" and v % n:
                ok = False
                break
            v = apply(op, v, n) + (delta if i == step else 0)
            if v < 0:
                ok = False
                break
            values.append(v)
        if ok:
            return values
    raise AssertionError("unreachable: a positive multiple of the later divisors is always valid")


def render_rationale(
    example: Example, phrasing: int, error_step: int | None = None, rng: random.Random | None = None
) -> str:
    """Re-render the reasoning from the trace; at ``error_step`` (0-based operation) the result is miscomputed."""
    tr = example.meta["trace"]
    items, containers, _, (_, add_g), (_, sub_g) = THEMES[tr["theme"]]
    name, subj, _, _ = tr["person"]
    start, ops = tr["start"], tr["ops"]
    step = pick_step(error_step, len(ops))
    if step is None:
        values, v = [], start
        for op, n in ops:
            v = apply(op, v, n)
            values.append(v)
    else:
        values = _wrong_values(start, ops, step, error_rng(example, step, rng))
    rows = list(zip([start] + values[:-1], ops, values))  # (before, [op, n], after)
    final = values[-1]
    p = phrasing % N_PHRASINGS
    if p == 0:
        eqs = [f"{a} {op} {n} = {r}." for a, (op, n), r in rows]
        return " ".join(eqs + [f"So {name} ends up with {final} {items}."])
    if p == 1:
        parts = [f"{name} starts with {start} {items}."]
        for a, (op, n), r in rows:
            eq = f"{a} {op} {n} = {r}"
            if op == "+":
                parts.append(f"After {add_g} {n} more, {subj} has {eq} {items}.")
            elif op == "-":
                parts.append(f"After {sub_g} {n}, {subj} has {eq} {items}.")
            elif op == "*":
                parts.append(f"Having {TIMES[n]} as many means {eq} {items}.")
            else:
                parts.append(f"Keeping one of {n} equal {containers} leaves {eq} {items}.")
        return " ".join(parts + [f"So {name} has {final} {items} now."])
    lines = [f"Step 1: Start with {start} {items}."]
    for i, (a, (op, n), r) in enumerate(rows, 2):
        how = {
            "+": f"Add the {n} new ones",
            "-": f"Take away {n}",
            "*": f"Multiply by {n}",
            "/": f"Split into {n} equal {containers} and keep one",
        }[op]
        lines.append(f"Step {i}: {how}: {a} {op} {n} = {r}.")
    lines.append(f"Step {len(ops) + 2}: {name} is left with {final} {items}.")
    return "\n".join(lines)


TASK = register_synthetic(
    TASK_NAME,
    answer_type="number",
    k=3,
    loader=k_loader(TASK_NAME, make_draft, render_rationale, N_PHRASINGS, 1, 50),
    description="Word problems with k integer operations (+, -, *, exact /) below 1000 (synthetic, exact rationales).",
    answer_trigger="Therefore, the answer (arabic numerals) is",
)
